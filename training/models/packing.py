"""Finished runs' checkpoints in a compact form that can live in the repository.

``tsd models pack`` turns each run's final.pt into ``OUT/<stage>.pt``: the same dictionary
(model, config, data, step, and the student's calibrated schedules), with every weight
matrix and kernel (floating tensors of 2 or more dimensions) stored in float16 and biases,
norms and scales kept in float32. The usual loaders read it as they read final.pt: loading
a state dict casts into the model's float32. References between runs in the stored configs
(a student's teacher, autoencoder and identity encoder; a decoder's encoder_from) are
rewritten to the packed files, so a packed student is complete without runs/. ``OUT/models.yaml``
lists every file with its sha256; ``tsd models check`` verifies them. Packing adds to an
existing folder: a stage packed as soon as its run finishes is kept (and later stages' references
to it rewritten) when the next stage is packed, so the recipe's progress can be committed stage
by stage.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch
import yaml

from edge_runtime.bundle import sha256_file
from training.atomic import atomic_path, write_text
from training.errors import UserError
from training.models.loading import read_checkpoint

log = logging.getLogger(__name__)

MANIFEST = "models.yaml"


def compact(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weight matrices and kernels to float16; everything else as it is."""
    return {k: v.half() if v.is_floating_point() and v.dim() >= 2 else v
            for k, v in state_dict.items()}


def _rewrite(value: Any, moved: dict[Path, str]) -> Any:
    """``value`` (a stored config) with every path of a packed final.pt replaced by its
    packed file."""
    if isinstance(value, dict):
        return {k: _rewrite(v, moved) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, moved) for v in value]
    if isinstance(value, str) and value.endswith(".pt"):
        return moved.get(Path(value).resolve(), value)
    return value


def pack(checkpoints: dict[str, Path], out: Path) -> dict[str, dict]:
    """``{stage: final.pt}`` -> OUT/<stage>.pt and OUT/models.yaml -> the manifest rows."""
    missing = [str(p) for p in checkpoints.values() if not p.is_file()]
    if missing:
        raise UserError(f"{missing[0]}: checkpoint not found")
    out.mkdir(parents=True, exist_ok=True)
    rows = _read_rows(out / MANIFEST) if (out / MANIFEST).is_file() else {}
    moved = {Path(row["packed_from"]).resolve(): str(out / row["file"]) for row in rows.values()}
    moved.update({p.resolve(): str(out / f"{stage}.pt") for stage, p in checkpoints.items()})
    for stage, source in checkpoints.items():
        state = read_checkpoint(source, stage)
        if "model" not in state or "config" not in state:
            raise UserError(f"{source}: not a tsd train final.pt (no model or config)")
        state = {**state, "model": compact(state["model"]),
                 "config": _rewrite(state["config"], moved)}
        target = out / f"{stage}.pt"
        buffer = io.BytesIO()  # saved in memory: torch names the archive after a file's path,
        torch.save(state, buffer)  # and the temporary file's random name would change the bytes
        with atomic_path(target) as tmp:
            tmp.write_bytes(buffer.getvalue())
        rows[stage] = {"file": target.name, "sha256": sha256_file(target),
                       "bytes": target.stat().st_size, "step": int(state.get("step", 0)),
                       "packed_from": str(source)}
        log.info("%s: %s -> %s (%.1f MB)", stage, source, target, rows[stage]["bytes"] / 1e6)
    header = ("# tsd models pack: the finished runs' weights (float16 matrices and kernels), "
              "read by the same loaders as final.pt;\n# tsd models check verifies them.\n")
    write_text(out / MANIFEST, header + yaml.safe_dump({"models": rows}, sort_keys=False))
    return rows


def _read_rows(manifest: Path) -> dict[str, dict]:
    try:
        return dict(yaml.safe_load(manifest.read_text())["models"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError):
        raise UserError(f"{manifest}: not a models manifest") from None


def check(folder: Path) -> dict[str, dict]:
    """The manifest's rows, after checking every file's sha256; UserError naming the first
    missing or changed file."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        raise UserError(f"{manifest}: not found (tsd models pack writes it)")
    rows = _read_rows(manifest)
    for stage, row in rows.items():
        path = folder / row["file"]
        if not path.is_file():
            raise UserError(f"{path}: missing (listed for {stage} in {manifest})")
        if sha256_file(path) != row["sha256"]:
            raise UserError(f"{path}: sha256 differs from {manifest}")
    return rows
