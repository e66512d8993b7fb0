"""compare, the gate and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quantkit.compare import compare_models
from quantkit.errors import QuantkitError
from quantkit.gate import Thresholds, failures, from_pyproject
from quantkit.quantize import QuantizeOptions, Recipe, quantize

from .cli_helpers import assert_one_line_error, quantkit
from .conftest import CALIB, ROOT, U2NETP


@pytest.fixture(scope="module")
def tiny_pair(
    tiny_model_path: Path, session_photos: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("pair") / "tiny.naive.onnx"
    quantize(
        QuantizeOptions(model=tiny_model_path, output=out, calib_dir=session_photos, recipe=Recipe.NAIVE)
    )
    return tiny_model_path, out


def write_truth(folder: Path, photos: Path) -> Path:
    """Ground truth = the bright blob of each synthetic photo."""
    folder.mkdir()
    for path in sorted(photos.iterdir()):
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"), dtype=np.float32)
        Image.fromarray(((grey > 150) * 255).astype(np.uint8)).save(folder / f"{path.stem}.png")
    return folder


def test_model_against_itself_agrees_perfectly(
    tiny_model_path: Path, session_photos: Path, tmp_path: Path
) -> None:
    truth = write_truth(tmp_path / "masks", session_photos)
    report = compare_models([tiny_model_path, tiny_model_path], session_photos, masks_dir=truth)
    log = report.candidates[0].agreement
    assert report.images == 8 and len(log) == 8
    assert log.iou.mean == 1.0 and log.mae == 0.0 and log.max_abs == 0.0
    assert report.reference.truth is not None and report.candidates[0].truth is not None
    assert report.candidates[0].truth.max_f == report.reference.truth.max_f
    assert failures(report, Thresholds(min_iou=0.999, max_mae=0.0, max_maxf_drop=0.0)) == []


def test_gate_names_each_missed_threshold(
    tiny_pair: tuple[Path, Path], session_photos: Path, tmp_path: Path
) -> None:
    truth = write_truth(tmp_path / "masks", session_photos)
    report = compare_models(list(tiny_pair), session_photos, masks_dir=truth)
    measured = report.candidates[0].agreement
    lines = failures(report, Thresholds(min_iou=1.01, min_iou_p05=1.01, max_mae=-1.0, max_maxf_drop=-1.0))
    assert len(lines) == 4
    assert f"{measured.iou.mean:.4f}" in lines[0] and "min-iou" in lines[0]
    assert "max-F drop" in lines[3]
    assert failures(report, Thresholds()) == []


def test_maxf_threshold_without_masks_is_bad_input(
    tiny_pair: tuple[Path, Path], session_photos: Path
) -> None:
    report = compare_models(list(tiny_pair), session_photos)
    with pytest.raises(QuantkitError, match="needs ground-truth masks"):
        failures(report, Thresholds(max_maxf_drop=0.01))


def test_thresholds_from_pyproject(tmp_path: Path) -> None:
    config = tmp_path / "pyproject.toml"
    config.write_text("[tool.quantkit.gate]\nmin-iou = 0.97\nmax-mae = 0.02\n")
    assert from_pyproject(config) == Thresholds(min_iou=0.97, max_mae=0.02)
    assert Thresholds(min_iou=0.5).merged_over(from_pyproject(config)) == Thresholds(
        min_iou=0.5, max_mae=0.02
    )
    config.write_text("[tool.quantkit.gate]\nmin-iuo = 0.97\n")
    with pytest.raises(QuantkitError, match="unknown"):
        from_pyproject(config)
    assert from_pyproject(ROOT / "pyproject.toml").min_iou == 0.98


def test_cli_exit_codes(tiny_pair: tuple[Path, Path], session_photos: Path, tmp_path: Path) -> None:
    ref, naive = tiny_pair
    passing = quantkit("compare", ref, ref, "--images", session_photos, "--min-iou", "0.99", "--no-config")
    assert passing.code == 0, passing.err
    assert "gate passed" in passing.out
    failing = quantkit("compare", ref, naive, "--images", session_photos, "--min-iou", "1.01", "--no-config")
    assert failing.code == 1
    assert "mean IoU" in failing.err and "< min-iou 1.01" in failing.err
    no_gate = quantkit("compare", ref, naive, "--images", session_photos, "--no-config")
    assert no_gate.code == 0


def test_cli_thresholds_from_config(
    tiny_pair: tuple[Path, Path], session_photos: Path, tmp_path: Path
) -> None:
    config = tmp_path / "pyproject.toml"
    config.write_text("[tool.quantkit.gate]\nmin-iou = 1.5\n")
    result = quantkit("compare", *tiny_pair, "--images", session_photos, cwd=tmp_path)
    assert result.code == 1 and "min-iou 1.5" in result.err
    overridden = quantkit("compare", *tiny_pair, "--images", session_photos, "--min-iou", "0", cwd=tmp_path)
    assert overridden.code == 0


def test_json_and_html_report(tiny_pair: tuple[Path, Path], session_photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    report_dir = tmp_path / "report"
    result = quantkit(
        "compare",
        *tiny_pair,
        "--images",
        session_photos,
        "--json",
        out,
        "--report",
        report_dir,
        "--worst",
        "3",
        "--no-config",
    )
    assert result.code == 0, result.err
    data = json.loads(out.read_text())
    model = data["models"][0]
    assert len(model["agreement"]["per_image"]) == 8
    assert len(model["agreement"]["worst"]) == 3
    assert set(model["agreement"]["iou"]) == {"mean", "p05", "min"}
    page = (report_dir / "index.html").read_text()
    images = sorted(p.name for p in report_dir.glob("*.png")) + sorted(
        p.name for p in report_dir.glob("*.jpg")
    )
    assert len(images) == 3 * 4
    for name in images:
        assert name in page
    again = quantkit("compare", *tiny_pair, "--images", session_photos, "--report", report_dir, "--no-config")
    assert_one_line_error(again, 2, "not empty")


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
    naive = quantkit("compare", U2NETP, u2netp_naive, "--images", photos, "--min-iou", "0.9", "--no-config")
    assert naive.code == 1, naive.out + naive.err
    assert "min-iou 0.9" in naive.err
    good = quantkit("compare", U2NETP, u2netp_int8, "--images", photos, "--min-iou", "0.9", "--no-config")
    assert good.code == 0, good.out + good.err


@pytest.mark.slow
@pytest.mark.ecssd
def test_ground_truth_scores_on_ecssd(ecssd: Path, u2netp_int8: Path, tmp_path: Path) -> None:
    report = compare_models([U2NETP, u2netp_int8], ecssd / "images", masks_dir=ecssd / "masks", limit=40)
    ref = report.reference.truth
    q = report.candidates[0].truth
    assert ref is not None and q is not None and ref.images == 40
    assert 0.85 < ref.max_f < 1.0 and 0.0 < ref.mae < 0.1  # u2netp is a good saliency model
    assert abs(q.max_f - ref.max_f) < 0.02
    assert report.candidates[0].agreement.iou.mean > 0.95


def test_report_renders_in_headless_chromium(
    tiny_pair: tuple[Path, Path], session_photos: Path, tmp_path: Path
) -> None:
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed")
    report_dir = tmp_path / "report"
    assert (
        quantkit(
            "compare", *tiny_pair, "--images", session_photos, "--report", report_dir, "--no-config"
        ).code
        == 0
    )
    shot = tmp_path / "shot.png"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
    ]
    subprocess.run(
        [
            browser,
            *flags,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,900",
            f"--screenshot={shot}",
            (report_dir / "index.html").as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L"))
    assert image.size == (1200, 900)
    assert pixels.std() > 20  # a real page with photos and masks, not a blank window
