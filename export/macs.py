"""MAC and parameter accounting from the ONNX graphs themselves, so the numbers describe
exactly what ships: multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul (elementwise
ops are not counted), parameters = elements of the initializers."""

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
