"""The two speed passes: tap splitting (float, exact up to summation order) and one-channel
Resizes in two dimensions (after quantization, equal bit for bit)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

import quantkit
from quantkit.graph.opset import upgrade_opset
from quantkit.passes.equalize import Equalize
from quantkit.passes.side_layout import SideLayout
from quantkit.passes.taps import SplitTaps
from quantkit.passes.widen import Widen
from quantkit.statistics.collect import collect
from quantkit.statistics.types import ActivationStats, Level, StatsRequest

from .conftest import CALIB, U2NETP, write_photos
from .family_models import cloth_like, u2net_like

SIDE_RESIZES = {"Resize_965", "Resize_985", "Resize_1005", "Resize_1025", "Resize_1045"}
SIDE_CONVS = {"Conv_945", "Conv_946", "Conv_966"}


def run(model: onnx.ModelProto, feed: dict[str, np.ndarray], optimize: bool = True) -> list[np.ndarray]:
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return [np.asarray(y) for y in session.run(None, feed)]


def random_feeds(model: onnx.ModelProto, count: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    value = model.graph.input[0]
    shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
    return [{value.name: rng.normal(0.0, 1.5, shape).astype(np.float32)} for _ in range(count)]


class _Feeds(CalibrationDataReader):  # type: ignore[misc]
    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def quantized(model: onnx.ModelProto, tmp_path: Path, fmt: QuantFormat = QuantFormat.QDQ) -> onnx.ModelProto:
    """``model`` through onnxruntime's quantize_static, calibrated on random inputs."""
    source, target = tmp_path / "float.onnx", tmp_path / f"int8-{fmt.name}.onnx"
    onnx.save(model, str(source))
    quantize_static(
        str(source),
        str(target),
        _Feeds(random_feeds(model, 4, seed=1)),
        quant_format=fmt,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return onnx.load(str(target))


def _conv(
    name: str, x: str, weight: np.ndarray, out: str, rng: np.random.Generator, **attrs: Any
) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    bias = rng.normal(0.0, 0.1, weight.shape[0]).astype(np.float32)
    inits = [numpy_helper.from_array(weight, f"{name}.w"), numpy_helper.from_array(bias, f"{name}.b")]
    return helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [out], name=name, **attrs), inits


