"""ONNX int8: static QDQ quantization, per-channel int8 weights and uint8 activations whose
ranges come from calibration inputs captured from the real pipeline (calibration/capture.py).

Static, not dynamic: onnxruntime's dynamic quantization makes convolutions slower on CPU.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from export.quiet import quiet
from training.atomic import atomic_path

log = logging.getLogger(__name__)


class _Samples(CalibrationDataReader):
    def __init__(self, samples: list[dict[str, np.ndarray]]):
        self._iter = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)


def quantize_onnx(fp32: Path, out: Path, samples: list[dict[str, np.ndarray]]) -> Path:
    """fp32 ONNX + calibration samples (graph inputs) -> int8 QDQ ONNX at ``out``."""
    if not samples:
        raise ValueError(f"{fp32}: no calibration samples")
    out.parent.mkdir(parents=True, exist_ok=True)
    with quiet(), tempfile.TemporaryDirectory() as folder:
        prepared = Path(folder) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        with atomic_path(out) as tmp:
            quantize_static(str(prepared), str(tmp), _Samples(samples),
                            quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": False})
    log.info("quantized %s -> %s with %d samples", fp32.name, out, len(samples))
    return out
