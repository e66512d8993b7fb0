"""Calibration ranges as the default recipe reads them from the statistics: clipped tails from
sampled histograms, logits clipped where the sigmoid saturates, Concat inputs sharing the
Concat's range, the graph's outputs exact - and the exact ranges kept beside them for the
search."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData

from quantkit.errors import QuantkitError
from quantkit.graph.logits import SIGMOID_SATURATION, saturating_logits
from quantkit.ptq.options import CalibMethod, QuantizeOptions
from quantkit.ptq.ranges import CalibratedRanges, minmax_ranges, shared_concat_ranges, tail_range
from quantkit.statistics.collect import collect
from quantkit.statistics.types import BINS, ActivationStats, ChannelStats, Level, StatsRequest

from .conftest import U2NETP, build_tiny_model
from .family_models import isnet_like


def stats_of(values: np.ndarray) -> ChannelStats:
    return ChannelStats(
        Level.TENSOR,
        np.array([values.min()]),
        np.array([values.max()]),
        images=1,
        histogram=BINS.histogram(values),
    )


def test_bins_hold_every_value_and_read_percentiles_within_a_bin() -> None:
    rng = np.random.default_rng(0)
    values = np.concatenate(
        [rng.lognormal(0.0, 1.5, 200_000), -rng.lognormal(-1.0, 1.0, 50_000), np.zeros(999)]
    )
    counts = BINS.histogram(values.astype(np.float32))
    assert counts.sum() == values.size and counts[BINS.side] == 999  # zeros in the middle bin
    edges = BINS.upper_edges()
    assert np.all(np.diff(edges) > 0) and len(edges) == BINS.count
    for tail in (1e-2, 1e-3, 1e-4):
        lo, hi = tail_range(counts, tail, np.float32(values.min()), np.float32(values.max()))
        q_lo, q_hi = np.quantile(values, [tail, 1 - tail])
        assert q_hi <= hi <= q_hi * (1 + 1 / 2**BINS.mantissa_bits) * 1.0001  # one bin: <= 3.1% wide
        assert q_lo * (1 + 1 / 2**BINS.mantissa_bits) * 1.0001 <= lo <= q_lo


def test_tail_range_never_widens_and_zero_tail_is_min_max() -> None:
    values = np.array([0.0, 1.0, 2.0, 3.0, 1000.0], np.float32)
    counts = BINS.histogram(values)
    assert tail_range(counts, 0.0, np.float32(0.0), np.float32(1000.0)) == (0.0, 1000.0)
    lo, hi = tail_range(counts, 0.2, np.float32(0.0), np.float32(1000.0))
    assert lo == 0.0 and 3.0 <= hi < 3.2  # the one outlier left out, zero kept
    assert tail_range(np.zeros(BINS.count), 0.2, np.float32(-1.0), np.float32(1.0)) == (-1.0, 1.0)


def test_sampled_histograms_count_what_the_model_computes(tmp_path: Path) -> None:
    """The statistics pass's histogram of a tensor is the histogram of its values over every
    photo (a 32-px model: every pixel is sampled)."""
    model = build_tiny_model()
    rng = np.random.default_rng(1)
    feeds = [{"input.1": rng.normal(0, 1, (1, 3, 32, 32)).astype(np.float32)} for _ in range(3)]
    request = StatsRequest({"r1": Level.TENSOR, "c2": Level.CHANNEL}, distributions=frozenset({"r1"}))
    stats = collect(model, request, feeds, tmp_path)
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.append(helper.make_tensor_value_info("r1", TensorProto.FLOAT, None))
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    values = np.concatenate([session.run(["r1"], feed)[0].ravel() for feed in feeds])
    np.testing.assert_array_equal(stats["r1"].histogram, BINS.histogram(values))
    assert stats["c2"].histogram is None  # only where asked


def test_logits_into_a_sigmoid_are_found_and_side_logits_are_not() -> None:
    tiny = build_tiny_model()
    assert saturating_logits(tiny) == {"logit"}  # Conv_3 -> Sigmoid -> the mask
    isnet = isnet_like(size=64)
    found = saturating_logits(isnet)
    sigmoid_inputs = {n.input[0] for n in isnet.graph.node if n.op_type == "Sigmoid"}
    assert found and found <= {o for n in isnet.graph.node for o in n.output}
    assert not found & {o.name for o in isnet.graph.output}
    assert sigmoid_inputs & found
    # u2netp's side logits also feed the fusion convolution: none of them is clipped
    u2netp = onnx.load(str(U2NETP))
    fused = {n.input[0] for n in u2netp.graph.node if n.op_type == "Sigmoid"}
    readers = {t: [n.op_type for n in u2netp.graph.node if t in n.input] for t in fused}
    assert all(t not in saturating_logits(u2netp) for t, ops in readers.items() if set(ops) != {"Sigmoid"})


def test_minmax_ranges_clip_tails_and_logits_but_never_the_outputs() -> None:
    rng = np.random.default_rng(2)
    heavy = np.concatenate([rng.exponential(1.0, 100_000), [300.0]]).astype(np.float32)
    logit = np.concatenate([rng.normal(0.0, 4.0, 100_000), [-1500.0]]).astype(np.float32)
    stats = ActivationStats(
        {"heavy": stats_of(heavy), "logit": stats_of(logit), "mask": stats_of(heavy)}, images=1
    )
    names = ["heavy", "logit", "mask"]
    exact = minmax_ranges(stats, names)
    clipped = minmax_ranges(stats, names, 1e-4, saturated=["logit"], exact=["mask"])
    assert float(exact.data["heavy"].range_value[1][0]) == 300.0
    assert float(clipped.data["heavy"].range_value[1][0]) < 12.0  # the one far value left out
    lo, hi = (float(v[0]) for v in clipped.data["logit"].range_value)
    assert -SIGMOID_SATURATION <= lo < 0 < hi <= SIGMOID_SATURATION
    assert clipped.data["mask"].range_value == exact.data["mask"].range_value  # an output: exact
    both = CalibratedRanges(clipped, exact)
    assert both.relaxable == {"heavy", "logit"}
    back = both.with_exact(["heavy"])
    assert back.data["heavy"].range_value == exact.data["heavy"].range_value
    assert back.data["logit"].range_value == clipped.data["logit"].range_value
    again = CalibratedRanges.decode(both.encode())
    assert {k: v.range_value for k, v in again.chosen.data.items()} == {
        k: v.range_value for k, v in clipped.data.items()
    }
    assert again.relaxable == both.relaxable
    assert {k: v.range_value for k, v in again.exact.data.items()} == {
        k: v.range_value for k, v in exact.data.items()
    }
    assert again.with_exact(["heavy"]).data["heavy"].range_value == exact.data["heavy"].range_value
    assert CalibratedRanges.only(exact).relaxable == frozenset()


def _concat_model() -> onnx.ModelProto:
    """a, b -> Concat -> c; b is also read by a Relu (another reader), a only by the Concat."""
    nodes = [
        helper.make_node("Identity", ["x"], ["a"]),
        helper.make_node("Identity", ["y"], ["b"]),
        helper.make_node("Concat", ["a", "b"], ["c"], axis=1),
        helper.make_node("Relu", ["b"], ["d"]),
    ]
    value = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 1, 2, 2]) for n in ("x", "y")]
    out = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("c", "d")]
    return helper.make_model(helper.make_graph(nodes, "cat", value, out))


def _ranges(**bounds: tuple[float, float]) -> TensorsData:
    data = {
        k: TensorData(lowest=np.array([lo], np.float32), highest=np.array([hi], np.float32))
        for k, (lo, hi) in bounds.items()
    }
    return TensorsData(CalibrationMethod.MinMax, data)


@pytest.mark.parametrize(("b_range", "b_shares"), [((0.0, 1.0), False), ((0.0, 6.0), True)])
def test_concat_inputs_share_its_range_unless_another_reader_needs_a_finer_one(
    b_range: tuple[float, float], b_shares: bool
) -> None:
    ranges = _ranges(a=(0.0, 10.0), b=b_range, c=(0.0, 10.0), d=(0.0, 6.0))
    shared = shared_concat_ranges(_concat_model(), ranges)
    assert shared.data["a"].range_value == shared.data["c"].range_value  # read by the Concat only
    assert (shared.data["b"].range_value == shared.data["c"].range_value) is b_shares
    assert ranges.data["b"].range_value[1][0] == b_range[1]  # a new table: the input is untouched


def test_a_graph_output_read_by_a_concat_keeps_its_own_range() -> None:
    model = _concat_model()
    model.graph.output.append(helper.make_tensor_value_info("a", TensorProto.FLOAT, None))
    shared = shared_concat_ranges(model, _ranges(a=(0.0, 1.0), b=(0.0, 10.0), c=(0.0, 10.0), d=(0.0, 10.0)))
    assert float(shared.data["a"].range_value[1][0]) == 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"clip_tail": 0.5}, "--clip-tail must lie in [0, 0.01], got 0.5"),
        ({"clip_tail": -1e-5}, "--clip-tail must lie in [0, 0.01]"),
        ({"clip_tail": float("nan")}, "--clip-tail must lie in [0, 0.01], got nan"),
        ({"clip_tail": 1e-4, "method": CalibMethod.ENTROPY}, "applies to minmax calibration; entropy"),
    ],
)
def test_clip_tail_is_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(QuantkitError, match=re.escape(message)):
        QuantizeOptions(**options)
    assert QuantizeOptions(clip_tail=0.0).clip_tail == 0.0
