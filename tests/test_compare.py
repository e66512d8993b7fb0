"""compare, the noise floor beside it, the gate and where its thresholds come from.

The HTML page itself is checked in a real browser by test_html_report.py; here, that
``--report`` writes it and that the output guard treats its folder like any output.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from PIL import Image

import quantkit
from quantkit import QuantkitError, Thresholds
from quantkit.accuracy.gate import failures, from_pyproject
from quantkit.cli.compare_config import thresholds_from
from quantkit.files.ownership import REPORT_MARKER

from .cli_helpers import assert_one_line_error, signed_json
from .cli_helpers import quantkit as run_cli
from .conftest import CALIB, ROOT, U2NETP, build_tiny_model
from .rembg_harness import install_model, offline_rembg_home


@pytest.fixture(scope="module")
def inverted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its mask turned inside out: a candidate that misses every threshold."""
    model = build_tiny_model()
    sigmoid = next(n for n in model.graph.node if n.op_type == "Sigmoid")
    sigmoid.input[0] = "negated"
    model.graph.node.insert(len(model.graph.node) - 1, helper.make_node("Neg", ["logit"], ["negated"]))
    path = tmp_path_factory.mktemp("inverted") / "tiny.inverted.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def truth(tiny_model_path: Path, session_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ground truth = the reference model's own masks at 0.5, so the reference scores max-F ~1."""
    folder = tmp_path_factory.mktemp("masks")
    session = quantkit.new_session(tiny_model_path)
    for path in sorted(session_photos.iterdir()):
        with Image.open(path) as image:
            mask = np.asarray(quantkit.cutout(image, session=session, mask_only=True))
        Image.fromarray(((mask > 127) * 255).astype(np.uint8)).save(folder / f"{path.stem}.png")
    return folder


def test_model_against_itself_agrees_perfectly(
    tiny_model_path: Path, session_photos: Path, truth: Path
) -> None:
    report = quantkit.compare(tiny_model_path, tiny_model_path, images=session_photos, masks=truth)
    log = report.candidates[0].agreement
    assert report.images == 8 and len(log) == 8 and report.skipped == [] and report.missing_masks == []
    assert log.iou.mean == 1.0 and log.mae == 0.0 and log.max_abs == 0.0
    ref, same = report.reference.truth, report.candidates[0].truth
    assert ref is not None and same is not None and ref.images == 8
    assert same.max_f == ref.max_f > 0.95  # the truth is the reference's own masks
    assert report.floor is not None and len(report.floor) == 8  # the JPEG-95 noise floor, per photo
    within = report.within(report.candidates[0])
    assert within is not None and within.beyond_floor == 0.0
    every = Thresholds(min_iou=1.0, min_iou_p05=1.0, max_mae=0.0, max_maxf_drop=0.0, within_noise=0.0)
    assert failures(report, every) == []


def test_gate_names_each_missed_threshold_with_the_value_measured(
    tiny_model_path: Path, inverted: Path, tiny_naive: Path, session_photos: Path, truth: Path
) -> None:
    report = quantkit.compare(tiny_model_path, tiny_naive, inverted, images=session_photos, masks=truth)
    naive, flipped = report.candidates
    every = Thresholds(min_iou=0.5, min_iou_p05=0.5, max_mae=0.3, max_maxf_drop=0.2, within_noise=0.0)
    lines = failures(report, every)
    assert all(line.startswith("tiny.inverted.onnx: ") for line in lines)  # naive is within all of them
    assert len(lines) == 6
    assert f"mean IoU {flipped.agreement.iou.mean:.4f} < min-iou 0.5" in lines[0]
    assert "5th-percentile IoU" in lines[1] and "< min-iou-p05 0.5" in lines[1]
    assert f"MAE {flipped.agreement.mae:.5f} > max-mae 0.3" in lines[2]
    assert lines[3].endswith("(within-noise)") and "< noise floor" in lines[3]
    assert lines[4].endswith("(within-noise)") and "5th-percentile" in lines[4]
    assert "max-F drop" in lines[5] and "> max-maxf-drop 0.2" in lines[5]
    assert naive.agreement.iou.mean > 0.8 and failures(report, Thresholds()) == []


