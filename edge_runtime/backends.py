"""Inference sessions over one graph file: onnxruntime or a TFLite interpreter (LiteRT's
``ai_edge_litert``, or ``tflite_runtime`` where that is what the device has).

A session exposes the graph's I/O as TensorSpecs and ``run(feeds) -> outputs`` in the
declared output order. Sessions are opened for low latency on small ARM CPUs: a fixed thread
count, sequential execution, no spinning threads competing with the audio thread.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from edge_runtime.bundle import Bundle, BundleError, TensorSpec, check_io

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "tflite")
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(uint8)": "uint8", "tensor(int32)": "int32",
               "tensor(int64)": "int64", "tensor(int8)": "int8"}


class Session(Protocol):
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


class OnnxSession:
    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(path), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(f"{path}: onnxruntime cannot load the graph "
                              f"({str(exc).splitlines()[0][:200]})") from None
        self.inputs = [self._spec(i) for i in self._session.get_inputs()]
        self.outputs = [self._spec(o) for o in self._session.get_outputs()]
        self._output_names = [o.name for o in self.outputs]

    @staticmethod
    def _spec(arg) -> TensorSpec:
        return TensorSpec(arg.name, tuple(arg.shape), _ORT_DTYPES.get(arg.type, arg.type))

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self._session.run(self._output_names, feeds)


def _tflite_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise BundleError("no TFLite interpreter: pip install ai-edge-litert (or "
                              "tflite-runtime)") from None
    return Interpreter


class TFLiteSession:
    """TFLite graphs do not keep the bundle's tensor names, so the declared specs map onto
    the interpreter's inputs/outputs by position."""

    def __init__(self, path: Path, threads: int, names_in: list[str], names_out: list[str]):
        interpreter_cls = _tflite_interpreter()
        try:
            self._interp = interpreter_cls(model_path=str(path), num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{path}: the TFLite interpreter cannot load the graph "
                              f"({str(exc).splitlines()[0][:200]})") from None
        self._in = self._interp.get_input_details()
        self._out = self._interp.get_output_details()
        self.inputs = [self._spec(d, n) for d, n in zip(self._in, names_in)]
        self.outputs = [self._spec(d, n) for d, n in zip(self._out, names_out)]

    @staticmethod
    def _spec(detail: dict, name: str) -> TensorSpec:
        return TensorSpec(name, tuple(int(d) for d in detail["shape"]),
                          np.dtype(detail["dtype"]).name)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        for detail, spec in zip(self._in, self.inputs):
            self._interp.set_tensor(detail["index"], feeds[spec.name])
        self._interp.invoke()
        return [self._interp.get_tensor(d["index"]) for d in self._out]


def open_graph(bundle: Bundle, root: Path, variant: str, name: str, threads: int = 1
               ) -> Session:
    """Open ``name`` of ``variant`` and check its I/O against the bundle."""
    spec = bundle.graph(variant, name)
    path = root / spec.file
    if variant.startswith("onnx"):
        session: Session = OnnxSession(path, threads)
    else:
        session = TFLiteSession(path, threads, [t.name for t in spec.inputs],
                                [t.name for t in spec.outputs])
    check_io(spec, session.inputs, session.outputs, f"{root}: {variant}/{name}")
    return session
