"""MAC and parameter accounting from the graph files themselves, so the numbers describe
exactly what ships: multiply-accumulates of convolutions and matrix products (elementwise
ops are not counted), parameters = elements of the weights. ONNX graphs, and the TFLite
graphs a bundle takes from elsewhere (the MediaPipe face graphs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import shape_inference


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    inferred = shape_inference.infer_shapes(model)
    shapes = {}
    values = (list(inferred.graph.value_info) + list(inferred.graph.input)
              + list(inferred.graph.output))
    for value in values:
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for init in inferred.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def count(path: str | Path) -> dict[str, int]:
    """-> {"macs": ..., "params": ...} of an ONNX file."""
    model = onnx.load(str(path))
    shapes = _shapes(model)
    macs = 0
    for node in model.graph.node:
        out = shapes.get(node.output[0])
        if out is None:
            continue
        if node.op_type in ("Conv", "ConvTranspose"):
            weight = shapes[node.input[1]]  # [Cout, Cin/group, kh, kw]
            if node.op_type == "Conv":
                macs += int(np.prod(out)) * int(np.prod(weight[1:]))
            else:
                macs += int(np.prod(shapes[node.input[0]])) * int(np.prod(weight[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes.get(node.input[0])
            if a is not None:
                macs += int(np.prod(out)) * a[-1]
    params = sum(int(np.prod(init.dims)) for init in model.graph.initializer
                 if len(init.dims) > 0)
    return {"macs": macs, "params": params}


TFLITE_CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def count_tflite(path: str | Path) -> dict[str, int]:
    """-> {"macs": ..., "params": ...} of a float TFLite file (weights [Cout, kh, kw, Cin],
    depthwise [1, kh, kw, C], fully connected [Cout, Cin]). The op list comes from the
    interpreter's op details, the only view of the graph's structure LiteRT offers."""
    from edge_runtime.backends import tflite_interpreter

    interpreter = tflite_interpreter()(model_path=str(path))
    interpreter.allocate_tensors()
    shapes = {d["index"]: tuple(int(s) for s in d["shape"])
              for d in interpreter.get_tensor_details()}
    macs = params = 0
    for op in interpreter._get_ops_details():
        if op["op_name"] not in TFLITE_CONVS:
            continue
        out = int(np.prod(shapes[op["outputs"][0]]))
        weight = shapes[op["inputs"][1]]
        params += int(np.prod(weight))
        per_output = weight[1] * weight[2] if op["op_name"] == "DEPTHWISE_CONV_2D" else \
            int(np.prod(weight[1:]))
        macs += out * per_output
    return {"macs": macs, "params": params}
