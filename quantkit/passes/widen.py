"""Exact rewrites that give onnxruntime's INT8 convolution kernels shapes they run fast.

Why: onnxruntime's U8S8 convolution is fast for some channel counts and slow for
others. Measured here on a 320×320, 64-channel input: a 3×3 convolution with one
output channel takes 13.5 ms, with sixteen 6.1 ms; a 3×3 convolution over the
three image channels takes 4.7 ms, over four 3.2 ms. U²-Net's side outputs are
one-channel convolutions at full resolution (u2netp's ``Conv_945`` alone was
10% of the INT8 run time) and its first layer reads the 3-channel image.

What: a narrow convolution gets extra output channels that repeat its own filters
(so they add nothing new to the activation range), followed by a ``Slice`` back
to the original channels; the first convolution reads the image padded with one
zero channel, with a matching zero weight column. Both keep the float function
bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quantkit.graph.index import GraphIndex, attribute, copy_model
from quantkit.graph.shapes import spatial_sizes
from quantkit.passes.base import Rewritten
from quantkit.statistics.types import BINS, ActivationStats, ChannelStats, Level, StatsRequest

FAST_OUT_CHANNELS = 16
FAST_IN_CHANNELS = 4


@dataclass(frozen=True)
class WideningReport:
    widened_outputs: tuple[str, ...]  # convolutions given extra output channels
    widened_inputs: tuple[str, ...]  # convolutions given a zero input channel
    label: str = "widened for speed"

    def summary(self) -> str:
        return ", ".join(
            [
                *(f"{n} (outputs)" for n in self.widened_outputs),
                *(f"{n} (input)" for n in self.widened_inputs),
            ]
        )

    def to_dict(self) -> dict[str, Any]:
        return {"outputs": list(self.widened_outputs), "inputs": list(self.widened_inputs)}


@dataclass(frozen=True)
class NewTensors:
    """Tensors widening adds, each defined by an existing one (channels repeated, or a zero channel)."""

    repeated: dict[str, tuple[str, list[int]]]  # wide conv output -> (original output, channel of each)
    padded: dict[str, str]  # zero-padded image -> the graph input it pads


def widen(model: onnx.ModelProto, min_pixels: int = 80 * 80) -> tuple[onnx.ModelProto, WideningReport]:
    copy, report, _ = widen_with_tensors(model, min_pixels)
    return copy, report


def widen_with_tensors(
    model: onnx.ModelProto, min_pixels: int = 80 * 80
) -> tuple[onnx.ModelProto, WideningReport, NewTensors]:
    """Widen the narrow convolutions whose output has at least ``min_pixels`` pixels."""
    copy = copy_model(model)
    new = NewTensors({}, {})
    index = GraphIndex.build(copy)
    pixels = spatial_sizes(copy)
    graph = copy.graph
    outputs: list[str] = []
    inputs: list[str] = []
    new_nodes: list[onnx.NodeProto] = []
    graph_input = graph.input[0].name
    for node in graph.node:
        new_nodes.append(node)
        if (
            node.op_type != "Conv"
            or attribute(node, "group", 1) != 1
            or node.input[1] not in index.initializers
        ):
            continue
        weight = index.array(node.input[1])
        if node.input[0] == graph_input and weight.shape[1] < FAST_IN_CHANNELS:
            extra = FAST_IN_CHANNELS - weight.shape[1]
            padded_name = f"{graph_input}_quantkit_padded"
            new.padded[padded_name] = graph_input
            if not any(n.output and n.output[0] == padded_name for n in new_nodes):
                pads = numpy_helper.from_array(
                    np.array([0, 0, 0, 0, 0, extra, 0, 0], dtype=np.int64), f"{padded_name}_pads"
                )
                graph.initializer.append(pads)
                new_nodes.insert(
                    len(new_nodes) - 1,
                    helper.make_node(
                        "Pad", [graph_input, pads.name], [padded_name], name="quantkit_pad_input"
                    ),
                )
            zeros = np.zeros((weight.shape[0], extra, *weight.shape[2:]), dtype=weight.dtype)
            weight = np.concatenate([weight, zeros], axis=1)
            index.set_array(node.input[1], weight)
            node.input[0] = padded_name
            inputs.append(node.name)
        channels = weight.shape[0]
        if channels < FAST_OUT_CHANNELS and pixels.get(node.output[0], 0) >= min_pixels:
            repeat = [k % channels for k in range(FAST_OUT_CHANNELS)]
            index.set_array(node.input[1], weight[repeat])
            if len(node.input) > 2 and node.input[2] in index.initializers:
                index.set_array(node.input[2], index.array(node.input[2])[repeat])
            original = node.output[0]
            wide = f"{original}_quantkit_wide"
            new.repeated[wide] = (original, repeat)
            node.output[0] = wide
            names = [f"{original}_quantkit_{part}" for part in ("starts", "ends", "axes")]
            for name, value in zip(names, ([0], [channels], [1]), strict=True):
                graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.int64), name))
            new_nodes.append(
                helper.make_node("Slice", [wide, *names], [original], name=f"{node.name}_quantkit_slice")
            )
            outputs.append(node.name)
    del graph.node[:]
    graph.node.extend(new_nodes)
    # Shape annotations stay valid: every original tensor keeps its shape (the wide
    # outputs are new names, sliced back to the old ones).
    return copy, WideningReport(tuple(outputs), tuple(inputs)), new


def carry_stats(stats: ActivationStats, new: NewTensors) -> ActivationStats:
    """``stats`` plus the tensors widening added, exactly: a repeated channel has its
    original's statistics; the padding channel is all zeros."""
    carried = ActivationStats(dict(stats.tensors), stats.images)
    for wide, (original, channels) in new.repeated.items():
        entry = stats.tensors.get(original)
        if entry is not None:
            carried.tensors[wide] = entry.take(channels)
    for padded, source in new.padded.items():
        entry = stats.tensors.get(source)
        if entry is not None:
            carried.tensors[padded] = _with_zero_channel(entry)
    return carried


def _with_zero_channel(entry: ChannelStats) -> ChannelStats:
    if entry.level < Level.CHANNEL:
        lo, hi = entry.tensor_range
        zero = np.zeros(1)
        # How many channels the sampled values came from is not known at this level.
        return replace(entry, minimum=np.minimum(zero, lo), maximum=np.maximum(zero, hi), histogram=None)

    def append(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else np.append(values, 0.0)

    histogram = None
    if entry.histogram is not None:  # one more channel's worth of samples, all zero
        histogram = entry.histogram.copy()
        histogram[BINS.side] += int(entry.histogram.sum()) // len(entry.minimum)
    return replace(
        entry,
        minimum=np.append(entry.minimum, 0.0),
        maximum=np.append(entry.maximum, 0.0),
        total=append(entry.total),
        total_sq=append(entry.total_sq),
        histogram=histogram,
    )


@dataclass(frozen=True)
class Widen:
    """The pass: no statistics needed; every original tensor keeps its values, and the
    statistics of the tensors it adds follow exactly from their sources."""

    min_pixels: int = 80 * 80
    name: str = "widen"
    carries: bool = True
    carries_distributions: bool = True

    def request(self, model: onnx.ModelProto) -> StatsRequest:
        return StatsRequest()

    def apply(self, model: onnx.ModelProto, stats: ActivationStats) -> Rewritten:
        rewritten, report, new = widen_with_tensors(model, self.min_pixels)
        return Rewritten(rewritten, report, carry_stats(stats, new))
