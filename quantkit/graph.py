"""Small, exact operations on ONNX graphs that the quantization steps share.

Kept apart from the recipes so that each recipe reads as the idea it implements,
not as protobuf plumbing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper, version_converter

from quantkit.errors import QuantkitError

# Per-channel QDQ (axis attribute on QuantizeLinear/DequantizeLinear) arrived in opset 13.
MIN_QDQ_OPSET = 13


def ai_onnx_opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def upgrade_opset(model: onnx.ModelProto, target: int = MIN_QDQ_OPSET) -> onnx.ModelProto:
    """Return ``model`` at opset >= ``target``; older exports (PyTorch's opset 11) need it."""
    if ai_onnx_opset(model) >= target:
        return model
    try:
        return version_converter.convert_version(model, target)
    except Exception as exc:
        raise QuantkitError(
            f"cannot convert the model from opset {ai_onnx_opset(model)} to {target} "
            f"({str(exc).splitlines()[0][:160]})"
        ) from exc


@dataclass
class GraphIndex:
    """Who produces and who consumes each tensor, and the initializers as arrays."""

    model: onnx.ModelProto
    producer: dict[str, onnx.NodeProto]
    consumers: dict[str, list[onnx.NodeProto]]
    initializers: dict[str, onnx.TensorProto]
    by_name: dict[str, onnx.NodeProto]

    @classmethod
    def build(cls, model: onnx.ModelProto) -> GraphIndex:
        producer: dict[str, onnx.NodeProto] = {}
        consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in model.graph.node:
            for out in node.output:
                producer[out] = node
            for inp in node.input:
                if inp:
                    consumers[inp].append(node)
        initializers = {i.name: i for i in model.graph.initializer}
        by_name = {n.name: n for n in model.graph.node if n.name}
        return cls(model, producer, dict(consumers), initializers, by_name)

    def array(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.initializers[name])

    def set_array(self, name: str, value: np.ndarray) -> None:
        self.initializers[name].CopyFrom(numpy_helper.from_array(value, name))

    @property
    def graph_outputs(self) -> set[str]:
        return {o.name for o in self.model.graph.output}


def spatial_sizes(model: onnx.ModelProto) -> dict[str, int]:
    """Pixels per channel (product of dims after N, C) of every tensor whose shape is known.

    Runs ONNX shape inference first: the rewrites add tensors without annotations.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    sizes: dict[str, int] = {}
    graph = inferred.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if len(dims) > 2 and all(dims[2:]):
            sizes[value.name] = int(np.prod(dims[2:]))
    return sizes


def attribute(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default
