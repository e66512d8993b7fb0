"""Cross-layer equalisation: rescale channels so INT8 steps fit every channel.

Why: per-channel weights and per-tensor activations leave two kinds of waste.
A channel whose activations are tiny next to its neighbours' gets only a few of
the tensor's 256 steps; a consumer weight column that is huge next to the rest of
its row sets the row's step and rounds the other weights away. Because ReLU,
MaxPool, Resize, Concat and Add all commute with a positive per-channel scale,
each channel ``c`` can be divided by ``s_c`` at its producing convolution(s) and
multiplied back into the consuming convolutions' weights without changing the
float model at all (Nagel et al., "Data-Free Quantization", 2019).

How ``s_c`` is chosen: ``s_c = A_c^α / R_c^(1-α)`` with ``A_c`` the channel's
largest activation seen in calibration and ``R_c`` the largest consumer weight
reading it - the SmoothQuant balance, applied here through the exact rescaling
above instead of an inserted Mul. α = 0.5 is the measured best on u2netp
(ECSSD mean IoU vs FP32 0.973 → 0.984 on top of offset absorption).

Channels are grouped with a union-find: channels joined by an Add must share a
scale; a channel that reaches a Sigmoid, a graph output or any op outside the
list keeps scale 1.

Statistics carried through: exact - every rescaled channel of every tensor is
divided by its scale, so a later pass needs no new measurement.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

import numpy as np
import onnx

from quantkit.graph.index import GraphIndex, attribute, copy_model
from quantkit.passes.base import Rewritten
from quantkit.statistics.types import ActivationStats, ChannelStats, Level, StatsRequest

SCALE_PASSTHROUGH = frozenset({"Relu", "MaxPool", "Resize"})


@dataclass(frozen=True)
class EqualizationReport:
    groups: int  # channel groups rescaled
    fixed: int  # channel groups that had to keep scale 1
    scale_min: float
    scale_max: float
    label: str = "equalised"

    def summary(self) -> str:
        return f"{self.groups} channel groups, scales {self.scale_min:.2f}..{self.scale_max:.2f}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "groups": self.groups,
            "fixed": self.fixed,
            "scale_min": round(self.scale_min, 4),
            "scale_max": round(self.scale_max, 4),
        }


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def new(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


@dataclass
class _Groups:
    uf: _UnionFind
    channels: dict[str, list[int]]  # tensor -> channel variable ids
    producers: dict[int, list[tuple[onnx.NodeProto, int]]]
    consumers: dict[int, list[tuple[onnx.NodeProto, int]]]
    fixed: set[int]


def _build_groups(index: GraphIndex) -> _Groups:
    uf = _UnionFind()
    channels: dict[str, list[int]] = {}
    producers: dict[int, list[tuple[onnx.NodeProto, int]]] = {}
    consumers: dict[int, list[tuple[onnx.NodeProto, int]]] = {}
    fixed: set[int] = set()

    def block(names: list[str]) -> None:
        for name in names:
            fixed.update(channels.get(name, []))

    for node in index.model.graph.node:  # topological order
        op = node.op_type
        if op == "Conv":
            source = node.input[0]
            usable = (
                attribute(node, "group", 1) == 1
                and node.input[1] in index.initializers
                and (len(node.input) < 3 or node.input[2] in index.initializers)
            )
            if source in channels:
                if usable:
                    for ch, var in enumerate(channels[source]):
                        consumers.setdefault(var, []).append((node, ch))
                else:
                    block([source])
            if usable:
                out_vars = [uf.new() for _ in range(index.initializers[node.input[1]].dims[0])]
                for ch, var in enumerate(out_vars):
                    producers.setdefault(var, []).append((node, ch))
                channels[node.output[0]] = out_vars
        elif op in SCALE_PASSTHROUGH and node.input[0] in channels:
            channels[node.output[0]] = channels[node.input[0]]
        elif op == "Add" and len(node.input) == 2 and all(i in channels for i in node.input):
            a, b = (channels[i] for i in node.input)
            if len(a) == len(b):
                for x, y in zip(a, b, strict=True):
                    uf.union(x, y)
                channels[node.output[0]] = a
            else:
                block(list(node.input))
        elif op == "Concat" and attribute(node, "axis") in (1, -3) and all(i in channels for i in node.input):
            channels[node.output[0]] = [v for i in node.input for v in channels[i]]
        else:
            block([i for i in node.input if i])
    block(list(index.graph_outputs))
    return _Groups(uf, channels, producers, consumers, {uf.find(v) for v in fixed})


class Magnitude(str, Enum):
    """What a channel's activation size ``A_c`` is read as."""

    MAX = "max"  # the largest |value| seen (CHANNEL statistics)
    RMS = "rms"  # the root mean square over the photos (MOMENTS statistics)

    @property
    def level(self) -> Level:
        return Level.MOMENTS if self is Magnitude.RMS else Level.CHANNEL

    def of(self, entry: ChannelStats) -> np.ndarray:
        if self is Magnitude.RMS and entry.total_sq is not None:
            return np.sqrt(np.maximum(entry.total_sq / max(entry.images, 1), 0.0))
        return entry.absmax


