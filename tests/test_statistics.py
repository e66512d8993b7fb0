"""Activation statistics inside the graph, against numpy and against onnxruntime's own calibrators.

Photos feed every measurement through ``PhotoFeeds`` (lazy, restartable, the inference
preprocessing); ``collect`` answers a merged ``StatsRequest`` in one pass with reductions in
the graph, ordered so tensors die early - the numbers must not care; calibration ranges
are the ones onnxruntime's MinMax calibrator would store, bit for bit; the histogram
methods run a chunk of tensors at a time and must not care either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator
from onnxruntime.quantization.quant_utils import load_model_with_shape_infer
from PIL import Image

import quantkit.model.images
from quantkit.errors import QuantkitError
from quantkit.graph.order import measured_graph_nodes
from quantkit.graph.prepare import prepare
from quantkit.model.preprocess import preprocess
from quantkit.model.spec import read_spec
from quantkit.ptq.options import CalibMethod
from quantkit.ptq.ranges import calibration_tensors, histogram_ranges, minmax_ranges
from quantkit.ptq.samples import PhotoFeeds
from quantkit.statistics.collect import CALIBRATION_SESSION, collect
from quantkit.statistics.types import ActivationStats, ChannelStats, Level, StatsRequest

from .conftest import build_tiny_model, write_photos

Feeds = list[dict[str, np.ndarray]]


@pytest.fixture(scope="module")
def photo_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_photos(tmp_path_factory.mktemp("stats_photos"), 6)


@pytest.fixture(scope="module")
def prepared(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model as calibration sees it: opset 13, shapes inferred."""
    return prepare(onnx.load(str(tiny_model_path)), tmp_path_factory.mktemp("prepared"))


@pytest.fixture(scope="module")
def feeds(tiny_model_path: Path, photo_files: list[Path]) -> PhotoFeeds:
    return PhotoFeeds(sorted(photo_files), read_spec(tiny_model_path))