def test_checks_that_need_what_was_not_measured_are_bad_input(
    tiny_model_path: Path, tiny_naive: Path, session_photos: Path
) -> None:
    report = quantkit.compare(tiny_model_path, tiny_naive, images=session_photos, noise_floor=False, limit=2)
    assert report.images == 2 and report.floor is None and report.within(report.candidates[0]) is None
    with pytest.raises(QuantkitError, match="needs ground-truth masks"):
        failures(report, Thresholds(max_maxf_drop=0.01))
    with pytest.raises(QuantkitError, match="--within-noise needs the noise floor"):
        failures(report, Thresholds(within_noise=0.01))
    with pytest.raises(QuantkitError, match="compare needs at least two models"):
        quantkit.compare(tiny_model_path, images=session_photos)


@pytest.mark.parametrize("value", [1.01, -0.5, float("nan")])
def test_thresholds_are_numbers_in_the_unit_interval(value: float) -> None:
    with pytest.raises(QuantkitError, match="must be a number in"):
        Thresholds(min_iou=value)


def test_thresholds_from_pyproject(tmp_path: Path) -> None:
    config = tmp_path / "pyproject.toml"
    config.write_text("[tool.quantkit.gate]\nmin-iou = 0.97\nmax-mae = 0.02\nwithin-noise = 0.005\n")
    assert from_pyproject(config) == Thresholds(min_iou=0.97, max_mae=0.02, within_noise=0.005)
    assert Thresholds(min_iou=0.5).merged_over(from_pyproject(config)) == Thresholds(
        min_iou=0.5, max_mae=0.02, within_noise=0.005
    )
    for text, message in (
        ("[tool.quantkit.gate]\nmin-iuo = 0.97\n", "unknown"),
        ("[tool.quantkit.gate]\nmin-iou = '0.97'\n", "must be a number"),
        ("[tool.quantkit.gate]\nmin-iou = 2\n", r"must be a number in \[0, 1\]"),
        ("[tool.quantkit]\ngate = 1\n", "must be a table"),
        ("[tool.quantkit.gate\n", "not valid TOML"),
    ):
        config.write_text(text)
        with pytest.raises(QuantkitError, match=message):
            from_pyproject(config)
    config.write_text("[project]\nname = 'x'\n")
    assert from_pyproject(config) == Thresholds() and not Thresholds().any
    project = from_pyproject(ROOT / "pyproject.toml")
    assert project.min_iou == 0.975 and project.within_noise == 0.02


def test_cli_exit_codes(
    tiny_model_path: Path, tiny_naive: Path, inverted: Path, session_photos: Path
) -> None:
    args = ["--images", session_photos, "--no-config"]
    passing = run_cli(
        "compare", tiny_model_path, tiny_naive, *args, "--min-iou", "0.5", "--within-noise", "0"
    )
    assert passing.code == 0, passing.err
    assert "gate passed (min-iou=0.5, within-noise=0.0)" in passing.out
    assert "noise floor (JPEG-95)" in passing.out and "tiny.naive.onnx" in passing.out
    assert not set("┃━│─┏┗") & set(passing.out)  # a plain-text table
    failing = run_cli("compare", tiny_model_path, inverted, *args, "--min-iou", "0.5")
    assert failing.code == 1
    assert "accuracy gate failed" in failing.err and "< min-iou 0.5" in failing.err
    assert "Traceback" not in failing.err
    no_gate = run_cli("compare", tiny_model_path, inverted, *args)
    assert no_gate.code == 0 and "gate" not in no_gate.out


