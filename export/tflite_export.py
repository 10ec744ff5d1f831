"""torch -> TFLite (LiteRT) fp32 with litert-torch, and full-integer int8 with
ai-edge-quantizer's static recipe (int8 weights and activations) calibrated on the same
captured pipeline inputs as the ONNX int8 graphs.

Why this toolchain: litert-torch converts the torch modules directly (no ONNX -> TensorFlow
hop, no TensorFlow install) and matched torch to about 1e-6 here; its own PT2E int8 path
failed on these UNets, while converting fp32 first and quantizing the .tflite with
ai-edge-quantizer gives fully int8 graphs. onnx2tf was rejected: on Python 3.11 it pins
TensorFlow 2.19 with numpy 1.x and silently corrupted outputs with multi-sample calibration.
Both tools come with the ``tflite`` extra.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from edge_runtime.backends import TFLiteSession, tflite_input_name
from export.graphs import GraphDef
from export.quiet import quiet
from training.atomic import atomic_path
from training.errors import UserError

log = logging.getLogger(__name__)

TOLERANCE = {"float32": 1e-3, "uint8": 1}


def export_tflite(graph: GraphDef, path: Path) -> Path:
    try:
        import litert_torch
    except ImportError:
        raise UserError("TFLite export needs the tflite extra: pip install -c constraints.txt "
                        "-e '.[tflite]'") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    with quiet(), torch.no_grad():
        model = litert_torch.convert(graph.module.eval(), tuple(graph.inputs.values()))
        with atomic_path(path) as tmp:
            model.export(str(tmp))
    return path


def quantize_tflite(fp32: Path, out: Path, samples: list[dict[str, np.ndarray]]) -> Path:
    """Full-integer int8 (static_wi8_ai8) calibrated on ``samples`` (graph inputs by name,
    in the graph's input order)."""
    from ai_edge_quantizer import quantizer, recipe

    data = {"serving_default": [{tflite_input_name(i): v for i, v in enumerate(s.values())}
                                for s in samples]}
    out.parent.mkdir(parents=True, exist_ok=True)
    with quiet():
        qt = quantizer.Quantizer(str(fp32))
        qt.load_quantization_recipe(recipe.static_wi8_ai8())
        result = qt.quantize(qt.calibrate(data, num_threads=1), enable_progress_report=False)
        with tempfile.TemporaryDirectory() as folder:  # its writer refuses existing files
            tmp = Path(folder) / out.name
            result.export_model(str(tmp))
            shutil.move(tmp, out)
    return out


def parity(graph: GraphDef, path: Path, samples: list[dict[str, torch.Tensor]]) -> float:
    """Max abs error of the TFLite graph against torch; raises beyond tolerance."""
    session = TFLiteSession(path, 1, list(graph.inputs), list(graph.outputs))
    worst = 0.0
    for sample in samples:
        with torch.no_grad():
            expected = graph.module(*sample.values())
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run({k: v.numpy() for k, v in sample.items()})
        for name, want, have in zip(graph.outputs, expected, got):
            want = want.numpy()
            error = float(np.abs(want.astype(np.float64) - have.astype(np.float64)).max())
            if error > TOLERANCE[want.dtype.name]:
                raise UserError(f"{path}: output {name!r} differs from torch by {error:.3g}")
            worst = max(worst, error)
    return worst