def activations(model: onnx.ModelProto, names: list[str], feeds: Feeds) -> dict[str, np.ndarray]:
    """Every named tensor for every feed, stacked [images, C, H, W], by plain onnxruntime."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    del exposed.graph.output[:]
    exposed.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in names)
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    runs = [session.run(names, feed) for feed in feeds]
    return {name: np.concatenate([run[k] for run in runs]) for k, name in enumerate(names)}


# --- photos in -------------------------------------------------------------------------------


def test_feeds_are_sorted_lazy_restartable_and_use_inference_preprocessing(
    tiny_model_path: Path, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []
    real_open = quantkit.model.images.open_image

    def counting_open(path: Path) -> Image.Image:
        decoded.append(path.name)
        return real_open(path)

    monkeypatch.setattr(quantkit.model.images, "open_image", counting_open)
    spec = read_spec(tiny_model_path)
    files = sorted(photos.iterdir())
    feeds = PhotoFeeds(files, spec)
    stream = iter(feeds)
    assert decoded == []  # nothing read up front
    first = next(stream)
    assert decoded == ["photo_00.png"]  # one photo at a time
    assert list(first) == ["input.1"]
    with Image.open(photos / "photo_00.png") as image:
        assert np.array_equal(first["input.1"], preprocess(image, spec))
    rest = list(stream)
    assert len(rest) == 7 and decoded == [p.name for p in files]
    again = list(feeds)  # a second pass gives the same tensors
    assert all(np.array_equal(a["input.1"], b["input.1"]) for a, b in zip([first, *rest], again, strict=True))
    assert feeds.used == files and len(feeds) == 8


def test_unreadable_photos_are_skipped_and_a_folder_of_them_is_refused(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    (photos / "photo_03.jpg").write_bytes(b"\xff\xd8 broken")
    spec = read_spec(tiny_model_path)
    feeds = PhotoFeeds(sorted(photos.iterdir()), spec)
    feeds.check("calibration")
    assert len(list(feeds)) == 7
    assert [p.name for p, _ in feeds.skips.skipped] == ["photo_03.jpg"]
    assert "photo_03.jpg" not in [p.name for p in feeds.used]
    bad = []
    for k in range(3):
        (tmp_path / f"bad{k}.jpg").write_text("nope")
        bad.append(tmp_path / f"bad{k}.jpg")
    with pytest.raises(QuantkitError, match="none of the 3 calibration image files could be read"):
        PhotoFeeds(bad, spec).check("calibration")


# --- requests --------------------------------------------------------------------------------


def channel_stats(level: Level, channels: int = 2) -> ChannelStats:
    moments = np.zeros(channels) if level is Level.MOMENTS else None
    shape = () if level is Level.TENSOR else (channels,)
    return ChannelStats(level, np.zeros(shape), np.ones(shape), moments, moments, 1)


def test_requests_merge_to_the_highest_level_per_tensor() -> None:
    a = StatsRequest.of(["x", "y"], Level.TENSOR)
    b = StatsRequest({"y": Level.MOMENTS, "z": Level.CHANNEL})
    merged = a | b
    assert dict(merged.tensors) == {"x": Level.TENSOR, "y": Level.MOMENTS, "z": Level.CHANNEL}
    assert dict((b | a).tensors) == dict(merged.tensors)  # order does not matter
    assert dict(a.tensors) == {"x": Level.TENSOR, "y": Level.TENSOR}  # the operands are untouched
    assert not StatsRequest() and merged
    assert dict((StatsRequest() | a).tensors) == dict(a.tensors)


def test_covered_by_needs_every_tensor_at_its_level_or_higher() -> None:
    stats = ActivationStats({"x": channel_stats(Level.MOMENTS), "y": channel_stats(Level.TENSOR)}, images=1)
    assert StatsRequest({"x": Level.CHANNEL}).covered_by(stats)  # moments answer channel ranges
    assert StatsRequest({"x": Level.MOMENTS, "y": Level.TENSOR}).covered_by(stats)
    assert not StatsRequest({"y": Level.CHANNEL}).covered_by(stats)  # a whole-tensor range is not enough
    assert not StatsRequest({"x": Level.TENSOR, "w": Level.TENSOR}).covered_by(stats)  # w was not measured
    assert StatsRequest().covered_by(ActivationStats())


# --- collect ---------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [11, 18])  # reduction axes as an attribute, and (from 18) as an input
def test_collect_matches_numpy_at_every_level(photo_files: list[Path], tmp_path: Path, opset: int) -> None:
    model = build_tiny_model(opset=opset)
    path = tmp_path / "u2net.onnx"
    onnx.save(model, str(path))
    feeds = list(PhotoFeeds(sorted(photo_files), read_spec(path)))
    request = StatsRequest({"c0": Level.TENSOR, "c1": Level.CHANNEL, "cat": Level.MOMENTS})
    stats = collect(model, request, feeds, tmp_path)
    values = activations(model, ["c0", "c1", "cat"], feeds)
    assert stats.images == 6 and all(stats[n].images == 6 for n in request.tensors)
    assert stats["c0"].minimum.shape == () and stats["c1"].minimum.shape == (8,)
    np.testing.assert_allclose(stats["c0"].tensor_range, (values["c0"].min(), values["c0"].max()), rtol=0)
    np.testing.assert_allclose(stats["c1"].minimum, values["c1"].min(axis=(0, 2, 3)), rtol=0)
    np.testing.assert_allclose(stats["c1"].maximum, values["c1"].max(axis=(0, 2, 3)), rtol=0)
    cat = values["cat"].astype(np.float64)
    per_image_mean = cat.mean(axis=(2, 3))  # [images, C]
    np.testing.assert_allclose(stats["cat"].mean, per_image_mean.mean(axis=0), rtol=1e-5, atol=1e-5)
    mean_square = (cat**2).mean(axis=(2, 3)).mean(axis=0)
    pooled_var = mean_square - per_image_mean.mean(axis=0) ** 2
    # The variance is E[x²] - E[x]², with E[x²] reduced in float32 inside the graph: exact to the
    # float32 rounding of E[x²]. On the offset channel (mean 200, std 0.006) that rounding is
    # all there is - its std reads 0.02 - which is why the check is on that scale.
    rounding = 4 * np.finfo(np.float32).eps * mean_square
    assert np.all(np.abs(stats["cat"].std ** 2 - pooled_var) <= rounding)
    wide = pooled_var > 1e-3
    np.testing.assert_allclose(stats["cat"].std[wide], np.sqrt(pooled_var[wide]), rtol=1e-4)
    with pytest.raises(ValueError, match="moments were not measured"):
        _ = stats["c1"].std
    assert list(tmp_path.iterdir()) == [path]  # the statistics graph is gone


def test_measurements_are_ordered_to_free_tensors_early_and_unused_nodes_dropped(
    prepared: Path,
) -> None:
    model = onnx.load(str(prepared))
    probes = {
        name: [helper.make_node("ReduceMax", [name], [f"max/{name}"], keepdims=0)]
        for name in ("c0", "c1", "c2")
    }
    groups = [(name, probes[name]) for name in ("c0", "c1", "c2")]  # in network order
    nodes, read = measured_graph_nodes(model.graph.node, groups, [f"max/{n}" for n in ("c0", "c1", "c2")])
    names = [n.name or n.output[0] for n in nodes]
    # The network up to Conv_2, then the last tensor's measurement first (so onnxruntime's
    # depth-first order computes and measures c0 before it goes on), Relu_2 and later dropped.
    assert names == [
        "Conv_0", "Relu_0", "MaxPool_0", "Conv_1", "Relu_1", "Resize_1", "Concat_1", "Conv_2",
        "max/c2", "max/c1", "max/c0",
    ]  # fmt: skip
    assert {"c0", "c1", "c2", "Conv_0.w"} <= read and "mask" not in read and "r2" not in read


def test_collect_over_every_tensor_at_once_is_exact_whatever_the_order(
    prepared: Path, feeds: PhotoFeeds, tmp_path: Path
) -> None:
    model = onnx.load(str(prepared))
    names = [o for n in model.graph.node for o in n.output]
    forward = collect(model, StatsRequest.of(names, Level.CHANNEL), feeds, tmp_path)
    backward = collect(model, StatsRequest.of(reversed(names), Level.CHANNEL), feeds, tmp_path)
    values = activations(model, names, list(feeds))
    for name in names:
        for stats in (forward, backward):
            np.testing.assert_array_equal(stats[name].minimum, values[name].min(axis=(0, 2, 3)), err_msg=name)
            np.testing.assert_array_equal(stats[name].maximum, values[name].max(axis=(0, 2, 3)), err_msg=name)


def test_unknown_tensor_and_non_finite_activations_are_one_line_errors(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Log", ["x"], ["log"]), helper.make_node("Sigmoid", ["log"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    feeds = [{"x": np.full((1, 3, 4, 4), -1.0, np.float32)}]  # log(-1) is NaN
    with pytest.raises(QuantkitError, match="statistics requested for unknown tensor 'nope'"):
        collect(model, StatsRequest.of(["nope"], Level.TENSOR), feeds, tmp_path)
    with pytest.raises(QuantkitError, match=r"NaN or infinite values \(tensor 'log'\)"):
        collect(model, StatsRequest.of(["log"], Level.TENSOR), feeds, tmp_path)


# --- calibration ranges ----------------------------------------------------------------------


class Reader:
    """onnxruntime's CalibrationDataReader over the same feeds."""

    def __init__(self, feeds: Feeds) -> None:
        self.items = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def test_calibration_tensors_are_onnxruntimes_own_selection(prepared: Path, tmp_path: Path) -> None:
    calibrator = create_calibrator(prepared, augmented_model_path=str(tmp_path / "augmented.onnx"))
    theirs, _ = calibrator.select_tensors_to_calibrate(load_model_with_shape_infer(prepared))
    ours = calibration_tensors(onnx.load(str(prepared)))
    assert len(ours) == len(set(ours)) == 13
    assert set(ours) == theirs


