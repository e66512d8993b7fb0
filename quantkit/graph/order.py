"""Node order that lets onnxruntime free each measured tensor as early as possible.

onnxruntime (1.31, default execution order) sorts a graph by a depth-first walk
from its leaf nodes, which it pushes on a stack in node-index order - so the
*last* leaf is expanded first. Measurement nodes (reductions, SQNR sums) are
leaves. Appended in the tensors' own order, the last one is expanded first: the
whole network runs before any measurement, and every measured tensor stays
alive until the end - 9.4 GiB for the 364 tensors equalisation measures in
u2netp at 1024 px, against 3.2 GiB for plain inference. Placing each reduction
right after its producer changes nothing (the walk does not follow the list).
Appended in *reverse* order, the walk computes up to the first measured tensor,
measures it, moves on, and each tensor dies as soon as its consumers have run:
measured at 512 px, 2.15 GiB → 0.88 GiB for those 364 tensors (plain inference
0.82 GiB). Nodes no measurement needs are dropped, so the model's own unused
outputs do not become leaves either.
"""

from __future__ import annotations

from collections.abc import Iterable

import onnx


def measured_graph_nodes(
    nodes: Iterable[onnx.NodeProto], measurements: list[tuple[str, list[onnx.NodeProto]]], outputs: list[str]
) -> tuple[list[onnx.NodeProto], set[str]]:
    """The network's nodes that ``outputs`` need, then each measurement group in reverse
    order of the position of the tensor it reads; and every tensor name read.

    ``measurements`` pairs a measured tensor with the nodes that measure it.
    """
    network = list(nodes)
    position = {out: k for k, node in enumerate(network) for out in node.output}
    groups = sorted(measurements, key=lambda item: position.get(item[0], -1), reverse=True)
    ordered = network + [node for _, group in groups for node in group]
    return prune(ordered, outputs)


def prune(nodes: list[onnx.NodeProto], outputs: Iterable[str]) -> tuple[list[onnx.NodeProto], set[str]]:
    """The nodes ``outputs`` depend on (order kept), and every tensor name they read."""
    needed = set(outputs)
    kept: list[onnx.NodeProto] = []
    for node in reversed(nodes):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    kept.reverse()
    return kept, needed