def side_outputs_model(channels: int = 1, size: int = 16, by_scales: bool = False) -> onnx.ModelProto:
    """Two side convolutions with ``channels`` outputs each, upsampled 4x by Resizes to constant sizes
    (``by_scales``: the second by constant scales), concatenated and fused by a 1x1 convolution."""
    rng = np.random.default_rng(0)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    for branch in ("a", "b"):
        weight = rng.normal(0.0, 0.3, (channels, 8, 3, 3)).astype(np.float32)
        node, node_inits = _conv(f"Conv_{branch}", "x", weight, branch, rng, pads=[1, 1, 1, 1])
        nodes.append(node)
        inits += node_inits
    up = 4 * size
    inits.append(numpy_helper.from_array(np.array([1, channels, up, up], dtype=np.int64), "sizes"))
    inits.append(numpy_helper.from_array(np.array([1, 1, 4, 4], dtype=np.float32), "scales"))
    linear = {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}
    nodes.append(helper.make_node("Resize", ["a", "", "", "sizes"], ["up_a"], name="Resize_a", **linear))
    second = ["b", "", "scales"] if by_scales else ["b", "", "", "sizes"]
    nodes.append(helper.make_node("Resize", second, ["up_b"], name="Resize_b", **linear))
    nodes.append(helper.make_node("Concat", ["up_a", "up_b"], ["cat"], name="Concat_0", axis=1))
    fuse = rng.normal(0.0, 0.5, (1, 2 * channels, 1, 1)).astype(np.float32)
    node, node_inits = _conv("Conv_fuse", "cat", fuse, "fused", rng)
    nodes.append(node)
    inits += node_inits
    nodes.append(helper.make_node("Sigmoid", ["fused"], ["mask"], name="Sigmoid_0"))
    graph = helper.make_graph(
        nodes,
        "side_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, size, size])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, up, up])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def one_filter_model(channels: int = 64, kernel: tuple[int, int] = (3, 3), **attrs: Any) -> onnx.ModelProto:
    """A side convolution: ``channels`` → 1 output, then a Sigmoid; the logit is read outside
    the sigmoid too (U²-Net's side logits also feed its fusion convolution)."""
    rng = np.random.default_rng(2)
    weight = rng.normal(0.0, 0.2, (1, channels, *kernel)).astype(np.float32)
    node, inits = _conv("Conv_side", "x", weight, "logit", rng, **attrs)
    graph = helper.make_graph(
        [node, helper.make_node("Sigmoid", ["logit"], ["mask"], name="Sigmoid_0")],
        "one_filter",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 12, 12])],
        [
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, "h", "w"]),
            helper.make_tensor_value_info("logit", TensorProto.FLOAT, [1, 1, "h", "w"]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    return model


def only_into_sigmoid(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its logit read only by the Sigmoid (IS-Net's mask head)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [o for o in out.graph.output if o.name != "logit"]
    del out.graph.output[:]
    out.graph.output.extend(kept)
    return out


def widened_then_split(
    model: onnx.ModelProto, max_cost: float = 0.5
) -> tuple[onnx.ModelProto, onnx.ModelProto, Any, ActivationStats | None]:
    stats = ActivationStats()
    widened = Widen(min_pixels=1).apply(model, stats)
    split = SplitTaps(max_cost=max_cost).apply(widened.model, widened.stats or ActivationStats())
    assert split.stats is not None and widened.stats is not None
    assert split.stats.tensors.items() >= widened.stats.tensors.items()  # carried through unchanged
    assert not any(t.endswith("_quantkit_taps") for t in split.stats.tensors)  # nothing measured them
    return widened.model, split.model, split.report, split.stats


# --- tap splitting -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kernel", "attrs", "max_cost"),
    [
        ((3, 3), {"pads": [1, 1, 1, 1]}, 0.5),  # U²-Net's side convolutions
        ((3, 3), {"pads": [2, 2, 2, 2], "dilations": [2, 2]}, 0.5),
        ((3, 3), {"pads": [0, 1, 2, 1]}, 0.5),  # asymmetric padding
        ((3, 3), {"auto_pad": "SAME_UPPER"}, 0.5),
        ((5, 3), {"pads": [2, 1, 2, 1]}, 0.5),  # 15 taps still fit in 16 channels
        ((3, 3), {"pads": [1, 1, 1, 1], "strides": [2, 2]}, 1.0),  # taps at input resolution: costlier
    ],
)
def test_split_taps_keeps_the_float_function(
    kernel: tuple[int, int], attrs: dict[str, Any], max_cost: float
) -> None:
    model = one_filter_model(64, kernel, **attrs)
    _, split, report, _ = widened_then_split(model, max_cost)
    assert report.split == ("Conv_side",)
    assert 0 < report.macs_after < report.macs_before
    assert report.to_dict()["convs"] == ["Conv_side"]
    convs = [n for n in split.graph.node if n.op_type == "Conv"]
    assert [n.name for n in convs] == ["Conv_side_quantkit_taps", "Conv_side"]
    weights = {i.name: numpy_helper.to_array(i) for i in split.graph.initializer}
    select = weights[convs[1].input[1]]
    assert select.shape == (16, 16, *kernel) and set(np.unique(select)) == {0.0, 1.0}
    assert select.sum() == 16 * kernel[0] * kernel[1]  # each output adds every tap once
    assert weights[convs[0].input[1]].shape == (16, 64, 1, 1)
    assert len(convs[0].input) == 2  # no bias: zero padding of the input stays zero in the taps
    assert "Conv_side.w" not in weights  # the replaced weight is gone
    onnx.checker.check_model(split, full_check=True)
    for feed in random_feeds(model, 3):
        for expected, got in zip(
            run(model, feed, optimize=False), run(split, feed, optimize=False), strict=True
        ):
            assert got.shape == expected.shape
            np.testing.assert_allclose(
                got, expected, rtol=1e-5, atol=1e-5
            )  # logits up to ~15: summation order


def side_branch_model(channels: int = 64, side_feeds_a_conv: bool = False) -> onnx.ModelProto:
    """A convolution and ReLU whose ``channels`` channels feed a one-filter side convolution and
    a second convolution: equalisation rescales those channels, widening and the tap split act
    on the side convolution. Its output goes to a Sigmoid, or (``side_feeds_a_conv``) through a
    ReLU into another convolution, which lets equalisation rescale that output too."""
    rng = np.random.default_rng(3)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    spread = rng.uniform(0.05, 3.0, (channels, 1, 1, 1)).astype(np.float32)  # uneven: worth equalising
    for name, weight, x, out in (
        ("Conv_a", rng.normal(0.0, 0.3, (channels, 8, 3, 3)).astype(np.float32) * spread, "x", "a"),
        ("Conv_side", rng.normal(0.0, 0.2, (1, channels, 3, 3)).astype(np.float32), "h", "logit"),
        ("Conv_b", rng.normal(0.0, 0.2, (4, channels, 3, 3)).astype(np.float32), "h", "b"),
    ):
        node, node_inits = _conv(name, x, weight, out, rng, pads=[1, 1, 1, 1])
        nodes.append(node)
        inits += node_inits
        if name == "Conv_a":
            nodes.append(helper.make_node("Relu", ["a"], ["h"], name="Relu_a"))
    if side_feeds_a_conv:
        nodes.append(helper.make_node("Relu", ["logit"], ["side"], name="Relu_side"))
        node, node_inits = _conv("Conv_c", "side", np.full((1, 1, 1, 1), 0.5, np.float32), "mask", rng)
        nodes.append(node)
        inits += node_inits
    else:
        nodes.append(helper.make_node("Sigmoid", ["logit"], ["mask"], name="Sigmoid_0"))
    nodes.append(helper.make_node("Relu", ["b"], ["side_b"], name="Relu_b"))
    outputs = ["mask", "side_b"] if side_feeds_a_conv else ["mask", "side_b", "logit"]  # logit: as u2netp's
    graph = helper.make_graph(
        nodes,
        "side_branch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 12, 12])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return onnx.shape_inference.infer_shapes(model)


def carried_through(model: onnx.ModelProto, tmp_path: Path) -> tuple[onnx.ModelProto, Any, Any]:
    """Equalisation, widening and the tap split on statistics measured in one pass up front (as the
    pipeline measures them); the final model, the carried statistics, the feeds."""
    rewrites = (Equalize(), Widen(min_pixels=1), SplitTaps())
    request = rewrites[0].request(model) | rewrites[1].request(model) | rewrites[2].request(model)
    feeds = random_feeds(model, 4)
    stats: ActivationStats | None = collect(model, request, feeds, tmp_path)
    for rewrite in rewrites:
        assert rewrite.carries and stats is not None
        result = rewrite.apply(model, stats)
        model, stats = result.model, result.stats
    assert result.report.to_dict()["convs"] == ["Conv_side"]  # the side convolution was split
    return model, stats, feeds


TAPS = "logit_quantkit_wide_quantkit_taps"


def test_tap_maps_are_measured_in_the_pass_before_and_survive_equalisation(tmp_path: Path) -> None:
    """The tap split adds tensors no pass has seen; their statistics come from projections
    measured with equalisation's, and must equal a measurement on the final float model."""
    model = side_branch_model()
    request = SplitTaps().request(model)
    assert sorted(request.projections) == [
        "quantkit_projection/split_taps/Conv_side/output",
        "quantkit_projection/split_taps/Conv_side/taps",
    ]
    equalised = Equalize().apply(
        model, collect(model, Equalize().request(model), random_feeds(model, 4), tmp_path)
    )
    assert equalised.report.to_dict()["groups"] > 0  # the taps' input is rescaled on the way
    final, stats, feeds = carried_through(model, tmp_path)
    assert stats is not None and TAPS in stats
    assert not [t for t in stats.tensors if t.startswith("quantkit_projection/")]  # used up
    fresh = collect(final, StatsRequest.of([TAPS], Level.CHANNEL), feeds, tmp_path)
    np.testing.assert_allclose(stats[TAPS].minimum, fresh[TAPS].minimum, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats[TAPS].maximum, fresh[TAPS].maximum, rtol=1e-5, atol=1e-6)
    assert len(set(np.round(fresh[TAPS].maximum, 5))) == 9  # nine taps, repeated to sixteen


def test_tap_maps_of_a_rescaled_output_are_left_to_calibration(tmp_path: Path) -> None:
    """Where equalisation rescales the split convolution's output, the tap maps scale with it:
    what the projection measured no longer holds, so it is not carried (calibration measures)."""
    model = side_branch_model(side_feeds_a_conv=True)
    final, stats, feeds = carried_through(model, tmp_path)
    assert stats is not None and TAPS not in stats
    side = StatsRequest.of(["logit"], Level.CHANNEL)
    before, after = collect(model, side, feeds, tmp_path), collect(final, side, feeds, tmp_path)
    assert not np.allclose(before["logit"].maximum, after["logit"].maximum)  # it was rescaled
    np.testing.assert_allclose(stats["logit"].maximum, after["logit"].maximum, rtol=1e-5)  # and carried


def test_tap_maps_are_projected_only_for_convolutions_with_a_unique_name() -> None:
    model = one_filter_model(64)
    assert SplitTaps().request(model).projections  # eligible
    model.graph.node[0].name = ""
    assert not SplitTaps().request(model).projections  # projections are keyed by node name
    model.graph.node[0].name = model.graph.node[1].name = "Conv_side"
    assert not SplitTaps().request(model).projections


def test_split_taps_only_where_it_halves_the_work() -> None:
    # 16 channels in: 16*16 + 16*16*9 multiply-adds per pixel against 16*16*9 - no gain
    _, split, report, _ = widened_then_split(one_filter_model(16))
    assert report.split == () and not [n for n in split.graph.node if n.name.endswith("_quantkit_taps")]
    # 32 channels: 2816 against 4608, not half
    assert widened_then_split(one_filter_model(32))[2].split == ()
    assert widened_then_split(one_filter_model(64))[2].split == ("Conv_side",)
    # a logit read only by the sigmoid (IS-Net's mask head) keeps its one rounding: not split
    assert widened_then_split(only_into_sigmoid(one_filter_model(64)))[2].split == ()


def test_split_taps_finds_nothing_to_do_without_widened_one_filter_convolutions() -> None:
    model = u2net_like(size=64)  # one-filter side convolutions, but over 4-8 channels only
    widened = Widen(min_pixels=1).apply(model, ActivationStats())
    assert widened.report.to_dict()["outputs"]  # widening did fire...
    split = SplitTaps().apply(widened.model, ActivationStats())
    assert split.report.split == ()  # ...but no split pays
    assert "no " in split.report.summary()
    assert split.report.to_dict() == {"convs": [], "macs_before": 0, "macs_after": 0}
    assert split.model.SerializeToString() == widened.model.SerializeToString()
    # a wide one-filter convolution that was not widened is not split either (one output is
    # onnxruntime's slow path; the select convolution would be no better)
    alone = one_filter_model(64)
    result = SplitTaps().apply(alone, ActivationStats())
    assert result.report.split == () and result.model.SerializeToString() == alone.SerializeToString()


# --- one-channel Resizes in two dimensions -------------------------------------------------------


@pytest.mark.parametrize("fmt", [QuantFormat.QDQ, QuantFormat.QOperator])
def test_side_layout_keeps_quantized_outputs_bit_for_bit(tmp_path: Path, fmt: QuantFormat) -> None:
    model = side_outputs_model(channels=1)
    before = quantized(model, tmp_path, fmt)
    after, report = SideLayout().apply(before)
    assert report.resizes == ("Resize_a", "Resize_b")
    assert report.to_dict() == {"resizes": ["Resize_a", "Resize_b"]}
    assert "Resize_a" in report.summary()
    ops = [n.op_type for n in after.graph.node]
    assert ops.count("Squeeze") == ops.count("Unsqueeze") == 2
    used = {name for node in after.graph.node for name in node.input}
    assert all(i.name in used for i in after.graph.initializer)  # onnxruntime warns about unused ones
    onnx.checker.check_model(after, full_check=True)
    for feed in random_feeds(model, 4, seed=3):
        for expected, got in zip(run(before, feed), run(after, feed), strict=True):
            np.testing.assert_array_equal(got, expected)


def test_side_layout_on_a_u2net_stand_in(tmp_path: Path) -> None:
    model = upgrade_opset(u2net_like(size=64))  # exported at opset 11; quantkit quantizes at 13
    before = quantized(model, tmp_path)
    after, report = SideLayout().apply(before)
    assert len(report.resizes) == 5  # the five upsampled side outputs; d1 is at full size already
    for feed in random_feeds(model, 2, seed=4):
        for expected, got in zip(run(before, feed), run(after, feed), strict=True):
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "build", [lambda: side_outputs_model(channels=2), lambda: upgrade_opset(cloth_like(size=64))]
)
def test_side_layout_finds_nothing_to_do_without_one_channel_resizes(tmp_path: Path, build: Any) -> None:
    before = quantized(build(), tmp_path)
    after, report = SideLayout().apply(before)
    assert report.resizes == () and "no " in report.summary()
    assert after.SerializeToString() == before.SerializeToString()


def test_side_layout_leaves_resizes_it_cannot_flatten_alone() -> None:
    # by scales: a batch of several images would be resized too, which a 2-D Resize cannot do
    assert SideLayout().apply(side_outputs_model(channels=1, by_scales=True))[1].resizes == ("Resize_a",)
    model = side_outputs_model(channels=1)
    sizes = next(i for i in model.graph.initializer if i.name == "sizes")
    model.graph.initializer.remove(sizes)  # sizes computed at run time, not a constant
    model.graph.node.insert(
        0,
        helper.make_node("Constant", [], ["sizes"], value=numpy_helper.from_array(np.array([1, 1, 64, 64]))),
    )
    crop = next(n for n in model.graph.node if n.name == "Resize_b")
    next(a for a in crop.attribute if a.name == "coordinate_transformation_mode").s = b"tf_crop_and_resize"
    _, report = SideLayout().apply(model)
    assert report.resizes == ()


# --- the default recipe --------------------------------------------------------------------------


def test_default_recipe_reports_both_passes(tmp_path: Path) -> None:
    source = tmp_path / "u2netp.onnx"
    onnx.save(u2net_like(), str(source))
    photos = tmp_path / "photos"
    write_photos(photos, 8)
    report = quantkit.quantize(
        source, output=tmp_path / "out.onnx", options=quantkit.QuantizeOptions(calib_dir=photos)
    )
    names = [name for name, _ in report.passes]
    assert names.index("widen") < names.index("split_taps")
    assert names[-2:] == ["side_layout", "compact"]
    passes = report.to_dict()["passes"]
    assert passes["split_taps"]["convs"] == []  # 4-8 channels: not worth it
    assert len(passes["side_layout"]["resizes"]) == 5


@pytest.mark.slow
def test_default_u2netp_splits_the_side_convolutions_and_flattens_the_side_resizes(tmp_path: Path) -> None:
    out = tmp_path / "u2netp.int8.onnx"
    options = quantkit.QuantizeOptions(calib_dir=CALIB, use_cache=False)
    report = quantkit.quantize(U2NETP, output=out, options=options)
    passes = report.to_dict()["passes"]
    assert set(passes["split_taps"]["convs"]) == SIDE_CONVS
    assert passes["split_taps"]["macs_after"] < 0.4 * passes["split_taps"]["macs_before"]
    # absorption's pass, equalisation's (which also measures the tap maps), then the ranges
    # with their distributions, measured on the equalised model
    assert report.calibration.passes == 3
    assert set(passes["side_layout"]["resizes"]) == SIDE_RESIZES
    rows = {r.label: r.summary() for _, r in report.passes}
    assert "Conv_945" in rows["split into taps"] and "Resize_1045" in rows["side resizes in NCHW"]
    model = onnx.load(str(out))
    names = {n.name for n in model.graph.node}
    assert {f"{c}_quantkit_taps" for c in SIDE_CONVS} <= names
    assert {f"{r}_quantkit_to2d" for r in SIDE_RESIZES} <= names
    feed = {"input.1": np.zeros((1, 3, 320, 320), dtype=np.float32)}
    assert all(np.isfinite(y).all() for y in run(model, feed))
