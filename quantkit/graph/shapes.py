"""Tensor sizes, from ONNX shape inference: pixels per channel, bytes, multiply-adds.

The widening pass, the search's cost estimate and the statistics engine's memory
plan all need them; shape inference runs here so the passes never have to trust
annotations a previous rewrite may have dropped.
"""

from __future__ import annotations

import math

import onnx

from quantkit.graph.index import GraphIndex


def light_copy(model: onnx.ModelProto, keep_bytes: int = 4096) -> onnx.ModelProto:
    """A copy without the data of large initializers: shape inference needs their dims,
    not their 176 MB of weights (small ones - shapes, scales, sizes - keep their values)."""
    light = onnx.ModelProto()
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    light.functions.extend(model.functions)
    source, graph = model.graph, light.graph
    graph.name = source.name
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    for init in source.initializer:
        if init.ByteSize() <= keep_bytes:
            graph.initializer.append(init)
        else:
            graph.initializer.append(
                onnx.TensorProto(name=init.name, data_type=init.data_type, dims=init.dims)
            )
    return light


def _values(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    inferred = onnx.shape_inference.infer_shapes(light_copy(model))
    graph = inferred.graph
    return [*graph.input, *graph.value_info, *graph.output]


def tensor_dims(model: onnx.ModelProto) -> dict[str, list[int]]:
    """Static dims of every tensor shape inference can resolve (0 for an unknown dim)."""
    return {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in _values(model)}


def tensor_bytes(model: onnx.ModelProto) -> dict[str, int]:
    """Bytes of every float32 tensor whose shape is fully known."""
    return {name: 4 * math.prod(dims) for name, dims in tensor_dims(model).items() if dims and all(dims)}


def spatial_sizes(model: onnx.ModelProto) -> dict[str, int]:
    """Pixels per channel (product of dims after N, C) of every tensor whose shape is known."""
    sizes: dict[str, int] = {}
    for name, dims in tensor_dims(model).items():
        if len(dims) > 2 and all(dims[2:]):
            sizes[name] = math.prod(dims[2:])
    return sizes


def conv_macs(model: onnx.ModelProto) -> dict[str, int]:
    """Multiply-accumulates per Conv node, from weight shapes and inferred output sizes."""
    pixels = spatial_sizes(model)
    index = GraphIndex.build(model)
    macs: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or node.input[1] not in index.initializers:
            continue
        weight = list(index.initializers[node.input[1]].dims)
        macs[node.name] = math.prod(weight) * pixels.get(node.output[0], 0)
    return macs
