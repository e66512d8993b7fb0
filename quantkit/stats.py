"""Per-channel activation statistics of a float model over a set of photos.

The recipes need to know, per channel of selected tensors, the smallest and
largest value seen and the mean and spread. Exposing those tensors as outputs
would copy hundreds of megabytes per photo out of onnxruntime; instead the graph
is extended with ``ReduceMin/ReduceMax/ReduceMean`` nodes so each photo yields a
few kilobytes, and photos are streamed one at a time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from quantkit.graph import ai_onnx_opset
from quantkit.session import SessionSettings, make_session


@dataclass
class ChannelStats:
    """Running per-channel statistics of one NCHW tensor."""

    minimum: np.ndarray
    maximum: np.ndarray
    total: np.ndarray  # sum of per-image channel means
    total_sq: np.ndarray  # sum of per-image channel means of x²
    images: int = 0

    @property
    def mean(self) -> np.ndarray:
        return self.total / max(self.images, 1)

    @property
    def std(self) -> np.ndarray:
        variance = self.total_sq / max(self.images, 1) - self.mean**2
        return np.asarray(np.sqrt(np.maximum(variance, 0.0)), dtype=np.float64)

    @property
    def absmax(self) -> np.ndarray:
        return np.asarray(np.maximum(np.abs(self.minimum), np.abs(self.maximum)), dtype=np.float64)


@dataclass
class ActivationStats:
    tensors: dict[str, ChannelStats] = field(default_factory=dict)

    def __getitem__(self, name: str) -> ChannelStats:
        return self.tensors[name]

    def __contains__(self, name: object) -> bool:
        return name in self.tensors


_REDUCERS = (("min", "ReduceMin"), ("max", "ReduceMax"), ("mean", "ReduceMean"))


def _with_reductions(model: onnx.ModelProto, tensors: list[str]) -> tuple[onnx.ModelProto, list[str]]:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    axes_as_input = ai_onnx_opset(model) >= 18
    axes_name = "quantkit_stats_axes"
    if axes_as_input:
        copy.graph.initializer.append(
            onnx.numpy_helper.from_array(np.array([0, 2, 3], dtype=np.int64), axes_name)
        )
    del copy.graph.output[:]
    outputs: list[str] = []

    def reduce(op: str, source: str, out: str) -> None:
        if axes_as_input:
            node = helper.make_node(op, [source, axes_name], [out], keepdims=0)
        else:
            node = helper.make_node(op, [source], [out], axes=[0, 2, 3], keepdims=0)
        copy.graph.node.append(node)
        copy.graph.output.append(helper.make_empty_tensor_value_info(out))
        outputs.append(out)

    for index, name in enumerate(tensors):
        for key, op in _REDUCERS:
            reduce(op, name, f"quantkit_stats_{index}_{key}")
        square = f"quantkit_stats_{index}_sq"
        copy.graph.node.append(helper.make_node("Mul", [name, name], [square]))
        reduce("ReduceMean", square, f"quantkit_stats_{index}_meansq")
    return copy, outputs


def collect_stats(
    model: onnx.ModelProto,
    tensors: list[str],
    samples: Iterable[dict[str, np.ndarray]],
    settings: SessionSettings | None = None,
) -> ActivationStats:
    """Run ``model`` on each sample and accumulate per-channel stats of ``tensors``."""
    augmented, outputs = _with_reductions(model, tensors)
    session = make_session(augmented.SerializeToString(), settings)
    stats = ActivationStats()
    for feed in samples:
        values = dict(zip(outputs, session.run(outputs, feed), strict=True))
        for index, name in enumerate(tensors):
            lo = values[f"quantkit_stats_{index}_min"].astype(np.float64)
            hi = values[f"quantkit_stats_{index}_max"].astype(np.float64)
            mean = values[f"quantkit_stats_{index}_mean"].astype(np.float64)
            meansq = values[f"quantkit_stats_{index}_meansq"].astype(np.float64)
            entry = stats.tensors.get(name)
            if entry is None:
                stats.tensors[name] = ChannelStats(lo, hi, mean, meansq, 1)
            else:
                entry.minimum = np.minimum(entry.minimum, lo)
                entry.maximum = np.maximum(entry.maximum, hi)
                entry.total = entry.total + mean
                entry.total_sq = entry.total_sq + meansq
                entry.images += 1
    return stats
