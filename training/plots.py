"""PNG figures of panels (training curves, the eval frontier): one layout, one atomic save."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

from training.atomic import atomic_path


def save_panels(png: Path, names: Sequence[str], draw: Callable[[object, str], None],
                cols: int = 3) -> None:
    """One panel per name, ``draw(ax, name)`` fills it; written atomically at 80 dpi."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(cols, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, squeeze=False, figsize=(4.5 * cols, 3.2 * rows))
    for ax, name in zip(axes.flat, names):
        draw(ax, name)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(png) as tmp:
        fig.savefig(tmp, format="png", dpi=80)
    plt.close(fig)
