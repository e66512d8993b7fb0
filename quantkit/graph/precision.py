"""FP16 models: recognise them, and give quantization their FP32 upcast.

rembg runs FP16 files (``birefnet-general-fp16``), and the IS-Net and RMBG files
img.ly and transformers.js users download are FP16 too: weights stored as
float16, with ``Cast`` nodes at the borders where the converter kept float32
inputs and outputs (onnxconverter-common's ``keep_io_types``). onnxruntime's
quantizer cannot read them (``QuantizeLinear`` refuses a float16 input), and
statistics measured in float16 would be the FP16 model's, not the function the
weights describe.

:func:`upcast` widens every float16 initializer, ``Constant`` and ``Cast``
target to float32 and removes the casts that then convert float32 to float32.
Widening is exact (every float16 is a float32), so the upcast computes what the
FP16 file computes, minus its float16 rounding of activations: on the real
isnet-general-use file (88 MB FP16) output 0 differs by at most 5e-5 on a random
input. ``compare``, ``bench`` and ``remove`` run an FP16 file as it is;
``quantize`` quantizes, calibrates and checks against the upcast.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from quantkit.graph.index import copy_model
from quantkit.graph.shapes import light_copy

FLOAT16 = TensorProto.FLOAT16
FLOAT = TensorProto.FLOAT


def _cast_target(node: onnx.NodeProto) -> onnx.AttributeProto | None:
    return next((a for a in node.attribute if a.name == "to"), None)


def _constant_tensor(node: onnx.NodeProto) -> onnx.TensorProto | None:
    return next((a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None)


def _widen(tensor: onnx.TensorProto) -> None:
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), tensor.name))


def upcast(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float32 copy of an FP16 ``model``: same graph, float16 widened, no-op casts removed.

    Inputs and outputs declared float16 become float32. A float32 → float32 ``Cast``
    that produces a graph output is folded by renaming its producer's output, so
    the outputs keep their names and order.
    """
    upcast_model = copy_model(model)
    graph = upcast_model.graph
    for init in graph.initializer:
        if init.data_type == FLOAT16:
            _widen(init)
    for node in graph.node:
        if node.op_type == "Constant":
            constant = _constant_tensor(node)
            if constant is not None and constant.data_type == FLOAT16:
                _widen(constant)
        elif node.op_type == "Cast":
            target = _cast_target(node)
            if target is not None and target.i == FLOAT16:
                target.i = FLOAT
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type == FLOAT16:
            value.type.tensor_type.elem_type = FLOAT
    del graph.value_info[:]  # annotations of the FP16 graph; shape inference redoes them
    _drop_noop_casts(upcast_model)
    return upcast_model


def _element_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(light_copy(model))
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input, *graph.output]}
    types.update({i.name: i.data_type for i in model.graph.initializer})
    return types


def _drop_noop_casts(model: onnx.ModelProto) -> None:
    """Remove every ``Cast`` whose input already has its target type (in place)."""
    graph = model.graph
    types = _element_types(model)
    outputs = {o.name for o in graph.output}
    inputs = {i.name for i in graph.input}
    producer = {out: node for node in graph.node for out in node.output}
    rename: dict[str, str] = {}  # tensor -> the tensor that now stands for it
    dropped: set[int] = set()
    for k, node in enumerate(graph.node):
        target = _cast_target(node) if node.op_type == "Cast" else None
        if target is None or types.get(node.input[0]) != target.i:
            continue
        source, result = node.input[0], node.output[0]
        if result in outputs:
            # The output keeps its name: the cast's source is renamed to it, if nothing
            # else (a graph input or output, an initializer) is known by the source's name.
            upstream = producer.get(source)
            if upstream is None or source in outputs or source in inputs:
                continue
            rename_everywhere(model, source, result)
        else:
            rename[result] = source
        dropped.add(k)
    kept = [n for k, n in enumerate(graph.node) if k not in dropped]
    for node in kept:
        node.input[:] = [_resolve(rename, name) for name in node.input]
    del graph.node[:]
    graph.node.extend(kept)


def _resolve(rename: dict[str, str], name: str) -> str:
    while name in rename:
        name = rename[name]
    return name


def rename_everywhere(model: onnx.ModelProto, old: str, new: str) -> None:
    """Rename tensor ``old`` to ``new`` in every node input and output (in place)."""
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
