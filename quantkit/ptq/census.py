"""Which nodes of a quantized model run in integer arithmetic and which stayed float.

A QDQ model does not say this outright: onnxruntime decides at session start
whether a ``DequantizeLinear -> op -> QuantizeLinear`` group can become an
integer kernel. The rule used here is the one that matters for speed - a compute
node counts as quantized when all its data inputs come out of
``DequantizeLinear`` and all its outputs go only into ``QuantizeLinear`` - so the
summary tells users which nodes cost float time.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from quantkit.graph.index import GraphIndex

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Ops that only move or reshape data: in float they cost a copy, not arithmetic.
DATA_MOVEMENT = frozenset(
    {
        "Pad",
        "Slice",
        "Reshape",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Gather",
        "Identity",
        "Flatten",
        "Shape",
        "Cast",
        "Split",
    }
)
# Inputs that carry activations or weights; the rest (Resize scales, shapes) are metadata.
DATA_INPUTS: dict[str, tuple[int, ...]] = {
    "Conv": (0, 1),
    "Resize": (0,),
    "MaxPool": (0,),
    "AveragePool": (0,),
    "Relu": (0,),
    "Sigmoid": (0,),
    "Upsample": (0,),
}


@dataclass(frozen=True)
class NodeCensus:
    quantized: tuple[tuple[str, str], ...]  # (node name, op type)
    float_nodes: tuple[tuple[str, str], ...]  # compute nodes left in float
    float_moves: tuple[tuple[str, str], ...]  # data-movement nodes (Slice, Pad, ...) in float
    int8_weights: int  # weight initializers stored as 8-bit integers
    int16_weights: int

    def to_dict(self) -> dict[str, object]:
        return {
            "quantized": len(self.quantized),
            "float": [{"name": n, "op": op} for n, op in self.float_nodes],
            "float_data_movement": [{"name": n, "op": op} for n, op in self.float_moves],
            "int8_weights": self.int8_weights,
            "int16_weights": self.int16_weights,
        }


def _data_inputs(node: onnx.NodeProto) -> list[str]:
    picks = DATA_INPUTS.get(node.op_type)
    names = list(node.input)
    chosen = [names[i] for i in picks if i < len(names)] if picks else names
    return [n for n in chosen if n]


def _from_dequantize(index: GraphIndex, tensor: str) -> bool:
    """``tensor`` comes out of a DequantizeLinear, possibly through reshapes and the like."""
    producer = index.producer.get(tensor)
    while producer is not None and producer.op_type in DATA_MOVEMENT:
        producer = index.producer.get(producer.input[0])
    return producer is not None and producer.op_type == "DequantizeLinear"


def _into_quantize(index: GraphIndex, tensor: str) -> bool:
    """Every path from ``tensor`` ends in a QuantizeLinear, possibly through reshapes and the like."""
    if tensor in index.graph_outputs or not index.consumers.get(tensor):
        return False
    return all(
        c.op_type == "QuantizeLinear" or (c.op_type in DATA_MOVEMENT and _into_quantize(index, c.output[0]))
        for c in index.consumers[tensor]
    )


def census(model: onnx.ModelProto) -> NodeCensus:
    index = GraphIndex.build(model)
    quantized: list[tuple[str, str]] = []
    floats: list[tuple[str, str]] = []
    moves: list[tuple[str, str]] = []
    int_tensors: set[str] = set()  # QOperator format: tensors that hold integers
    for node in model.graph.node:  # graphs are stored in topological order
        if node.op_type == "QuantizeLinear" or node.op_type.startswith(("QLinear", "ConvInteger")):
            int_tensors.update(node.output)
        if node.op_type in QDQ_OPS:
            continue
        name = node.name or f"<{node.op_type}>"
        data = _data_inputs(node)
        if node.op_type.startswith(("QLinear", "ConvInteger")) or (
            data and all(t in int_tensors for t in data if t not in index.initializers)
        ):
            int_tensors.update(node.output)
            quantized.append((name, node.op_type))
            continue
        inputs_q = all(_from_dequantize(index, t) for t in data)
        outputs_q = all(_into_quantize(index, o) for o in node.output)
        if inputs_q and outputs_q and node.op_type not in DATA_MOVEMENT:
            quantized.append((name, node.op_type))
        else:
            (moves if node.op_type in DATA_MOVEMENT else floats).append((name, node.op_type))
    int8 = int16 = 0
    for init in model.graph.initializer:
        if init.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and len(init.dims) >= 2:
            int8 += 1
        elif init.data_type in (onnx.TensorProto.INT16, onnx.TensorProto.UINT16) and len(init.dims) >= 2:
            int16 += 1
    return NodeCensus(tuple(quantized), tuple(floats), tuple(moves), int8, int16)
