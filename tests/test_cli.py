"""Every bad input: one-line error, non-zero exit, no traceback, no partial or clobbered file."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from .cli_helpers import assert_one_line_error, quantkit
from .conftest import U2NETP, build_tiny_model


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.onnx"
    onnx.save(build_tiny_model(), str(path))
    return path


def test_help_lists_the_commands() -> None:
    result = quantkit("--help")
    assert result.code == 0
    for command in ("quantize", "compare", "bench", "remove"):
        assert command in result.out


def test_quantize_missing_model(tmp_path: Path) -> None:
    assert_one_line_error(quantkit("quantize", tmp_path / "nope.onnx"), 2, "does not exist")


def test_quantize_non_onnx_and_truncated_models(tmp_path: Path, photos: Path) -> None:
    text = tmp_path / "model.onnx"
    text.write_text("not a model")
    assert_one_line_error(quantkit("quantize", text, "--calib", photos), 2, "not a readable ONNX file")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(U2NETP.read_bytes()[:200_000])
    assert_one_line_error(quantkit("quantize", cut, "--calib", photos), 2, "not a readable ONNX file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.onnx", "model.onnx", "photos"]


def test_quantize_model_without_image_input(tmp_path: Path, photos: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
    )
    path = tmp_path / "vector.onnx"
    onnx.save(helper.make_model(graph), str(path))
    assert_one_line_error(quantkit("quantize", path, "--calib", photos), 2, "expected an NCHW image batch")


def test_quantize_empty_and_non_image_folders(tiny: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(quantkit("quantize", tiny, "--calib", empty), 2, "no images in")
    junk = tmp_path / "junk"
    junk.mkdir()
    for k in range(3):
        (junk / f"{k}.txt").write_text("text")
    assert_one_line_error(quantkit("quantize", tiny, "--calib", junk), 2, "no images in")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_text("not a jpeg")
    assert_one_line_error(quantkit("quantize", tiny, "--calib", broken), 2, "could be read")
    assert not (tmp_path / "tiny.int8.onnx").exists()


def test_quantize_refuses_to_overwrite(tiny: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.int8.onnx"
    out.write_text("keep me")
    assert_one_line_error(quantkit("quantize", tiny, "--calib", photos), 2, "already exists")
    assert out.read_text() == "keep me"


def test_quantize_unwritable_output_folder(tiny: Path, photos: Path) -> None:
    assert_one_line_error(
        quantkit("quantize", tiny, "--calib", photos, "-o", "/sys/tiny.int8.onnx"), 2, "not writable"
    )


def test_quantize_truncated_jpeg_among_good_ones_is_skipped_and_counted(
    tiny: Path, photos: Path, tmp_path: Path
) -> None:
    good = (photos / "photo_01.jpg").read_bytes()
    (photos / "photo_99.jpg").write_bytes(good[: len(good) // 3])
    report = tmp_path / "report.json"
    result = quantkit("quantize", tiny, "--calib", photos, "--recipe", "naive", "--json", report)
    assert result.code == 0, result.err
    assert "warning" in result.err and "photo_99.jpg" in result.err
    data = json.loads(report.read_text())
    assert [s["file"] for s in data["calibration"]["skipped"]] == ["photo_99.jpg"]
    assert len(data["calibration"]["used"]) == 8
    assert data["output_bytes"] > 0


def test_quantize_summary_and_json(tiny: Path, photos: Path, tmp_path: Path) -> None:
    result = quantkit("quantize", tiny, "--calib", photos, "--json", "-")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["recipe"] == "default"
    assert data["nodes"]["quantized"] > 0
    assert data["offsets_absorbed"][0]["producer"] == "Conv_1"
    assert (tmp_path / "tiny.int8.onnx").exists()
    again = quantkit("quantize", tiny, "--calib", photos, "--force")
    assert again.code == 0
    assert "size ratio" in again.out and "calibration" in again.out and "stayed float" in again.out


def test_bad_option_values_are_usage_errors(tiny: Path) -> None:
    result = quantkit("quantize", tiny, "--method", "magic")
    assert result.code == 2
    assert "Traceback" not in result.err


def test_remove_bad_inputs(tiny: Path, tmp_path: Path) -> None:
    assert_one_line_error(
        quantkit("remove", tiny, tmp_path / "none.jpg", "-o", tmp_path / "out"), 2, "does not exist"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(quantkit("remove", tiny, empty, "-o", tmp_path / "out"), 2, "no images in")
    photo = tmp_path / "a.png"
    Image.new("RGB", (20, 20)).save(photo)
    assert_one_line_error(quantkit("remove", tiny, photo, "-o", "/sys/out"), 2, "cannot create output folder")
    assert_one_line_error(
        quantkit("remove", tiny, photo, "-o", tmp_path / "o", "--bg-color", "purple"), 2, "--bg-color"
    )


def test_compare_and_bench_bad_models(tiny: Path, tmp_path: Path, photos: Path) -> None:
    assert_one_line_error(
        quantkit("compare", tiny, tmp_path / "gone.onnx", "--images", photos, "--no-config"),
        2,
        "does not exist",
    )
    assert_one_line_error(
        quantkit("compare", tiny, "--images", photos, "--no-config"), 2, "at least two models"
    )
    assert_one_line_error(quantkit("bench", tmp_path / "gone.onnx"), 2, "does not exist")


@pytest.mark.parametrize("command", ["quantize", "compare", "bench", "remove"])
def test_every_command_explains_a_truncated_model(command: str, tmp_path: Path, photos: Path) -> None:
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(U2NETP.read_bytes()[:150_000])
    args: dict[str, list[object]] = {
        "quantize": ["quantize", cut, "--calib", photos],
        "compare": ["compare", cut, cut, "--images", photos, "--no-config"],
        "bench": ["bench", cut],
        "remove": ["remove", cut, photos, "-o", tmp_path / "out"],
    }
    assert_one_line_error(quantkit(*args[command]), 2, "not a readable ONNX file")
    assert not (tmp_path / "out").exists()


def test_dynamic_size_model_is_quantized_and_used(tmp_path: Path, photos: Path) -> None:
    model = build_tiny_model()
    for dim in (2, 3):
        model.graph.input[0].type.tensor_type.shape.dim[dim].dim_param = "hw"
        model.graph.output[0].type.tensor_type.shape.dim[dim].dim_param = "hw"
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, str(path))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    result = quantkit("quantize", path, "--calib", photos, "--recipe", "naive", cwd=cwd)
    assert result.code == 0, result.err
    assert list(cwd.iterdir()) == []  # onnxruntime's shape-inference dumps stay out of the user's folder
    out = quantkit("remove", tmp_path / "dynamic.int8.onnx", photos / "photo_01.jpg", "-o", tmp_path / "cut")
    assert out.code == 0, out.err
    with Image.open(tmp_path / "cut" / "photo_01.png") as cutout:
        assert cutout.size == (48, 40) and cutout.mode == "RGBA"


def test_decompression_bomb_among_photos_is_skipped(tiny: Path, photos: Path, tmp_path: Path) -> None:
    Image.new("1", (12_000, 8_000)).save(photos / "zz_bomb.png")
    result = quantkit("remove", tiny, photos, "-o", tmp_path / "out")
    assert result.code == 0, result.err
    assert "decompression bomb" in result.err
    assert not (tmp_path / "out" / "zz_bomb.png").exists()
    alone = quantkit("remove", tiny, photos / "zz_bomb.png", "-o", tmp_path / "out2")
    assert alone.code == 2 and "no photo could be processed" in alone.err
