"""Who produces and who consumes each tensor, and the initializers as arrays.

Kept apart from the passes so that each pass reads as the idea it implements,
not as protobuf plumbing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper


@dataclass
class GraphIndex:
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


def attribute(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy, so a pass can return a new model and leave its input untouched."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy
