"""The ``quantkit`` command as a user meets it: one check per user-visible behaviour.

Every bad input is one ``error:`` line and exit 2, nothing is left half-written or
clobbered, results are plain text or signed JSON. Which inputs are bad (unreadable
models, empty folders, unwritable paths, foreign files) is tested where it is decided:
test_spec, test_images, test_statistics, test_files and each command's own tests.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from PIL import Image

import quantkit

from .cli_helpers import assert_one_line_error, signed_json
from .cli_helpers import quantkit as run_cli
from .conftest import U2NETP, build_tiny_model

BOX_DRAWING = set("┃━│─┏┓┗┛╭╮╰╯")


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.onnx"
    onnx.save(build_tiny_model(), str(path))
    return path


def test_help_and_version() -> None:
    result = run_cli("--help")
    assert result.code == 0
    for word in ("quantize", "compare", "bench", "remove", "--version", "--quiet", "Exit codes"):
        assert word in result.out
    version = run_cli("--version")
    assert (version.code, version.out.strip()) == (0, f"quantkit {quantkit.__version__}")


def test_verbose_says_each_step_and_quiet_only_the_result(tiny: Path, photos: Path, tmp_path: Path) -> None:
    loud = run_cli("-v", "remove", tiny, photos, "-o", tmp_path / "loud")
    assert loud.code == 0 and "removing backgrounds" in loud.err
    assert "warning: tiny.onnx: assumed family u2net from the model's 32x32 input" in loud.err
    quiet = run_cli("-q", "remove", tiny, photos, "-o", tmp_path / "quiet")
    assert quiet.code == 0 and quiet.err == ""  # no warning, no progress...
    assert quiet.out.strip() == f"wrote 8 file(s) to {tmp_path / 'quiet'}"  # ...but the result


@pytest.mark.parametrize("command", ["quantize", "compare", "bench", "remove"])
def test_every_command_explains_a_bad_model_in_one_line(command: str, tmp_path: Path, photos: Path) -> None:
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(U2NETP.read_bytes()[:150_000])
    args: dict[str, list[object]] = {
        "quantize": ["quantize", cut, "--calib", photos],
        "compare": ["compare", cut, cut, "--images", photos, "--no-config"],
        "bench": ["bench", cut],
        "remove": ["remove", cut, photos, "-o", tmp_path / "out"],
    }
    assert_one_line_error(run_cli(*args[command]), 2, "not a readable ONNX file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.onnx", "photos"]


def test_usage_errors_are_one_line_too(tiny: Path) -> None:
    assert_one_line_error(run_cli("quantize", tiny, "--method", "magic"), 2, "'magic'")
    assert_one_line_error(run_cli("quantize", tiny, "--recipe", "magic"), 2, "unknown recipe 'magic'")
    assert_one_line_error(run_cli("remove", tiny, tiny, "-o", "x", "--bg-color", "purple"), 2, "--bg-color")


def test_quantize_refuses_to_replace_a_users_file_even_with_force(
    tiny: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tiny.int8.onnx"
    out.write_text("keep me")
    assert_one_line_error(run_cli("quantize", tiny, "--calib", photos), 2, "already exists (use --force")
    forced = run_cli("quantize", tiny, "--calib", photos, "--force")
    assert_one_line_error(forced, 2, "was not written by quantkit; refusing to replace it even with --force")
    assert out.read_text() == "keep me"


def test_quantize_summary_and_signed_json(tiny: Path, photos: Path, tmp_path: Path) -> None:
    good = (photos / "photo_01.jpg").read_bytes()
    (photos / "photo_99.jpg").write_bytes(good[: len(good) // 3])  # a truncated photo among good ones
    cache = ["--cache-dir", tmp_path / "cache"]
    result = run_cli("quantize", tiny, "--calib", photos, *cache, "--json", "-")
    assert result.code == 0, result.err
    data = signed_json(result.out, "quantize")  # stdout carries the JSON alone...
    assert "size ratio" in result.err  # ...the table goes to stderr
    assert "warning: skipped calibration image" in result.err and "photo_99.jpg" in result.err
    assert data["recipe"] == "default" and data["output"] == str(tmp_path / "tiny.int8.onnx")
    assert data["family"] == {"name": "u2net", "detected_by": "input size"}
    assert data["nodes"]["quantized"] > 0
    assert {"absorb", "equalize", "widen", "compact"} <= set(data["passes"])
    assert data["passes"]["absorb"]["offsets"][0]["producer"] == "Conv_1"
    calibration = data["calibration"]
    assert calibration["passes"] >= 1 and len(calibration["used"]) == 6
    assert [s["file"] for s in calibration["skipped"]] == ["photo_99.jpg"]
    held = data["held_out"]
    assert held["images"] == ["photo_03.jpg", "photo_07.jpg"] and held["target"] == "noise floor"
    assert held["target_iou"] <= held["noise_floor"]["mean"] - 0.005  # the floor, less at least the margin
    again = run_cli("quantize", tiny, "--calib", photos, *cache, "--force")  # its own output: replaced
    assert again.code == 0, again.err
    for row in (
        "size ratio",
        "calibration",
        "stayed float",
        "offsets absorbed",
        "held-out check",
        "noise floor",
    ):
        assert row in again.out, row
    assert "from the cache" in again.out  # the same model and photos: no pass over the photos
    assert not BOX_DRAWING & set(again.out)


def test_an_output_is_checked_before_the_work(tiny: Path, tmp_path: Path) -> None:
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "notes"}')
    result = run_cli("bench", tiny, "--runs", "1", "--json", mine, "--force")
    assert_one_line_error(result, 2, "was not written by quantkit")
    assert "timing" not in result.err and mine.read_text() == '{"my": "notes"}'


def test_a_run_that_could_process_no_photo_fails(tiny: Path, photos: Path, tmp_path: Path) -> None:
    Image.new("1", (12_000, 8_000)).save(photos / "zz_bomb.png")  # 96 Mpx: a decompression bomb
    alone = run_cli("remove", tiny, photos / "zz_bomb.png", "-o", tmp_path / "out")
    assert alone.code == 2 and "decompression bomb" in alone.err
    assert alone.err.strip().splitlines()[-1] == "error: no photo could be processed"
    assert not (tmp_path / "out").exists()