def test_minmax_ranges_equal_onnxruntimes_minmax_calibrater_bit_for_bit(
    prepared: Path, feeds: PhotoFeeds, tmp_path: Path
) -> None:
    model = onnx.load(str(prepared))
    tensors = calibration_tensors(model)
    stats = collect(
        model, StatsRequest.of(tensors, Level.TENSOR), feeds, tmp_path, settings=CALIBRATION_SESSION
    )
    ours = minmax_ranges(stats, tensors)
    calibrator = create_calibrator(prepared, augmented_model_path=str(tmp_path / "augmented.onnx"))
    calibrator.collect_data(Reader(list(feeds)))
    theirs = calibrator.compute_data()
    assert ours.calibration_method is CalibrationMethod.MinMax
    assert set(ours.keys()) == set(theirs.keys())
    for name in tensors:
        for mine, reference in zip(ours[name].range_value, theirs[name].range_value, strict=True):
            assert mine.dtype == reference.dtype == np.float32 and mine.shape == reference.shape == (1,)
            assert mine.tobytes() == reference.tobytes(), name


@pytest.fixture(scope="module")
def one_chunk(
    prepared: Path, feeds: PhotoFeeds, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, object]:
    model = onnx.load(str(prepared))
    tensors = calibration_tensors(model)
    work = tmp_path_factory.mktemp("histogram")
    return {
        m.value: histogram_ranges(model, tensors, feeds, m, work)
        for m in (CalibMethod.ENTROPY, CalibMethod.PERCENTILE)
    }


