"""The passes: exact float rewrites, the statistics they carry, and recipes as data.

Each rewrite is checked three ways on the tiny U²-Net-shaped model: the float function is
kept (exactly, or exactly where it matters); the statistics it hands on equal what a fresh
pass over the photos measures on the rewritten model; and a recipe is nothing but a list of
them - a recipe without rewrites is ``naive``, and a pass added in a test shows up in the
report, the table and ``--json`` without anything else knowing about it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from quantkit.cli import main
from quantkit.errors import QuantkitError
from quantkit.graph.index import GraphIndex
from quantkit.graph.prepare import prepare
from quantkit.graph.shapes import conv_macs
from quantkit.model.spec import read_spec
from quantkit.passes.absorb import AbsorbOffsets, absorb_offsets, find_offsets
from quantkit.passes.base import Rewritten
from quantkit.passes.compact import Compact
from quantkit.passes.equalize import Equalize, equalize, scale_stats
from quantkit.passes.recipes import DEFAULT, NAIVE, RECIPES, Recipe, get_recipe
from quantkit.passes.widen import Widen, widen
from quantkit.ptq.samples import PhotoFeeds
from quantkit.statistics.collect import collect
from quantkit.statistics.types import ActivationStats, ChannelStats, Level, StatsRequest

from .cli_helpers import signed_json
from .conftest import build_tiny_model, quantize_tiny

Feeds = list[dict[str, np.ndarray]]


@pytest.fixture(scope="module")
def prepared(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> onnx.ModelProto:
    return onnx.load(str(prepare(onnx.load(str(tiny_model_path)), tmp_path_factory.mktemp("prepared"))))


@pytest.fixture(scope="module")
def feeds(tiny_model_path: Path, session_photos: Path) -> Feeds:
    return list(PhotoFeeds(sorted(session_photos.iterdir()), read_spec(tiny_model_path)))


def run(model: onnx.ModelProto, feeds: Feeds) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [session.run(None, feed)[0] for feed in feeds]


def same_statistics(carried: ChannelStats, fresh: ChannelStats, scale: float) -> None:
    """Equal up to the float32 rounding of the model's activations (``scale``: the largest one).

    Min, max and mean to ~1e-6 of ``scale``. The variance is E[x²] - E[x]² with E[x²] reduced in
    float32 inside the graph, so it is compared to the rounding of E[x²] (see test_statistics).
    """
    atol = 1e-6 * scale
    np.testing.assert_allclose(carried.minimum, fresh.minimum, rtol=1e-5, atol=atol)
    np.testing.assert_allclose(carried.maximum, fresh.maximum, rtol=1e-5, atol=atol)
    assert carried.level == fresh.level and carried.images == fresh.images
    if fresh.level is Level.MOMENTS:
        np.testing.assert_allclose(carried.mean, fresh.mean, rtol=1e-5, atol=atol)
        rounding = 4 * np.finfo(np.float32).eps * scale**2
        assert np.all(np.abs(carried.std**2 - fresh.std**2) <= rounding)


# --- offset absorption -----------------------------------------------------------------------


def test_absorption_finds_the_offset_channel_and_keeps_the_function(
    prepared: onnx.ModelProto, feeds: Feeds, tmp_path: Path
) -> None:
    request = AbsorbOffsets().request(prepared)
    assert dict(request.tensors) == dict.fromkeys(["c0", "c1", "c2", "logit"], Level.MOMENTS)
    stats = collect(prepared, request, feeds, tmp_path)
    found = find_offsets(prepared, stats)
    assert [(f.producer, f.channel) for f in found] == [("Conv_1", 3)]
    assert 195 < found[0].offset < stats["c1"].minimum[3] and found[0].consumers == ("Conv_2[3]",)
    rewritten = absorb_offsets(prepared, found)
    # Conv_2 is 1x1 without padding, so here the rewrite is exact.
    for before, after in zip(run(prepared, feeds), run(rewritten, feeds), strict=True):
        np.testing.assert_allclose(before, after, atol=2e-5)
    after = collect(rewritten, request, feeds, tmp_path)
    assert after["c1"].maximum.max() < 0.05 * stats["c1"].maximum.max()  # the offset no longer sets the step


def test_absorption_shifts_exactly_the_traced_channel_and_hands_on_no_statistics(
    prepared: onnx.ModelProto, feeds: Feeds, tmp_path: Path
) -> None:
    """The offset leaves channel 3 of c1 and of everything it flows through, exactly, and - the
    consumer being 1x1 and unpadded - nothing else moves. The pass still hands on no statistics:
    on padded consumers the border does move, so the next pass measures afresh (see its docstring)."""
    absorb = AbsorbOffsets()
    shifted = ("c1", "r1", "u1", "cat")
    request = absorb.request(prepared) | StatsRequest.of([*shifted, "r2"], Level.MOMENTS)
    stats = collect(prepared, request, feeds, tmp_path)
    result = absorb.apply(prepared, stats)
    assert result.stats is None
    offset = result.report.to_dict()["offsets"][0]["offset"]
    fresh = collect(result.model, request, feeds, tmp_path)
    scale = float(max(stats[name].absmax.max() for name in request.tensors))  # the 200 offset
    for name in request.tensors:
        expected = stats[name]
        if name in shifted:
            shift = np.zeros(len(expected.minimum))
            shift[3] = offset
            n = expected.images
            expected = ChannelStats(
                Level.MOMENTS,
                expected.minimum - shift,
                expected.maximum - shift,
                expected.total - n * shift,  # type: ignore[operator]
                expected.total_sq - 2 * shift * expected.total + n * shift**2,  # type: ignore[operator]
                n,
            )
        same_statistics(expected, fresh[name], scale)
    assert fresh["c1"].maximum[3] < 5 < stats["c1"].maximum[3]  # and it did shift something


def test_absorption_leaves_a_channel_that_reaches_an_output_alone(
    prepared: onnx.ModelProto, feeds: Feeds, tmp_path: Path
) -> None:
    exposed = onnx.ModelProto()
    exposed.CopyFrom(prepared)
    exposed.graph.output.append(helper.make_empty_tensor_value_info("u1"))  # the offset is now seen
    stats = collect(exposed, AbsorbOffsets().request(exposed), feeds, tmp_path)
    assert find_offsets(exposed, stats) == []


# --- equalisation ----------------------------------------------------------------------------


def test_equalisation_is_exact_balances_ranges_and_carries_its_statistics(
    prepared: onnx.ModelProto, feeds: Feeds, tmp_path: Path
) -> None:
    equalize = Equalize()
    request = equalize.request(prepared)
    assert set(request.tensors) == {"c0", "r0", "p0", "c1", "r1", "u1", "cat", "c2", "r2", "sum", "logit"}
    original = prepared.SerializeToString()
    result = equalize.apply(prepared, collect(prepared, request, feeds, tmp_path))
    assert prepared.SerializeToString() == original  # the input model is left untouched
    report = result.report.to_dict()
    assert report["groups"] > 0 and report["fixed"] >= 1  # the channel feeding the Sigmoid keeps its scale
    for before, after in zip(run(prepared, feeds), run(result.model, feeds), strict=True):
        np.testing.assert_allclose(before, after, rtol=1e-4, atol=1e-5)
    # Carried statistics: every rescaled channel divided by its scale - exact.
    moments = StatsRequest.of(request.tensors, Level.MOMENTS)
    stats = collect(prepared, moments, feeds, tmp_path)
    carried = equalize.apply(prepared, stats).stats
    fresh = collect(result.model, moments, feeds, tmp_path)
    assert carried is not None and set(carried.tensors) == set(fresh.tensors)
    scale = float(max(entry.absmax.max() for entry in stats.tensors.values()))
    for name in moments.tensors:
        same_statistics(carried[name], fresh[name], scale)
    # With alpha = 0.5 each of Conv_1's output channels ends with its activation range equal
    # to the largest weight reading it (Conv_2's column): balanced.
    index = GraphIndex.build(result.model)
    columns = np.abs(index.array(index.by_name["Conv_2"].input[1])).max(axis=(0, 2, 3))[:8]
    np.testing.assert_allclose(fresh["c1"].absmax, columns, rtol=1e-3)
    before = np.abs(GraphIndex.build(prepared).array("Conv_2.w")).max(axis=(0, 2, 3))[:8]
    assert not np.allclose(stats["c1"].absmax, before, rtol=0.1)


def test_a_whole_tensor_range_is_dropped_not_carried_wrong(
    prepared: onnx.ModelProto, feeds: Feeds, tmp_path: Path
) -> None:
    """One min/max cannot be rescaled per channel: the next pass must measure it."""
    stats = collect(prepared, Equalize().request(prepared), feeds, tmp_path)
    _, _, divisors = equalize(prepared, stats)
    whole = collect(prepared, StatsRequest.of(["c1", "c0", "mask"], Level.TENSOR), feeds, tmp_path)
    carried = scale_stats(whole, divisors)
    assert "c1" not in carried and "c0" not in carried  # both rescaled
    assert carried["mask"] is whole["mask"]  # the Sigmoid's output keeps its scale, and its range


# --- widening and compaction -----------------------------------------------------------------


def test_widening_is_exact_and_keeps_shape_annotations(tmp_path: Path) -> None:
    model = onnx.load(str(prepare(build_tiny_model(size=96), tmp_path)))
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
    # Every original tensor keeps its values, and each new one repeats an original's channels:
    # whatever statistics the pass hands on, a fresh pass on the widened model measures the same.
    request = StatsRequest.of(["input.1", "c0", "c1", "c2", "logit", "sum"], Level.MOMENTS)
    stats = collect(model, request, feeds, tmp_path)
    carried = Widen(min_pixels=96 * 96).apply(model, stats).stats
    assert carried is not None and set(request.tensors) <= set(carried.tensors)
    fresh = collect(wide, StatsRequest({n: e.level for n, e in carried.tensors.items()}), feeds, tmp_path)
    scale = float(max(entry.absmax.max() for entry in stats.tensors.values()))
    for name, entry in carried.tensors.items():
        same_statistics(entry, fresh[name], scale)


def test_compaction_is_lossless_and_smaller(tiny_naive: Path, feeds: Feeds) -> None:
    model = onnx.load(str(tiny_naive))
    compacted, report = Compact().apply(model)
    assert report.renamed > 0 and report.bytes_saved == model.ByteSize() - compacted.ByteSize() > 0
    for before, after in zip(run(model, feeds), run(compacted, feeds), strict=True):
        np.testing.assert_array_equal(before, after)
    assert all(
        not n.name for n in compacted.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
    )
    convs = sorted(n.name for n in compacted.graph.node if n.op_type == "Conv")
    assert convs == ["Conv_0", "Conv_1", "Conv_2", "Conv_3"]  # --exclude still speaks the model's names
    assert len(compacted.graph.value_info) == 0


# --- recipes ---------------------------------------------------------------------------------


def test_recipes_by_name() -> None:
    assert get_recipe("default") is DEFAULT and get_recipe("naive") is NAIVE
    assert DEFAULT.check and not NAIVE.check and NAIVE.rewrites == () == NAIVE.post
    assert [r.name for r in DEFAULT.rewrites][:3] == ["absorb", "equalize", "widen"]
    with pytest.raises(QuantkitError, match=r"unknown recipe 'fast' \(known: default, naive"):
        get_recipe("fast")


def test_a_recipe_of_no_rewrites_is_naive(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    empty = Recipe("empty", "nothing", rewrites=(), post=(), check=False)
    plain = quantize_tiny(tiny_model_path, photos, tmp_path / "plain.onnx", NAIVE)
    bare = quantize_tiny(tiny_model_path, photos, tmp_path / "bare.onnx", empty)
    a, b = onnx.load(str(tmp_path / "plain.onnx")), onnx.load(str(tmp_path / "bare.onnx"))
    assert a.graph == b.graph
    recipe = {p.key: p.value for p in b.metadata_props}["quantkit.recipe"]
    assert recipe == "empty"  # the only difference: the recipe's name in the file
    assert plain.passes == bare.passes == () and plain.check is None is bare.check


@dataclass(frozen=True)
class NoOpReport:
    seen: int  # tensors in the statistics it was handed
    label: str = "did nothing"

    def summary(self) -> str:
        return f"looked at {self.seen} measured tensors"

    def to_dict(self) -> dict[str, Any]:
        return {"seen": self.seen}


@dataclass(frozen=True)
class NoOp:
    """A new pass as a user would write one: a name, a request, an apply."""

    wants: tuple[str, ...] = ()
    carries: bool = True  # whether it can say how it changed the statistics (here: it did not)
    carries_distributions: bool = True  # ...histograms included
    name: str = "noop"

    def request(self, model: onnx.ModelProto) -> StatsRequest:
        return StatsRequest.of(self.wants, Level.CHANNEL)

    def apply(self, model: onnx.ModelProto, stats: ActivationStats) -> Rewritten:
        assert all(name in stats for name in self.wants)
        return Rewritten(model, NoOpReport(len(stats.tensors)), stats if self.carries else None)


@pytest.fixture(scope="module")
def default_passes(
    tiny_model_path: Path, session_photos: Path, tmp_path_factory: pytest.TempPathFactory
) -> int:
    """How many passes over the photos the default recipe makes, uncached (the baseline below)."""
    out = tmp_path_factory.mktemp("default") / "default.onnx"
    report = quantize_tiny(tiny_model_path, session_photos, out, use_cache=False)
    assert report.calibration.passes >= 1  # the rewrites need statistics
    return report.calibration.passes


def test_a_new_pass_is_one_class_and_one_list_entry(
    tiny_model_path: Path, session_photos: Path, tmp_path: Path, default_passes: int
) -> None:
    recipe = Recipe(
        "default+noop",
        "test",
        rewrites=(*DEFAULT.rewrites, NoOp()),
        post=DEFAULT.post,
        check=True,
        ranges=DEFAULT.ranges,
    )
    report = quantize_tiny(tiny_model_path, session_photos, tmp_path / "noop.onnx", recipe, use_cache=False)
    names = [name for name, _ in report.passes]
    assert names[: len(DEFAULT.rewrites) + 1] == [*(r.name for r in DEFAULT.rewrites), "noop"]
    noop = dict(report.passes)["noop"]
    assert isinstance(noop, NoOpReport) and noop.seen > 0  # it was handed the statistics before it
    assert report.to_dict()["passes"]["noop"] == {"seen": noop.seen}
    assert report.calibration.passes == default_passes  # it asked for nothing: no extra pass over the photos


def test_statistics_are_measured_up_front_for_every_later_pass(
    tiny_model_path: Path, session_photos: Path, tmp_path: Path, default_passes: int
) -> None:
    def passes(*rewrites: Any) -> int:
        recipe = Recipe("test", "test", rewrites=rewrites, ranges=DEFAULT.ranges)
        report = quantize_tiny(tiny_model_path, session_photos, tmp_path / "m.onnx", recipe, use_cache=False)
        (tmp_path / "m.onnx").unlink()
        return report.calibration.passes

    # "mask" is measured with the first rewrite's tensors, and survives to the last one.
    assert passes(*DEFAULT.rewrites, NoOp(wants=("mask",))) == default_passes
    assert passes(NoOp(wants=("c1",)), *DEFAULT.rewrites) == default_passes  # measured with absorb's
    # A pass that cannot say how it changed the statistics makes the next request a new pass.
    assert passes(NoOp(wants=("c1",), carries=False), *DEFAULT.rewrites) == default_passes + 1


def test_a_new_pass_shows_in_the_table_and_the_json(
    tiny_model_path: Path,
    photos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recipe = Recipe("noop", "test", rewrites=(*DEFAULT.rewrites, NoOp()), post=DEFAULT.post, check=True)
    monkeypatch.setitem(RECIPES, "noop", recipe)
    argv = ["quantize", str(tiny_model_path), "--calib", str(photos), "--recipe", "noop"]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "-o", str(tmp_path / "table.onnx")])
    assert exit_.value.code == 0
    table = capsys.readouterr().out
    assert "did nothing" in table and "looked at" in table
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "-o", str(tmp_path / "json.onnx"), "--json", "-"])
    assert exit_.value.code == 0
    data = signed_json(capsys.readouterr().out, "quantize")
    assert data["recipe"] == "noop" and data["passes"]["noop"]["seen"] > 0
    assert list(data["passes"])[: len(DEFAULT.rewrites) + 1] == [*(r.name for r in DEFAULT.rewrites), "noop"]
    assert json.loads(json.dumps(data)) == data
