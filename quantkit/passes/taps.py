"""Split a widened one-filter convolution into its taps and a 0/1 convolution that adds them up.

Why: widening (:mod:`quantkit.passes.widen`) gives U²-Net's one-channel 3×3 side
convolutions sixteen identical output channels, because onnxruntime's INT8 kernel
is fast only from sixteen outputs on. That buys speed with fifteen sixteenths of
the multiply-adds thrown away: u2netp's ``Conv_945`` reads 64 channels at
320×320 and does 9216 multiply-adds per pixel for 576 useful ones.

What: ``y = Conv_k×k(x; w, b)`` with every output row of ``w`` the same filter
becomes

- a 1×1 "tap" convolution C → 16 without bias: output ``j`` is the filter's tap
  ``j`` (``ky·kw + kx``) summed over the input channels; the taps repeat to fill
  sixteen channels, so they add nothing new to the activation range;
- a k×k "select" convolution 16 → 16 with the original padding, strides,
  dilations and bias, whose weight ``s[o, j, ky, kx]`` is 1 where ``j`` is tap
  ``(ky, kx)`` and 0 elsewhere.

Zero padding of ``x`` is zero padding of the taps (the tap convolution has no
bias), so the float function is the same up to float summation order. Weights of
0 and 1 quantize exactly; the cost is one more 8-bit rounding, of the tap maps.
Multiply-adds per output pixel for C = 64, k = 3: 9216 → 1024 + 2304 = 3328.
It runs only where it at least halves a convolution's multiply-adds (C ≥ 32 for
k = 3), leaving the extra tensor's memory traffic and rounding to small layers
that do not pay for them; and never on a convolution whose output only feeds a
sigmoid (:func:`~quantkit.graph.logits.saturating_logits`): the tap maps are
partial sums of that logit, which calibration cannot clip to the sigmoid's range
as it clips the logit, and on real IS-Net their full range (the final logit spans
-1546..17) made the split model's masks worse (ECSSD 0901-0940, IoU vs FP32
0.982 without widening and the split, 0.972 with both).

Kept apart from widening because it is not free in INT8 (the extra rounding; no
mask of ECSSD 0001-0300 moved by more than 0.01 IoU) and pays only where the
ISA makes sixteen outputs fast, so a recipe can leave it out; it reads widening's
result (identical output rows), so it runs after it.

Statistics carried through: every original tensor keeps its values (the select
convolution writes the original output), so they pass through unchanged. The tap
maps are new tensors, and they would cost a pass over the photos of their own
(18 s of the u2net stand-in's 81). They are measured instead in the pass before,
as projections (:class:`~quantkit.statistics.types.Projection`): tap ``j`` is
``Σ_c w[c, j] · x_c``, which neither rescaling ``x``'s channels with the matching
weight columns (equalisation) nor repeating the output row (widening) changes, so
its statistics measured before those passes are its statistics after them - as
long as the convolution's own output keeps its values. On U²-Net and IS-Net it
does (the one output channel reaches a Sigmoid, which equalisation never
rescales); where it does not, :meth:`SplitTaps.apply` sees it (a copy of the
output's statistics as measured against the ones carried to it) and leaves the
tap maps to calibration's own pass. Tests check both against a measurement on
the final float model.

Measured on the default INT8 u2netp (2-core AVX2 EPYC without VNNI, onnxruntime
1.31.1): see :data:`MEASURED`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quantkit.graph.index import GraphIndex, attribute, copy_model
from quantkit.graph.logits import saturating_logits
from quantkit.graph.shapes import spatial_sizes
from quantkit.passes.base import Rewritten
from quantkit.passes.widen import FAST_OUT_CHANNELS
from quantkit.statistics.types import ActivationStats, ChannelStats, Level, Projection, StatsRequest

MEASURED = (
    "u2netp: Conv_945, Conv_946, Conv_966 split (1,239 -> 447 M multiply-adds); INT8 p50 0.555x -> 0.531x"
    " of FP32 (60 interleaved runs, 2 threads); ECSSD 0001-0300 IoU vs FP32 0.9810 -> 0.9809 (neutral; the"
    " +0.002 measured in 0.2.0 came from that release calibrating it in a pass of its own)"
)


@dataclass(frozen=True)
class TapSplitReport:
    split: tuple[str, ...]  # convolutions split into a tap and a select convolution
    macs_before: int  # their multiply-adds before
    macs_after: int  # ...and after (both convolutions)
    label: str = "split into taps"

    def summary(self) -> str:
        if not self.split:
            return "no widened one-filter convolution worth splitting"
        return (
            f"{', '.join(self.split)}: {self.macs_before / 1e6:,.0f} → {self.macs_after / 1e6:,.0f} "
            "million multiply-adds"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"convs": list(self.split), "macs_before": self.macs_before, "macs_after": self.macs_after}


@dataclass(frozen=True)
class SplitTaps:
    """The pass: runs after :class:`~quantkit.passes.widen.Widen`; asks only for the statistics
    of the tensors it will add, so calibration needs no pass of its own."""

    max_cost: float = 0.5  # split only where it leaves at most this fraction of the multiply-adds
    name: str = "split_taps"
    carries: bool = True
    carries_distributions: bool = True

    def request(self, model: onnx.ModelProto) -> StatsRequest:
        """For every convolution that may be split once widened: its tap maps, and a copy of its
        output (to tell in :meth:`apply` whether that output kept its values since)."""
        index = GraphIndex.build(model)
        pixels = spatial_sizes(model)
        names = Counter(node.name for node in model.graph.node)
        logits = saturating_logits(model)
        projections: dict[str, Projection] = {}
        for node in model.graph.node:
            filt = None if node.output[0] in logits else _repeated_filter(node, index)
            if filt is None or not node.name or names[node.name] > 1:  # names key the projections
                continue
            outputs = max(int(index.initializers[node.input[1]].dims[0]), FAST_OUT_CHANNELS)
            if _macs(node, filt, outputs, pixels, self.max_cost) is None:
                continue
            channels, kh, kw = filt.shape
            taps = filt.reshape(channels, kh * kw).T[:, :, None, None]  # [tap, C, 1, 1]
            projections[_projected(node, "taps")] = Projection(node.input[0], taps)
            projections[_projected(node, "output")] = Projection(node.output[0])
        return StatsRequest(dict.fromkeys(projections, Level.CHANNEL), projections)

    def apply(self, model: onnx.ModelProto, stats: ActivationStats) -> Rewritten:
        """The split model; the statistics carried, with each tap map's from its projection when
        its convolution's output still has the values it had when they were measured."""
        rewritten, report, tap_maps = split_taps(model, self.max_cost)
        carried = ActivationStats(
            {k: v for k, v in stats.tensors.items() if not k.startswith(_PREFIX)}, stats.images
        )
        for tensor, (conv, taps) in tap_maps.items():
            measured = stats.tensors.get(_projected(conv, "taps"))
            then, now = stats.tensors.get(_projected(conv, "output")), stats.tensors.get(conv.output[0])
            if measured is not None and then is not None and now is not None and _same(then, now):
                carried.tensors[tensor] = measured.take(j % taps for j in range(FAST_OUT_CHANNELS))
        return Rewritten(rewritten, report, carried)


