"""The float-model rewrites: exact (equalisation) or exact where it matters (absorption)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from quantkit.absorb import absorb_offsets, find_offsets
from quantkit.calibration import FolderCalibrationReader
from quantkit.equalize import equalize
from quantkit.graph import GraphIndex
from quantkit.quantize import _prepare
from quantkit.sensitivity import island
from quantkit.spec import read_spec
from quantkit.stats import collect_stats


def run(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [session.run(None, feed)[0] for feed in feeds]


def prepared(tiny_model_path: Path, tmp_path: Path) -> onnx.ModelProto:
    return onnx.load(str(_prepare(onnx.load(str(tiny_model_path)), tmp_path)))


def conv_stats(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]):  # type: ignore[no-untyped-def]
    return collect_stats(model, [n.output[0] for n in model.graph.node if n.op_type == "Conv"], feeds)


def test_stats_match_numpy(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    model = prepared(tiny_model_path, tmp_path)
    feeds = list(FolderCalibrationReader(photos, read_spec(tiny_model_path)).feeds())
    stats = conv_stats(model, feeds)
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.append(onnx.helper.make_empty_tensor_value_info("c1"))
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    values = np.stack([session.run(["c1"], f)[0][0] for f in feeds])  # [images, C, H, W]
    np.testing.assert_allclose(stats["c1"].minimum, values.min(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(stats["c1"].maximum, values.max(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(stats["c1"].mean, values.mean(axis=(2, 3)).mean(axis=0), rtol=1e-5, atol=1e-5)


def test_absorption_finds_the_offset_channel_and_keeps_the_function(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    model = prepared(tiny_model_path, tmp_path)
    feeds = list(FolderCalibrationReader(photos, read_spec(tiny_model_path)).feeds())
    found = find_offsets(model, conv_stats(model, feeds))
    assert [(f.producer, f.channel) for f in found] == [("Conv_1", 3)]
    assert found[0].offset > 150 and found[0].consumers == ("Conv_2[3]",)
    rewritten = absorb_offsets(model, found)
    # Conv_2 is 1x1 without padding, so here the rewrite is exact.
    for before, after in zip(run(model, feeds), run(rewritten, feeds), strict=True):
        np.testing.assert_allclose(before, after, atol=2e-5)
    stats = conv_stats(rewritten, feeds)
    assert stats["c1"].maximum.max() < 0.5 * conv_stats(model, feeds)["c1"].maximum.max()


def test_equalisation_is_exact_and_balances_ranges(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    model = prepared(tiny_model_path, tmp_path)
    feeds = list(FolderCalibrationReader(photos, read_spec(tiny_model_path)).feeds())
    kinds = ("Conv", "Relu", "MaxPool", "Resize", "Concat", "Add")
    between = [o for n in model.graph.node if n.op_type in kinds for o in n.output]
    rewritten, report = equalize(model, collect_stats(model, between, feeds))
    assert report.groups > 0
    assert report.fixed >= 1  # the channel feeding the Sigmoid must keep its scale
    for before, after in zip(run(model, feeds), run(rewritten, feeds), strict=True):
        np.testing.assert_allclose(before, after, rtol=1e-4, atol=1e-5)
    # With alpha = 0.5 each of Conv_1's output channels ends with its activation
    # range equal to the largest weight reading it (Conv_2's column): balanced.
    after = collect_stats(rewritten, ["c1"], feeds)["c1"].absmax
    index = GraphIndex.build(rewritten)
    columns = np.abs(index.array(index.by_name["Conv_2"].input[1])).max(axis=(0, 2, 3))[:8]
    np.testing.assert_allclose(after, columns, rtol=1e-3)
    before = collect_stats(model, ["c1"], feeds)["c1"].absmax
    original = np.abs(GraphIndex.build(model).array("Conv_2.w")).max(axis=(0, 2, 3))[:8]
    assert not np.allclose(before, original, rtol=0.1)


def test_island_grows_only_through_private_inputs(tiny_model_path: Path, tmp_path: Path) -> None:
    model = prepared(tiny_model_path, tmp_path)
    assert island(model, "Conv_2", with_inputs=False) == ("Conv_2",)
    grown = island(model, "Conv_2", with_inputs=True)
    # Concat and Resize feed only Conv_2; so do Relu_1 and Conv_1 behind them.
    # Relu_0 also feeds MaxPool_0 and the Add, so the island stops there.
    assert set(grown) == {"Conv_1", "Relu_1", "Resize_1", "Concat_1", "Conv_2"}


def test_widening_is_exact_and_keeps_shape_annotations(tmp_path: Path, photos: Path) -> None:
    from quantkit.sensitivity import conv_macs
    from quantkit.widen import widen

    from .conftest import build_tiny_model

    path = tmp_path / "wide_tiny.onnx"
    onnx.save(build_tiny_model(size=96), str(path))
    model = prepared(path, tmp_path)
    wide, report = widen(model, min_pixels=96 * 96)
    # Every convolution with fewer than 16 outputs at full size; Conv_1 runs at 48x48.
    assert report.widened_outputs == ("Conv_0", "Conv_2", "Conv_3") and report.widened_inputs == ("Conv_0",)
    index = GraphIndex.build(wide)
    assert index.array("Conv_3.w").shape[0] == 16 and index.array("Conv_0.w").shape == (16, 4, 3, 3)
    rng = np.random.default_rng(1)
    feeds = [{"input.1": rng.standard_normal((1, 3, 96, 96)).astype(np.float32)} for _ in range(2)]
    for before, after in zip(run(model, feeds), run(wide, feeds), strict=True):
        np.testing.assert_allclose(before, after, rtol=1e-5, atol=1e-6)
    # The search prices float islands from these annotations: they must survive widening.
    assert conv_macs(wide)["Conv_1"] == conv_macs(model)["Conv_1"] > 0
    assert conv_macs(wide)["Conv_2"] == 2 * conv_macs(model)["Conv_2"]  # 8 -> 16 outputs