def test_cli_thresholds_from_config(
    tiny_model_path: Path, inverted: Path, session_photos: Path, tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text("[tool.quantkit.gate]\nmin-iou = 0.9\nmax-maxf-drop = 0.001\n")
    pair = [tiny_model_path, inverted, "--images", session_photos]
    result = run_cli("compare", *pair, cwd=tmp_path)
    # min-iou from ./pyproject.toml; its max-maxf-drop waits for --masks instead of failing the run.
    assert result.code == 1 and "min-iou 0.9" in result.err and "max-F" not in result.err
    assert run_cli("compare", *pair, "--min-iou", "0", cwd=tmp_path).code == 0  # the command line wins


def test_where_thresholds_come_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli = Thresholds(min_iou=0.5)
    assert thresholds_from(cli, None, False, has_masks=False) == cli  # no ./pyproject.toml: the flags
    Path("pyproject.toml").write_text(
        "[tool.quantkit.gate]\nmin-iou = 0.9\nmax-mae = 0.1\nmax-maxf-drop = 0.01\n"
    )
    assert thresholds_from(cli, None, False, has_masks=True) == Thresholds(0.5, None, 0.1, 0.01)
    assert thresholds_from(cli, None, False, has_masks=False) == Thresholds(min_iou=0.5, max_mae=0.1)
    assert thresholds_from(cli, None, True, has_masks=True) == cli  # --no-config
    other = tmp_path / "gate.toml"
    other.write_text("[tool.quantkit.gate]\nwithin-noise = 0.01\n")
    assert thresholds_from(Thresholds(), other, False, has_masks=False) == Thresholds(within_noise=0.01)
    with pytest.raises(QuantkitError, match=r"--config .*none\.toml is not a file"):
        thresholds_from(cli, tmp_path / "none.toml", False, has_masks=False)
    with pytest.raises(QuantkitError, match=r"--max-maxf-drop needs ground-truth masks \(--masks DIR\)"):
        thresholds_from(Thresholds(max_maxf_drop=0.01), None, True, has_masks=False)


def test_json_and_html_report(
    tiny_model_path: Path, tiny_naive: Path, session_photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "c.json"
    report_dir = tmp_path / "report"
    args = ["compare", tiny_model_path, tiny_naive, "--images", session_photos, "--no-config"]
    result = run_cli(*args, "--json", out, "--report", report_dir, "--worst", "3", "--min-iou", "0.5")
    assert result.code == 0, result.err
    data = signed_json(out.read_text(), "compare")
    assert data["images"] == 8 and data["reference"]["model"] == str(tiny_model_path)
    assert data["jpeg95"]["iou_mean"] > 0 and data["runtime"]["runtime"] == "ort"
    model = data["models"][0]
    assert len(model["agreement"]["per_image"]) == 8 and len(model["agreement"]["worst"]) == 3
    assert set(model["agreement"]["iou"]) == {"mean", "p05", "min"}
    assert all("jpeg95_iou" in photo for photo in model["agreement"]["per_image"])
    assert data["gate"]["passed"] is True and data["gate"]["thresholds"]["min_iou"] == 0.5
    page = (report_dir / "index.html").read_text()
    assert (report_dir / REPORT_MARKER).is_file()
    images = sorted(p.name for p in report_dir.iterdir() if p.suffix in (".png", ".jpg"))
    assert len(images) == 3 * 5  # photo, reference, model, difference and noise-floor difference
    assert all(name in page for name in images) and "Gate passed" in page
    again = run_cli(*args, "--report", report_dir)
    assert_one_line_error(again, 2, "already exists (use --force")
    replaced = run_cli(*args, "--report", report_dir, "--worst", "1", "--force")  # our own folder
    assert replaced.code == 0, replaced.err
    assert len([p for p in report_dir.iterdir() if p.suffix in (".png", ".jpg")]) == 5
    mine = tmp_path / "holiday"
    mine.mkdir()
    (mine / "beach.jpg").write_bytes(b"a photo")
    refused = run_cli(*args, "--report", mine, "--force")
    assert_one_line_error(refused, 2, "was not written by quantkit")
    assert [p.name for p in mine.iterdir()] == ["beach.jpg"]


@pytest.mark.slow
def test_gate_rejects_plain_quantize_static_and_passes_the_default_recipe(
    u2netp_naive: Path, u2netp_int8: Path, tmp_path: Path
) -> None:
    """The reason the gate exists: onnxruntime's defaults destroy u2netp's masks."""
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in (
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
        "rocket.jpg",
        "grace_hopper.jpg",
        "raccoon.jpg",
    ):
        (photos / name).write_bytes((CALIB / name).read_bytes())
    args = ["--images", photos, "--min-iou", "0.9", "--no-config"]
    naive = run_cli("compare", U2NETP, u2netp_naive, *args, "--within-noise", "0.02")
    assert naive.code == 1, naive.out + naive.err
    assert "min-iou 0.9" in naive.err and "(within-noise)" in naive.err
    good = run_cli("compare", U2NETP, u2netp_int8, *args)
    assert good.code == 0, good.out + good.err


@pytest.mark.slow
@pytest.mark.ecssd
def test_ground_truth_scores_on_ecssd(ecssd: Path, u2netp_int8: Path) -> None:
    report = quantkit.compare(U2NETP, u2netp_int8, images=ecssd / "images", masks=ecssd / "masks", limit=40)
    ref = report.reference.truth
    q = report.candidates[0].truth
    assert ref is not None and q is not None and ref.images == 40
    assert 0.85 < ref.max_f < 1.0 and 0.0 < ref.mae < 0.1  # u2netp is a good saliency model
    assert abs(q.max_f - ref.max_f) < 0.02
    assert report.candidates[0].agreement.iou.mean > 0.95
    assert report.floor is not None  # about as far from FP32 as a JPEG-95 re-save is:
    assert report.candidates[0].agreement.iou.mean >= report.floor.iou.mean - 0.02


@pytest.mark.slow
@pytest.mark.ecssd
def test_noise_floor_agrees_with_an_independent_computation_through_rembg(
    ecssd: Path, tmp_path: Path
) -> None:
    """The floor compare reports, recomputed with rembg's own ``remove`` and a JPEG-95 re-save done here."""
    rembg = pytest.importorskip("rembg")
    count = 40
    report = quantkit.compare(U2NETP, U2NETP, images=ecssd / "images", limit=count)
    assert report.floor is not None and len(report.floor) == count
    ious = []
    with offline_rembg_home(tmp_path) as home:
        install_model("u2netp", onnx.load(str(U2NETP)), home)
        session = rembg.new_session("u2netp")
        for path in sorted((ecssd / "images").glob("*.jpg"))[:count]:
            with Image.open(path) as image:
                original = image.convert("RGB")
            buffer = io.BytesIO()
            original.save(buffer, format="JPEG", quality=95)
            resaved = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
            a, b = (
                np.asarray(rembg.remove(im, session=session, only_mask=True)) >= 128
                for im in (original, resaved)
            )
            union = np.count_nonzero(a | b)
            ious.append(np.count_nonzero(a & b) / union if union else 1.0)
    assert abs(report.floor.iou.mean - float(np.mean(ious))) <= 0.01
    assert abs(report.floor.iou.p05 - float(np.percentile(ious, 5))) <= 0.01
    assert float(np.mean(ious)) < 0.999  # the re-save does move masks: the yardstick is not trivially 1


def _filter_model(kernel: np.ndarray, pool: int = 0) -> onnx.ModelProto:
    """320-px model: optional box blur of ``pool`` pixels, then ``kernel`` on every channel, summed."""
    size, k = 320, kernel.shape[0]
    weight = np.repeat(kernel[None, None] / 3, 3, axis=1).astype(np.float32)
    nodes, source = [], "x"
    if pool:
        nodes.append(
            helper.make_node(
                "AveragePool",
                ["x"],
                ["blur"],
                kernel_shape=[pool, pool],
                pads=[pool // 2] * 4,
                count_include_pad=0,
            )
        )
        source = "blur"
    nodes.append(helper.make_node("Conv", [source, "w"], ["mask"], pads=[k // 2] * 4))
    graph = helper.make_graph(
        nodes,
        "filter",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("mask", onnx.TensorProto.FLOAT, [1, 1, size, size])],
        [onnx.numpy_helper.from_array(weight, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_noise_floor_of_a_stable_and_of_an_unstable_model(tmp_path: Path) -> None:
    """A blurred brightness map barely moves under a JPEG-95 re-save; a high-pass filter's mask does."""
    stable = tmp_path / "stable.onnx"
    onnx.save(_filter_model(np.ones((1, 1), np.float32), pool=15), stable)
    unstable = tmp_path / "unstable.onnx"
    onnx.save(_filter_model(np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32)), unstable)
    floors = {}
    for path in (stable, unstable):
        report = quantkit.compare(path, path, images=CALIB, limit=6, family="u2netp")
        assert report.floor is not None and len(report.floor) == 6
        assert report.candidates[0].agreement.iou.mean == 1.0  # a model agrees with itself
        floors[path.stem] = report.floor.iou
    assert floors["stable"].mean > 0.99 and floors["stable"].p05 > 0.97
    assert floors["unstable"].mean < 0.9
