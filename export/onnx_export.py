"""torch -> ONNX (fp32), simplified, checked against torch on real inputs.

Each graph is simplified by onnxsim and by onnxslim and keeps the one with fewer nodes
(onnxsim on a tie): over the demo bundle's graphs fewer nodes never ran slower
(docs/decisions.md, "The export's simplifier")."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export.graphs import GraphDef
from training.atomic import atomic_path
from training.errors import UserError

log = logging.getLogger(__name__)
# the exporter warns once per missing torchvision op on every export; none are used here
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

OPSET = 18
TOLERANCE = {np.dtype(np.float32): 1e-3, np.dtype(np.uint8): 1}
"""Largest absolute difference to torch accepted per output dtype (uint8 frames may round
differently by one level)."""


SIMPLIFIERS = ("onnxsim", "onnxslim")
"""In order of preference when both leave as many nodes."""


def export_raw(graph: GraphDef) -> onnx.ModelProto:
    """``graph`` as torch's exporter writes it, before any simplification."""
    graph.module.eval()
    args = tuple(graph.inputs.values())
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(graph.module, args, input_names=list(graph.inputs),
                                    output_names=list(graph.outputs), opset_version=OPSET,
                                    dynamo=True, external_data=False, verbose=False)
    return program.model_proto


def simplified(model: onnx.ModelProto, simplifier: str) -> onnx.ModelProto:
    """``model`` through one of SIMPLIFIERS."""
    if simplifier == "onnxsim":
        import onnxsim

        result, ok = onnxsim.simplify(model)
        if not ok:
            raise UserError("onnxsim could not check its simplified graph")
        return result
    import onnxslim

    return onnxslim.slim(model)


def simplest(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """The SIMPLIFIERS' result with the fewest nodes."""
    results = {s: simplified(model, s) for s in SIMPLIFIERS}
    counts = {s: len(m.graph.node) for s, m in results.items()}
    chosen = min(SIMPLIFIERS, key=counts.get)  # the first of equals: the preferred
    log.info("%s: %d nodes exported, %s; kept %s", name, len(model.graph.node),
             ", ".join(f"{s} {n}" for s, n in counts.items()), chosen)
    return results[chosen]


def export_onnx(graph: GraphDef, path: Path) -> Path:
    """Export, simplify and save ``graph`` to ``path`` (atomically)."""
    model = simplest(export_raw(graph), graph.name)
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
    return path


def run_onnx(path: Path, inputs: dict[str, np.ndarray], threads: int = 1) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def parity(graph: GraphDef, path: Path, inputs: list[dict[str, torch.Tensor]] | None = None
           ) -> float:
    """Max abs error of the ONNX graph against torch over ``inputs`` (default: the example
    inputs); raises when an output exceeds its dtype's tolerance."""
    worst = 0.0
    for sample in inputs or [graph.inputs]:
        with torch.no_grad():
            expected = graph.module(*sample.values())
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = run_onnx(path, {k: v.numpy() for k, v in sample.items()})
        for name, want, have in zip(graph.outputs, expected, got):
            want = want.numpy()
            error = float(np.abs(want.astype(np.float64) - have.astype(np.float64)).max())
            if error > TOLERANCE[want.dtype]:
                raise UserError(f"{path}: output {name!r} differs from torch by {error:.3g} "
                                f"(tolerance {TOLERANCE[want.dtype]:g})")
            worst = max(worst, error)
    return worst
