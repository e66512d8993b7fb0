"""Where a quantized model loses its signal, layer by layer.

In the spirit of onnxruntime's ``qdq_loss_debug`` (match float and quantized
activations, compute their SQNR), but aimed at one question: which convolution
*loses* the most, i.e. whose output SQNR is far below its input SQNR. A layer
that merely passes on upstream noise is not worth keeping in float; a layer that
turns 27 dB in into 15 dB out is (u2netp's ``Conv_787`` before offset absorption
went from 22 dB to -13 dB).

The float and quantized graphs are joined into one model whose extra outputs are
``ReduceSumSquare`` scalars, so comparing every layer costs one run per photo and
a few bytes of output, not a copy of every activation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from quantkit.graph.index import GraphIndex, attribute
from quantkit.graph.opset import ai_onnx_opset
from quantkit.graph.order import measured_graph_nodes
from quantkit.graph.shapes import conv_macs
from quantkit.runtime.base import RuntimeSettings
from quantkit.runtime.ort import ort_session

PREFIX = "quantkit_q/"


@dataclass(frozen=True)
class LayerLoss:
    node: str
    sqnr_in: float
    sqnr_out: float
    macs_share: float

    @property
    def drop(self) -> float:
        return self.sqnr_in - self.sqnr_out

    def to_dict(self) -> dict[str, object]:
        return {
            "node": self.node,
            "sqnr_in_db": round(self.sqnr_in, 2),
            "sqnr_out_db": round(self.sqnr_out, 2),
            "drop_db": round(self.drop, 2),
            "macs_share": round(self.macs_share, 5),
        }


def _q_source(index: GraphIndex, tensor: str) -> str | None:
    """Float tensor behind a DequantizeLinear output (DQ <- Q <- tensor), if any."""
    dq = index.producer.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = index.producer.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return None
    return str(q.input[0])


def _dq_after(index: GraphIndex, tensor: str) -> str | None:
    """The DequantizeLinear output that follows ``tensor -> QuantizeLinear``, if any."""
    for q in index.consumers.get(tensor, []):
        if q.op_type == "QuantizeLinear":
            for dq in index.consumers.get(q.output[0], []):
                if dq.op_type == "DequantizeLinear":
                    return str(dq.output[0])
    return None


def _joined(
    float_model: onnx.ModelProto, quant_model: onnx.ModelProto, pairs: list[tuple[str, str]]
) -> onnx.ModelProto:
    graph_input = float_model.graph.input[0].name

    def rename(name: str) -> str:
        return name if name in ("", graph_input) else PREFIX + name

    nodes = list(float_model.graph.node)
    for node in quant_model.graph.node:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = PREFIX + node.name
        copy.input[:] = [rename(i) for i in node.input]
        copy.output[:] = [rename(o) for o in node.output]
        nodes.append(copy)
    initializers = list(float_model.graph.initializer)
    for init in quant_model.graph.initializer:
        copy_init = onnx.TensorProto()
        copy_init.CopyFrom(init)
        copy_init.name = rename(init.name)
        initializers.append(copy_init)
    groups: list[tuple[str, list[onnx.NodeProto]]] = []
    names: list[str] = []
    for k, (fp, q) in enumerate(pairs):
        diff, signal, noise = f"quantkit_d{k}", f"quantkit_s{k}", f"quantkit_n{k}"
        group = [
            helper.make_node("Sub", [fp, rename(q)], [diff]),
            helper.make_node("ReduceSumSquare", [fp], [signal], keepdims=0),
            helper.make_node("ReduceSumSquare", [diff], [noise], keepdims=0),
        ]
        groups.append((rename(q), group))  # the quantized tensor comes later than its float twin
        names += [signal, noise]
    kept, needed = measured_graph_nodes(nodes, groups, names)
    outputs = [helper.make_empty_tensor_value_info(n) for n in names]
    graph = helper.make_graph(
        kept,
        "quantkit_sqnr",
        list(float_model.graph.input),
        outputs,
        [i for i in initializers if i.name in needed],
    )
    opsets = {o.domain: o.version for o in float_model.opset_import}
    for o in quant_model.opset_import:
        opsets[o.domain] = max(opsets.get(o.domain, 0), o.version)
    version = max(ai_onnx_opset(float_model), ai_onnx_opset(quant_model))
    opsets[""] = version
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items() if d != "ai.onnx"]
    )
    model.ir_version = max(float_model.ir_version, quant_model.ir_version)
    return model


def layer_losses(
    float_path: Path,
    quant_path: Path,
    feeds: Iterable[dict[str, np.ndarray]],
    work: Path,
    settings: RuntimeSettings | None = None,
) -> list[LayerLoss]:
    """SQNR in and out of every quantized Conv, worst drop first.

    The joined model goes to the session through a file in ``work`` and no model is
    kept in Python while it runs: on the 176 MB u2net stand-in, handing it over as
    bytes held the float, quantized, joined and serialized models at once (1.94 GiB
    peak, the whole quantize's highest).
    """
    float_model, quant_model = onnx.load(str(float_path)), onnx.load(str(quant_path))
    float_tensors = {o for n in float_model.graph.node for o in n.output} | {
        i.name for i in float_model.graph.input
    }
    qindex = GraphIndex.build(quant_model)
    macs = conv_macs(float_model)
    total = max(sum(macs.values()), 1)
    convs: list[tuple[str, str, str, str, str]] = []  # name, fp_in, q_in, fp_out, q_out
    for node in quant_model.graph.node:
        if node.op_type != "Conv":
            continue
        fp_in = _q_source(qindex, node.input[0])
        q_out = _dq_after(qindex, node.output[0])
        if fp_in is None or q_out is None or fp_in not in float_tensors:
            continue
        if node.output[0] not in float_tensors:
            continue
        convs.append((node.name, fp_in, node.input[0], node.output[0], q_out))
    pairs = sorted({(c[1], c[2]) for c in convs} | {(c[3], c[4]) for c in convs})
    position = {pair: k for k, pair in enumerate(pairs)}
    joined_path = work / "sqnr.onnx"
    onnx.save(_joined(float_model, quant_model, pairs), str(joined_path))
    del float_model, quant_model, qindex
    session = ort_session(joined_path, settings or RuntimeSettings(mem_pattern=False))
    joined_path.unlink()
    signal = np.zeros(len(pairs))
    noise = np.zeros(len(pairs))
    for feed in feeds:
        values = session.run(None, feed)
        signal += np.array([float(values[2 * k]) for k in range(len(pairs))])
        noise += np.array([float(values[2 * k + 1]) for k in range(len(pairs))])

    def sqnr(pair: tuple[str, str]) -> float:
        k = position[pair]
        return float(10 * np.log10(max(signal[k], 1e-30) / max(noise[k], 1e-30)))

    losses = [
        LayerLoss(name, sqnr((fp_in, q_in)), sqnr((fp_out, q_out)), macs.get(name, 0) / total)
        for name, fp_in, q_in, fp_out, q_out in convs
    ]
    return sorted(losses, key=lambda item: (-item.drop, item.node))


PASS_UP = frozenset({"Relu", "Resize", "MaxPool", "Concat"})


def island(float_model: onnx.ModelProto, conv: str, with_inputs: bool) -> tuple[str, ...]:
    """Nodes to keep in float so that ``conv`` and, optionally, its inputs are exact.

    With ``with_inputs``, the island grows upwards through the ops that feed only
    it - shape-only ops (Relu, Resize, MaxPool, Concat) and, at the edge, the
    convolutions that produce its input - so that input never goes through 8 bits.
    """
    index = GraphIndex.build(float_model)
    members = [conv]
    if not with_inputs:
        return tuple(members)
    frontier = [index.by_name[conv].input[0]]
    while frontier:
        node = index.producer.get(frontier.pop())
        if node is None or node.name in members:
            continue
        if not all(c.name in members for c in index.consumers.get(node.output[0], [])):
            continue
        if node.op_type in PASS_UP:
            members.append(node.name)
            frontier.extend(i for i in node.input if i and i not in index.initializers)
        elif node.op_type == "Conv" and attribute(node, "group", 1) == 1:
            members.append(node.name)
    order = {n.name: k for k, n in enumerate(float_model.graph.node)}
    return tuple(sorted(members, key=lambda name: order[name]))