@pytest.mark.parametrize("method", [CalibMethod.ENTROPY, CalibMethod.PERCENTILE])
def test_histogram_ranges_in_many_chunks_equal_one_chunk(
    prepared: Path, feeds: PhotoFeeds, tmp_path: Path, method: CalibMethod, one_chunk: dict[str, object]
) -> None:
    model = onnx.load(str(prepared))
    tensors = calibration_tensors(model)
    ticks: list[int] = []
    chunked = histogram_ranges(
        model, tensors, feeds, method, tmp_path, tick=lambda: ticks.append(1), budget=1
    )
    assert len(ticks) == len(tensors) * len(feeds)  # a budget of one byte: one tensor, one pass each
    whole = one_chunk[method.value]
    assert set(chunked.keys()) == set(whole.keys()) == set(tensors)  # type: ignore[attr-defined]
    for name in tensors:
        for a, b in zip(chunked[name].range_value, whole[name].range_value, strict=True):  # type: ignore[index]
            assert np.array_equal(a, b), name
    assert list(tmp_path.iterdir()) == []


@pytest.mark.xfail(
    strict=True,
    reason="histogram ranges are accumulated photo by photo (merged histograms), onnxruntime's "
    "calibrators histogram all photos at once: the ranges differ (entropy: r2's max 0.76 vs 0.98)",
)
def test_histogram_ranges_equal_onnxruntimes_own_calibrater(
    prepared: Path, feeds: PhotoFeeds, tmp_path: Path, one_chunk: dict[str, object]
) -> None:
    calibrator = create_calibrator(
        prepared,
        augmented_model_path=str(tmp_path / "augmented.onnx"),
        calibrate_method=CalibrationMethod.Entropy,
    )
    calibrator.collect_data(Reader(list(feeds)))
    theirs = calibrator.compute_data()
    ours = one_chunk["entropy"]
    for name in theirs:
        for a, b in zip(ours[name].range_value, theirs[name].range_value, strict=True):  # type: ignore[index]
            np.testing.assert_allclose(a, b, rtol=1e-3, err_msg=name)