def equalize(
    model: onnx.ModelProto, stats: ActivationStats, alpha: float = 0.5, magnitude: Magnitude = Magnitude.MAX
) -> tuple[onnx.ModelProto, EqualizationReport, dict[str, np.ndarray]]:
    """A rescaled copy of ``model`` (same float function), what was done, and the
    per-channel factor each rescaled tensor was divided by.

    ``stats`` must cover the tensors between convolutions (any missing tensor is
    simply not used for that channel's activation range).
    """
    copy = copy_model(model)
    index = GraphIndex.build(copy)
    groups = _build_groups(index)
    uf = groups.uf

    members: dict[int, list[int]] = {}
    for var in range(len(uf.parent)):
        members.setdefault(uf.find(var), []).append(var)
    act_range: dict[int, float] = {}
    for tensor, variables in groups.channels.items():
        if tensor not in stats:
            continue
        size = magnitude.of(stats[tensor])
        for ch, var in enumerate(variables):
            root = uf.find(var)
            act_range[root] = max(act_range.get(root, 0.0), float(size[ch]))

    touched = {
        n.input[i]
        for n in copy.graph.node
        if n.op_type == "Conv"
        for i in (1, 2)
        if i < len(n.input) and n.input[i] in index.initializers
    }
    weights = {name: index.array(name).copy() for name in touched}
    scales: list[float] = []
    scale_of: dict[int, float] = {}
    for root, variables in members.items():
        if root in groups.fixed:
            continue
        prods = [p for v in variables for p in groups.producers.get(v, [])]
        cons = [c for v in variables for c in groups.consumers.get(v, [])]
        if not prods or not cons:
            continue
        weight_range = max(float(np.abs(weights[n.input[1]][:, ch]).max()) for n, ch in cons)
        activation = act_range.get(root, 0.0)
        if activation <= 0.0 or weight_range <= 0.0:
            continue
        scale = activation**alpha / weight_range ** (1.0 - alpha)
        for node, ch in prods:
            weights[node.input[1]][ch] /= scale
            if len(node.input) > 2:
                weights[node.input[2]][ch] /= scale
        for node, ch in cons:
            weights[node.input[1]][:, ch] *= scale
        scales.append(scale)
        scale_of[root] = scale
    for name in touched:
        index.set_array(name, weights[name].astype(index.array(name).dtype))
    report = EqualizationReport(
        groups=len(scales),
        fixed=len(groups.fixed),
        scale_min=min(scales, default=1.0),
        scale_max=max(scales, default=1.0),
    )
    divisors = {
        tensor: np.array([scale_of.get(uf.find(v), 1.0) for v in variables])
        for tensor, variables in groups.channels.items()
    }
    return copy, report, divisors


def scale_stats(stats: ActivationStats, divisors: dict[str, np.ndarray]) -> ActivationStats:
    """``stats`` with each rescaled tensor's channels divided by their factor (exact)."""
    carried = ActivationStats(dict(stats.tensors), stats.images)
    for name, divisor in divisors.items():
        entry = carried.tensors.get(name)
        if entry is None or np.all(divisor == 1.0):
            continue
        if entry.level < Level.CHANNEL:
            carried.tensors.pop(name)  # a whole-tensor range cannot be rescaled per channel
            continue
        carried.tensors[name] = replace(
            entry,
            minimum=entry.minimum / divisor,
            maximum=entry.maximum / divisor,
            total=None if entry.total is None else entry.total / divisor,
            total_sq=None if entry.total_sq is None else entry.total_sq / divisor**2,
            histogram=None,  # channels rescaled unequally: the distribution must be measured again
        )
    return carried


@dataclass(frozen=True)
class Equalize:
    """The pass: measure the tensors between convolutions, rescale, carry the statistics."""

    alpha: float = 0.5
    magnitude: Magnitude = Magnitude.MAX
    name: str = "equalize"
    carries: bool = True
    carries_distributions: bool = False

    def request(self, model: onnx.ModelProto) -> StatsRequest:
        """Every tensor whose channels take part in a rescaling group (between convolutions)."""
        return StatsRequest.of(_build_groups(GraphIndex.build(model)).channels, self.magnitude.level)

    def apply(self, model: onnx.ModelProto, stats: ActivationStats) -> Rewritten:
        rewritten, report, divisors = equalize(model, stats, alpha=self.alpha, magnitude=self.magnitude)
        return Rewritten(rewritten, report, scale_stats(stats, divisors))
