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
    """``ort_session`` is the onnxruntime InferenceSession itself (the benchmarks bind its
    I/O directly to compare with ``run``)."""

    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.ort_session = ort.InferenceSession(str(path), options,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BundleError(f"{path}: onnxruntime cannot load the graph "
                              f"({str(exc).splitlines()[0][:200]})") from None
        self.inputs = [self._spec(i) for i in self.ort_session.get_inputs()]
        self.outputs = [self._spec(o) for o in self.ort_session.get_outputs()]
        self._output_names = [o.name for o in self.outputs]

    @staticmethod
    def _spec(arg) -> TensorSpec:
        return TensorSpec(arg.name, tuple(arg.shape), _ORT_DTYPES.get(arg.type, arg.type))

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.ort_session.run(self._output_names, feeds)


def tflite_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            raise BundleError("no TFLite interpreter: pip install ai-edge-litert (or "
                              "tflite-runtime)") from None
    return Interpreter


def tflite_input_name(index: int) -> str:
    """Signature input names of graphs converted by litert-torch: args_0, args_1, ..."""
    return f"args_{index}"


def tflite_output_name(index: int) -> str:
    return f"output_{index}"


class TFLiteSession:
    """TFLite graphs do not keep the bundle's tensor names: their signature calls inputs
    args_0.. and outputs output_0.. in the declared order. Full-integer graphs take and give
    int8 tensors; the session quantizes inputs and dequantizes outputs with each tensor's own
    scale and zero point, so callers always see the graph's float interface."""

    SIGNATURE = "serving_default"

    def __init__(self, path: Path, threads: int, names_in: list[str], names_out: list[str]):
        interpreter_cls = tflite_interpreter()
        try:
            interp = interpreter_cls(model_path=str(path), num_threads=threads)
            self._runner = interp.get_signature_runner(self.SIGNATURE)
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{path}: the TFLite interpreter cannot load the graph "
                              f"({str(exc).splitlines()[0][:200]})") from None
        details_in = self._runner.get_input_details()
        details_out = self._runner.get_output_details()
        self._in = [(n, details_in.get(tflite_input_name(i))) for i, n in enumerate(names_in)]
        self._out = [(n, details_out.get(tflite_output_name(i)))
                     for i, n in enumerate(names_out)]
        if any(d is None for _, d in self._in + self._out) or \
                len(details_in) != len(names_in) or len(details_out) != len(names_out):
            raise BundleError(f"{path}: the graph's signature has inputs {sorted(details_in)} "
                              f"and outputs {sorted(details_out)}, the bundle declares "
                              f"{len(names_in)} and {len(names_out)}")
        self.inputs = [self._spec(n, d) for n, d in self._in]
        self.outputs = [self._spec(n, d) for n, d in self._out]

    @staticmethod
    def _quantized(detail: dict) -> bool:
        return np.dtype(detail["dtype"]) == np.int8 and detail["quantization"][0] > 0

    @classmethod
    def _spec(cls, name: str, detail: dict) -> TensorSpec:
        dtype = "float32" if cls._quantized(detail) else np.dtype(detail["dtype"]).name
        return TensorSpec(name, tuple(int(d) for d in detail["shape"]), dtype)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        args = {}
        for i, (name, detail) in enumerate(self._in):
            value = feeds[name]
            if self._quantized(detail):
                scale, zero = detail["quantization"]
                value = np.clip(np.round(value / scale) + zero, -128, 127).astype(np.int8)
            args[tflite_input_name(i)] = value
        result = self._runner(**args)
        outputs = []
        for i, (_, detail) in enumerate(self._out):
            value = result[tflite_output_name(i)]
            if self._quantized(detail):
                scale, zero = detail["quantization"]
                value = (value.astype(np.float32) - zero) * np.float32(scale)
            outputs.append(value)
        return outputs


class PlainTFLiteSession:
    """A TFLite graph without a signature (graphs made elsewhere, e.g. MediaPipe's): inputs
    and outputs by position, under the names the graph gives them; float tensors only."""

    def __init__(self, path: Path, threads: int):
        interpreter_cls = tflite_interpreter()
        try:
            self._interp = interpreter_cls(model_path=str(path), num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"{path}: the TFLite interpreter cannot load the graph "
                              f"({str(exc).splitlines()[0][:200]})") from None
        details_in = self._interp.get_input_details()
        details_out = self._interp.get_output_details()
        self._in = [d["index"] for d in details_in]
        self._out = [d["index"] for d in details_out]
        self.inputs = [TFLiteSession._spec(d["name"], d) for d in details_in]
        self.outputs = [TFLiteSession._spec(d["name"], d) for d in details_out]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        for spec, index in zip(self.inputs, self._in):
            self._interp.set_tensor(index, feeds[spec.name])
        self._interp.invoke()
        return [self._interp.get_tensor(index) for index in self._out]


def tflite_io(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """(inputs, outputs) of a TFLite graph without a signature."""
    session = PlainTFLiteSession(path, threads=1)
    return tuple(session.inputs), tuple(session.outputs)


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
