"""The quantize pipeline on the tiny model, end to end through ``quantkit.quantize``, real onnxruntime."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnxruntime.quantization import QuantFormat as OrtFormat
from onnxruntime.quantization import QuantType, quantize_static
from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData
from PIL import Image

import quantkit
import quantkit.ptq.memory
import quantkit.ptq.pipeline
from quantkit import QuantizeOptions, QuantkitError
from quantkit.graph.prepare import prepare
from quantkit.model.family import DetectedBy
from quantkit.model.spec import read_spec
from quantkit.passes.recipes import NAIVE, get_recipe
from quantkit.progress import NullProgress
from quantkit.ptq.options import CalibMethod, QuantFormat
from quantkit.ptq.pipeline import bundled_photos, default_output, split_held_out
from quantkit.ptq.ranges import CalibratedRanges
from quantkit.ptq.samples import PhotoFeeds
from quantkit.statistics.types import ActivationStats, ChannelStats, Level, encode_stats

from .conftest import CALIB, build_tiny_model, quantize_tiny, write_photos


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run(path: Path, size: tuple[int, int] = (32, 32)) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, *size)).astype(np.float32)
    return np.asarray(session.run(None, {"input.1": x})[0])


def metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_naive_recipe_writes_a_loadable_signed_int8_model(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "anything.onnx"
    out.parent.mkdir()
    report = quantize_tiny(tiny_model_path, photos, out, NAIVE, use_cache=False)
    model = onnx.load(str(out))
    assert report.output == out and report.output_bytes == out.stat().st_size
    assert report.opset_in == 11 and report.opset_out >= 13
    assert report.census.int8_weights == 4  # every Conv weight
    assert len(report.census.quantized) > 0 and report.census.float_nodes == ()
    assert report.calibration.used == tuple(sorted(p.name for p in photos.iterdir()))  # no held-out set
    assert report.calibration.passes == 1 and report.passes == () and report.check is None
    assert any(i.data_type == onnx.TensorProto.INT8 for i in model.graph.initializer)
    assert run(out).shape == (1, 1, 32, 32)
    assert [p.name for p in out.parent.iterdir()] == ["anything.onnx"]  # no temporary files left
    # Signed: what made it, how and from what; the family is read back from it.
    meta = metadata(out)
    assert meta["quantkit.version"] == quantkit.__version__ and model.producer_name == "quantkit"
    assert meta["quantkit.recipe"] == "naive" and meta["quantkit.family"] == "u2net"
    assert meta["quantkit.calibration"].startswith("8 photos, sha256 ")
    spec = read_spec(out)
    assert spec.quantized and (spec.family.name, spec.detection.by) == ("u2net", DetectedBy.METADATA)


def test_naive_is_onnxruntimes_own_quantize_static(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    """Ranges measured in the graph and handed over as a calibration cache: the very model
    onnxruntime makes when it calibrates itself on the same photos."""
    ours = quantize_tiny(tiny_model_path, photos, tmp_path / "ours.onnx", NAIVE, use_cache=False)
    work = tmp_path / "work"
    work.mkdir()
    prepared = prepare(onnx.load(str(tiny_model_path)), work)
    feeds = iter(PhotoFeeds(sorted(photos.iterdir()), read_spec(tiny_model_path)))

    class Reader:
        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(feeds, None)

    quantize_static(
        str(prepared),
        str(tmp_path / "theirs.onnx"),
        Reader(),
        quant_format=OrtFormat.QDQ,
        per_channel=True,
        reduce_range=ours.options.target_cpu.reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    assert onnx.load(str(tmp_path / "ours.onnx")).graph == onnx.load(str(tmp_path / "theirs.onnx")).graph


def test_default_recipe_fixes_the_offset_channel_checked_on_held_out_photos(
    tiny_model_path: Path, photos: Path, tmp_path: Path, tiny_naive: Path
) -> None:
    good = tmp_path / "good.onnx"
    report = quantize_tiny(tiny_model_path, photos, good)
    passes = {name: r.to_dict() for name, r in report.passes}
    assert {"absorb", "equalize", "widen", "compact"} <= set(passes)
    assert [(o["producer"], o["channel"]) for o in passes["absorb"]["offsets"]] == [("Conv_1", 3)]
    assert passes["equalize"]["groups"] > 0 and passes["widen"]["inputs"] == ["Conv_0"]
    # Every 4th photo is held out for the check, and not calibrated on (there is no refit).
    check = report.check
    assert check is not None and check.photos == ("photo_03.jpg", "photo_07.jpg")
    calibrated = ("photo_00.png", "photo_01.jpg", "photo_02.png", "photo_04.png", "photo_05.jpg")
    assert report.calibration.used == (*calibrated, "photo_06.png")
    # The target is the FP32 model's own JPEG-95 stability on those photos, less a tolerance of at
    # least --noise-margin.
    assert check.target_is_floor and check.target == pytest.approx(check.floor.mean - check.tolerance)
    assert check.tolerance >= 0.005
    assert check.final.mean >= check.target and check.search is None
    assert (
        metadata(good)["quantkit.held_out_iou"]
        == f"{check.final.mean:.4f} (noise floor {check.floor.mean:.4f})"
    )
    held = tmp_path / "held"
    held.mkdir()
    for name in check.photos:
        shutil.copy(photos / name, held / name)
    result = quantkit.compare(tiny_model_path, tiny_naive, good, images=held)
    naive_iou, good_iou = (m.agreement.iou.mean for m in result.candidates)
    assert good_iou == pytest.approx(check.final.mean)  # the check scores the model that ships
    assert good_iou > naive_iou and good_iou > 0.9


def test_target_iou_and_eval_folder_override_the_defaults(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    evaluation = tmp_path / "eval"
    write_photos(evaluation, 3, seed=7)
    report = quantize_tiny(
        tiny_model_path, photos, tmp_path / "m.onnx", eval_dir=evaluation, target_iou=0.5, eval_limit=2
    )
    check = report.check
    assert check is not None and check.target == 0.5 and not check.target_is_floor
    wide = quantize_tiny(tiny_model_path, photos, tmp_path / "w.onnx", noise_margin=0.015).check
    assert wide is not None and wide.target_is_floor
    assert wide.tolerance >= 0.015 and wide.target == pytest.approx(wide.floor.mean - wide.tolerance)
    assert check.photos == ("photo_00.png", "photo_01.jpg")  # --eval-limit of the eval folder
    assert len(report.calibration.used) == 8  # every calibration photo calibrates
    data = report.to_dict()["held_out"]
    assert data["target"] == "--target-iou" and data["noise_floor"]["perturbation"] == "jpeg95"


def test_default_calibration_photos_are_the_bundled_ones(tiny_model_path: Path, tmp_path: Path) -> None:
    bundled = bundled_photos()
    assert sorted(p.name for p in bundled.iterdir() if p.suffix in (".jpg", ".png")) == sorted(
        p.name for p in CALIB.iterdir() if p.suffix in (".jpg", ".png")
    )
    model = Path(shutil.copy(tiny_model_path, tmp_path / "tiny.onnx"))
    progress = NullProgress()
    # A random 32-pixel model's masks of real photos say nothing; only the photos are under test here.
    report = quantkit.quantize(model, options=quantkit.QuantizeOptions(target_iou=0.0), progress=progress)
    assert report.output == tmp_path / "tiny.int8.onnx" and report.output.is_file()
    assert report.check is not None
    assert (len(report.calibration.used), len(report.check.photos)) == (17, 5)  # of 22
    assert not set(report.calibration.used) & set(report.check.photos)
    assert any("assumed family u2net" in w for w in progress.warnings)  # tiny.onnx is not a rembg name


def test_same_inputs_give_the_same_bytes_and_the_cache_skips_the_photos(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    first = quantize_tiny(tiny_model_path, photos, tmp_path / "a.onnx", use_cache=False)
    second = quantize_tiny(tiny_model_path, photos, tmp_path / "b.onnx", cache_dir=cache)
    third = quantize_tiny(tiny_model_path, photos, tmp_path / "c.onnx", cache_dir=cache)
    assert sha(tmp_path / "a.onnx") == sha(tmp_path / "b.onnx") == sha(tmp_path / "c.onnx")
    passes = first.calibration.passes
    assert passes >= 1 and (second.calibration.passes, third.calibration.passes) == (passes, 0)
    assert len(list(cache.iterdir())) == passes + 1  # one entry per pass, and the photos the passes skipped


def test_a_damaged_foreign_or_wrong_shape_cache_entry_is_a_miss_and_is_replaced(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    baseline = quantize_tiny(tiny_model_path, photos, tmp_path / "a.onnx", cache_dir=cache).calibration.passes
    entries = sorted(cache.iterdir())
    assert len(entries) == baseline + 1 >= 3  # one per pass (two at least, to swap) and the skipped photos
    good = {p: p.read_bytes() for p in entries}
    # What a wrong-shape entry decodes to: statistics of two channels, ranges of no tensor.
    two_channels = ChannelStats(Level.MOMENTS, np.zeros(2), np.ones(2), np.zeros(2), np.ones(2), 1)
    small_stats = encode_stats(ActivationStats({"c1": two_channels}, images=1))
    no_ranges = CalibratedRanges.only(TensorsData(CalibrationMethod.MinMax, {})).encode()
    rotated = entries[1:] + entries[:1]
    for damage in (
        {p: good[p][: len(good[p]) // 2] for p in entries},  # cut short
        {p: good[q] for p, q in zip(entries, rotated, strict=True)},  # each stored under another's key
        dict.fromkeys(entries, small_stats),  # decodable, the wrong shape, not quantkit's entry
        dict.fromkeys(entries, no_ranges),
    ):
        for path, data in damage.items():
            path.write_bytes(data)
        out = tmp_path / "again.onnx"
        report = quantize_tiny(tiny_model_path, photos, out, cache_dir=cache)
        assert sha(out) == sha(tmp_path / "a.onnx")
        assert report.calibration.passes == baseline  # all misses: measured again...
        out.unlink()
        assert {p: p.read_bytes() for p in entries} == good  # ...and stored again
    for entry in entries:
        entry.unlink()
        os.mkfifo(entry)  # reading it would block forever
    report = quantize_tiny(tiny_model_path, photos, tmp_path / "fifo.onnx", cache_dir=cache)
    assert sha(tmp_path / "fifo.onnx") == sha(tmp_path / "a.onnx") and report.calibration.passes >= 1


@pytest.mark.parametrize("recipe", ["default", "naive"])
def test_a_broken_calibration_photo_is_skipped_and_said_once(
    tiny_model_path: Path, photos: Path, tmp_path: Path, recipe: str
) -> None:
    good = (photos / "photo_01.jpg").read_bytes()
    (photos / "photo_02.png").write_bytes(good[: len(good) // 3])
    progress = NullProgress()
    options = QuantizeOptions(calib_dir=photos, recipe=get_recipe(recipe), use_cache=False)
    report = quantkit.quantize(
        tiny_model_path, output=tmp_path / "m.onnx", options=options, progress=progress
    )
    assert [name for name, _ in report.calibration.skipped] == ["photo_02.png"]
    assert "photo_02.png" not in report.calibration.used
    skipped = [w for w in progress.warnings if w.startswith("skipped calibration image")]
    assert len(skipped) == 1 and "photo_02.png" in skipped[0]


def test_a_broken_calibration_photo_is_reported_on_a_cache_hit_too(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    good = (photos / "photo_01.jpg").read_bytes()
    (photos / "photo_02.png").write_bytes(good[: len(good) // 3])
    cache = tmp_path / "cache"
    quantize_tiny(tiny_model_path, photos, tmp_path / "a.onnx", cache_dir=cache)
    hit = quantize_tiny(tiny_model_path, photos, tmp_path / "b.onnx", cache_dir=cache)
    assert hit.calibration.passes == 0
    assert [name for name, _ in hit.calibration.skipped] == ["photo_02.png"]


def test_an_unusable_cache_folder_is_a_warning_not_a_failure(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache should be")
    progress = NullProgress()
    options = QuantizeOptions(calib_dir=photos, recipe=NAIVE, cache_dir=blocker / "cache")
    report = quantkit.quantize(
        tiny_model_path, output=tmp_path / "m.onnx", options=options, progress=progress
    )
    assert report.output.is_file() and report.calibration.passes == 1
    assert [w for w in progress.warnings if "is not usable" in w and "continuing without a cache" in w]


def test_force_replaces_only_what_quantkit_wrote(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.onnx"
    out.write_bytes(b"user data")
    with pytest.raises(QuantkitError, match=r"already exists \(use --force to replace it\)"):
        quantize_tiny(tiny_model_path, photos, out, NAIVE)
    options = QuantizeOptions(calib_dir=photos, recipe=NAIVE)
    with pytest.raises(QuantkitError, match="was not written by quantkit; refusing to replace it even with"):
        quantkit.quantize(tiny_model_path, output=out, options=options, force=True)
    assert out.read_bytes() == b"user data"
    onnx.save(build_tiny_model(), str(out))  # a real model, but not one quantkit signed
    with pytest.raises(QuantkitError, match="was not written by quantkit"):
        quantkit.quantize(tiny_model_path, output=out, options=options, force=True)
    out.unlink()
    quantkit.quantize(tiny_model_path, output=out, options=options)
    with pytest.raises(QuantkitError, match="already exists"):
        quantkit.quantize(tiny_model_path, output=out, options=options)
    report = quantkit.quantize(tiny_model_path, output=out, options=options, force=True)  # its own: replaced
    assert report.output_bytes == out.stat().st_size


def test_output_may_not_replace_an_input(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    signed = tmp_path / "signed.onnx"
    quantize_tiny(tiny_model_path, photos, signed, NAIVE)
    for target in (tiny_model_path, photos / "photo_00.png"):
        with pytest.raises(QuantkitError, match="is an input of this command"):
            quantkit.quantize(
                tiny_model_path, output=target, options=QuantizeOptions(calib_dir=photos), force=True
            )
    with pytest.raises(QuantkitError, match="already quantized"):
        quantkit.quantize(signed, output=tmp_path / "twice.onnx", options=QuantizeOptions(calib_dir=photos))
    assert not (tmp_path / "twice.onnx").exists()


def test_refusals_come_before_any_work(
    tiny_model_path: Path, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "x.onnx"
    with pytest.raises(QuantkitError, match=r"--exclude: no node named Conv_99 in the model \(Conv nodes"):
        quantize_tiny(tiny_model_path, photos, out, exclude=("Conv_99",))
    with pytest.raises(QuantkitError, match="birefnet-general is BiRefNet - compare, remove and bench"):
        quantize_tiny(tiny_model_path, photos, out, family="birefnet-general")
    monkeypatch.setattr(quantkit.ptq.memory, "available_memory_bytes", lambda: 100 * 2**20)
    monkeypatch.setattr(quantkit.ptq.memory, "peak_rss_bytes", lambda: 0)  # whatever earlier tests held
    with pytest.raises(QuantkitError, match=r"quantizing tiny.onnx at 32x32 needs about 0\.\d GiB"):
        quantize_tiny(tiny_model_path, photos, out)
    assert not out.exists()


def test_exclude_keeps_a_node_float(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    report = quantize_tiny(tiny_model_path, photos, tmp_path / "ex.onnx", NAIVE, exclude=("Conv_2",))
    assert ("Conv_2", "Conv") in report.census.float_nodes
    assert "Conv_2" not in [name for name, _ in report.census.quantized]
    assert report.census.int8_weights == 3


@pytest.mark.parametrize("method", [CalibMethod.PERCENTILE, CalibMethod.ENTROPY])
def test_histogram_methods_and_qoperator(
    tiny_model_path: Path, photos: Path, tmp_path: Path, method: CalibMethod
) -> None:
    out = tmp_path / f"{method.value}.onnx"
    report = quantize_tiny(tiny_model_path, photos, out, NAIVE, method=method, fmt=QuantFormat.QOPERATOR)
    types = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QLinearConv" in types and "QuantizeLinear" in types
    assert len(report.census.quantized) >= 4 and report.to_dict()["options"]["method"] == method.value
    assert run(out).shape == (1, 1, 32, 32)


def test_default_recipe_in_qoperator_format(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "qop.onnx"
    quantize_tiny(tiny_model_path, photos, out, fmt=QuantFormat.QOPERATOR)
    types = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QLinearConv" in types and "Pad" in types  # the widened first convolution
    assert run(out).shape == (1, 1, 32, 32)


def test_dynamic_size_model_keeps_its_dynamic_interface(
    photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = build_tiny_model()
    for value in (model.graph.input[0], model.graph.output[0]):
        for dim in (2, 3):
            value.type.tensor_type.shape.dim[dim].dim_param = "hw"
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, str(path))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    progress = NullProgress()
    options = QuantizeOptions(calib_dir=photos, recipe=NAIVE)
    report = quantkit.quantize(
        path, output=tmp_path / "dynamic.int8.onnx", options=options, progress=progress
    )
    assert list(cwd.iterdir()) == []  # onnxruntime's shape-inference dumps stay out of the user's folder
    assert any("dynamic or non-square input" in w for w in progress.warnings)  # what the family guess saw
    quantized = onnx.load(str(report.output))
    dims = [d.dim_param for d in quantized.graph.input[0].type.tensor_type.shape.dim[2:]]
    assert dims == ["hw", "hw"]
    assert run(report.output, (48, 40)).shape == (1, 1, 48, 40)  # any size, as the original
    with Image.open(photos / "photo_01.jpg") as photo:
        cut = quantkit.cutout(photo, session=quantkit.new_session(report.output))
    assert cut.size == (48, 40) and cut.mode == "RGBA"


def test_interrupt_leaves_nothing_behind(
    tiny_model_path: Path, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(quantkit.ptq.pipeline, "quantize_with_ranges", interrupted)
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        quantize_tiny(tiny_model_path, photos, out, use_cache=False)
    assert list(out.parent.iterdir()) == []
    assert list(scratch.iterdir()) == []  # the scratch folder went with it


def test_default_output_and_held_out_split() -> None:
    assert default_output(Path("models/u2netp.onnx")) == Path("models/u2netp.int8.onnx")
    assert default_output(Path("x/model.ONNX")) == Path("x/model.int8.onnx")
    assert default_output(Path("x/model")) == Path("x/model.int8.onnx")
    files = [Path(f"{k:02d}.jpg") for k in range(10)]
    calib, held = split_held_out(files, limit=64)
    assert [p.stem for p in held] == ["03", "07"] and len(calib) == 8 and not set(calib) & set(held)
    assert split_held_out(files, limit=1)[1] == [Path("03.jpg")]
    assert split_held_out(files[:3], limit=64) == (files[:3], files[:3])  # too few to hold any out
