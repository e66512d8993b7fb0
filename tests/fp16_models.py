"""FP16 copies of FP32 test models, written the way FP16 exports users download are written.

onnxconverter-common's ``convert_float_to_float16`` (what rembg's birefnet-general-fp16 and the
img.ly IS-Net file were made with) stores every float initializer and Constant as float16, casts
the float32 inputs to float16 right after the graph input and the outputs back to float32 right
before each graph output (``keep_io_types=True``), and leaves the tensors an operator only takes as
float32 alone (Resize's roi and scales). With ``keep_io_types=False`` the inputs and outputs are
float16 themselves. The converter is not a dependency, so the tests make the same shape of file.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Operator inputs the ONNX spec types as float32 only.
_FLOAT32_ONLY = {"Resize": (1, 2)}


def _float32_only(model: onnx.ModelProto) -> set[str]:
    return {
        node.input[k]
        for node in model.graph.node
        for k in _FLOAT32_ONLY.get(node.op_type, ())
        if k < len(node.input) and node.input[k]
    }


def to_fp16(model: onnx.ModelProto, keep_io_types: bool = True) -> onnx.ModelProto:
    """``model`` with float16 weights and computation, as onnxconverter-common writes it."""
    fp16 = onnx.ModelProto()
    fp16.CopyFrom(model)
    graph = fp16.graph
    keep = _float32_only(fp16)
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and init.name not in keep:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] not in keep:
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16)))
    del graph.value_info[:]
    nodes = list(graph.node)
    if keep_io_types:
        for k, value in enumerate(graph.input):
            cast = f"graph_input_cast_{k}"
            for node in nodes:
                node.input[:] = [cast if name == value.name else name for name in node.input]
            nodes.insert(0, helper.make_node("Cast", [value.name], [cast], to=TensorProto.FLOAT16))
        for k, value in enumerate(graph.output):
            cast = f"graph_output_cast_{k}"
            for node in nodes:
                node.output[:] = [cast if name == value.name else name for name in node.output]
                node.input[:] = [cast if name == value.name else name for name in node.input]
            nodes.append(helper.make_node("Cast", [cast], [value.name], to=TensorProto.FLOAT))
    else:
        for value in [*graph.input, *graph.output]:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(fp16)
    return fp16