_PREFIX = "quantkit_projection/split_taps/"


def _projected(conv: onnx.NodeProto, part: str) -> str:
    """A projection's name: by node name, which the passes keep (widening renames the output)."""
    return f"{_PREFIX}{conv.name}/{part}"


def _same(then: ChannelStats, now: ChannelStats) -> bool:
    """Whether channel 0 of a convolution's output (its one filter, widened or not) kept its range:
    false when equalisation rescaled it, which would scale the tap maps too."""
    return bool(
        np.allclose(then.minimum[0], now.minimum[0], rtol=1e-6, atol=0.0)
        and np.allclose(then.maximum[0], now.maximum[0], rtol=1e-6, atol=0.0)
    )


def split_taps(
    model: onnx.ModelProto, max_cost: float = 0.5
) -> tuple[onnx.ModelProto, TapSplitReport, dict[str, tuple[onnx.NodeProto, int]]]:
    """Split every convolution whose output rows all repeat one filter, where that pays; also
    each tap map added, with its convolution and its number of taps."""
    copy = copy_model(model)
    index = GraphIndex.build(copy)
    pixels = spatial_sizes(copy)
    graph = copy.graph
    taps = FAST_OUT_CHANNELS
    split: list[str] = []
    tap_maps: dict[str, tuple[onnx.NodeProto, int]] = {}
    before = after = 0
    new_nodes: list[onnx.NodeProto] = []
    released: set[str] = set()
    logits = saturating_logits(copy)
    for node in graph.node:
        repeated = None if node.output[0] in logits else _repeated_filter(node, index)
        outputs = 0 if repeated is None else int(index.initializers[node.input[1]].dims[0])
        macs = None if repeated is None else _macs(node, repeated, outputs, pixels, max_cost)
        if repeated is None or macs is None or outputs < taps:  # fewer: not widened, not fast
            new_nodes.append(node)
            continue
        channels, kh, kw = repeated.shape
        filt = repeated.reshape(channels, kh * kw)  # [C, tap]
        tap_weight = np.stack([filt[:, j % (kh * kw)] for j in range(taps)])[:, :, None, None]
        select = np.zeros((outputs, taps, kh, kw), dtype=repeated.dtype)
        for j in range(kh * kw):
            select[:, j, j // kw, j % kw] = 1
        tap_name, select_name = f"{node.input[1]}_quantkit_taps", f"{node.input[1]}_quantkit_select"
        graph.initializer.extend(
            [numpy_helper.from_array(tap_weight, tap_name), numpy_helper.from_array(select, select_name)]
        )
        released.add(node.input[1])
        tapped = f"{node.output[0]}_quantkit_taps"
        new_nodes.append(
            helper.make_node(
                "Conv",
                [node.input[0], tap_name],
                [tapped],
                name=f"{node.name}_quantkit_taps",
                kernel_shape=[1, 1],
            )
        )
        node.input[0], node.input[1] = tapped, select_name
        new_nodes.append(node)
        split.append(node.name)
        tap_maps[tapped] = (node, kh * kw)
        before += macs[0]
        after += macs[1]
    if not split:
        return model, TapSplitReport((), 0, 0), {}
    del graph.node[:]
    graph.node.extend(new_nodes)
    used = {name for n in graph.node for name in n.input}
    kept = [init for init in graph.initializer if init.name not in released or init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return copy, TapSplitReport(tuple(split), before, after), tap_maps


def _repeated_filter(node: onnx.NodeProto, index: GraphIndex) -> np.ndarray | None:
    """The filter ``[C, kh, kw]`` that every output row of a plain 2-D convolution repeats (one
    row counts), if it has more than one and at most sixteen taps; None for any other node."""
    if node.op_type != "Conv" or node.domain not in ("", "ai.onnx") or attribute(node, "group", 1) != 1:
        return None
    if node.input[1] not in index.initializers or len(index.initializers[node.input[1]].dims) != 4:
        return None
    weight = index.array(node.input[1])
    _, _, kh, kw = weight.shape
    if not 1 < kh * kw <= FAST_OUT_CHANNELS or not np.array_equal(
        weight, np.broadcast_to(weight[:1], weight.shape)
    ):
        return None
    return np.asarray(weight[0])


def _macs(
    node: onnx.NodeProto, filt: np.ndarray, outputs: int, pixels: dict[str, int], max_cost: float
) -> tuple[int, int] | None:
    """Multiply-adds of ``node`` with ``outputs`` rows before and after the split; None where
    the split would leave more than ``max_cost`` of them."""
    channels, kh, kw = filt.shape
    in_pixels, out_pixels = pixels.get(node.input[0], 0), pixels.get(node.output[0], 0)
    old = outputs * channels * kh * kw * out_pixels
    new = FAST_OUT_CHANNELS * channels * in_pixels + outputs * FAST_OUT_CHANNELS * kh * kw * out_pixels
    if not old or new > max_cost * old:
        return None
    return old, new
