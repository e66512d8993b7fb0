from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quantkit.errors import QuantkitError
from quantkit.images import open_image
from quantkit.masks import predict_mask_image
from quantkit.remove import RemoveOptions, parse_color, remove
from quantkit.session import make_session
from quantkit.spec import read_spec

from .cli_helpers import quantkit
from .conftest import CALIB, U2NETP


def test_cutouts_are_rgba_at_the_photo_size(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    files = sorted(photos.iterdir())
    report = remove(RemoveOptions(tiny_model_path, out), files)
    assert len(report.written) == 8
    for source, written in zip(files, report.written, strict=True):
        with Image.open(written) as result, Image.open(source) as original:
            assert result.mode == "RGBA" and result.size == original.size
            assert np.array_equal(np.asarray(result)[..., :3], np.asarray(original.convert("RGB")))


def test_mask_only_matches_the_inference_path(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    files = sorted(photos.iterdir())[:2]
    report = remove(RemoveOptions(tiny_model_path, tmp_path / "m", mask_only=True), files)
    session = make_session(tiny_model_path)
    spec = read_spec(tiny_model_path)
    for source, written in zip(files, report.written, strict=True):
        assert written.name.endswith(".mask.png")
        expected = predict_mask_image(session, spec, open_image(source))
        assert np.array_equal(np.asarray(Image.open(written)), np.asarray(expected))


def test_existing_outputs_are_refused_before_any_work(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo_03.png").write_text("keep")
    with pytest.raises(QuantkitError, match="already exist"):
        remove(RemoveOptions(tiny_model_path, out), sorted(photos.iterdir()))
    assert sorted(p.name for p in out.iterdir()) == ["photo_03.png"]
    assert (out / "photo_03.png").read_text() == "keep"


def test_name_collisions_are_refused(tiny_model_path: Path, tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(QuantkitError, match="would both be written"):
        remove(
            RemoveOptions(tiny_model_path, tmp_path / "o"),
            [tmp_path / "a.jpg", tmp_path / "a.png"],
        )


def test_background_colour_and_parse() -> None:
    assert parse_color("#ff0000") == (255, 0, 0, 255)
    assert parse_color("0,128,255,10") == (0, 128, 255, 10)
    for bad in ("red", "#12345", "1,2", "1,2,300"):
        with pytest.raises(QuantkitError):
            parse_color(bad)


def test_max_size_keeps_the_original_size(tiny_model_path: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.jpg"
    Image.new("RGB", (900, 600), (90, 120, 200)).save(big)
    report = remove(
        RemoveOptions(tiny_model_path, tmp_path / "o", max_size=200, bg_color=(0, 255, 0, 255)), [big]
    )
    with Image.open(report.written[0]) as result:
        assert result.size == (900, 600)
        assert np.asarray(result)[..., 3].min() == 255  # composited onto an opaque colour


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16"])
def test_odd_modes_and_exif_through_the_cli(tiny_model_path: Path, tmp_path: Path, mode: str) -> None:
    source = Image.open(CALIB / "coffee.png").convert("RGB").resize((60, 40))
    if mode == "I;16":
        image = Image.fromarray(np.asarray(source.convert("L"), dtype=np.uint16) * 257)
    else:
        image = source.convert(mode)
    path = tmp_path / f"photo.{'jpg' if mode == 'CMYK' else 'png'}"
    image.save(path)
    result = quantkit("remove", tiny_model_path, path, "-o", tmp_path / "out")
    assert result.code == 0, result.err
    with Image.open(tmp_path / "out" / "photo.png") as out:
        assert out.size == (60, 40) and out.mode == "RGBA"


def test_exif_rotated_photo_keeps_its_upright_size(tiny_model_path: Path, tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8
    buffer = io.BytesIO()
    Image.new("RGB", (50, 30), (10, 200, 10)).save(buffer, format="JPEG", exif=exif)
    path = tmp_path / "turned.jpg"
    path.write_bytes(buffer.getvalue())
    report = remove(RemoveOptions(tiny_model_path, tmp_path / "o"), [path])
    with Image.open(report.written[0]) as out:
        assert out.size == (30, 50)


def test_truncated_photo_is_skipped_and_counted(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    data = (photos / "photo_01.jpg").read_bytes()
    (photos / "photo_01.jpg").write_bytes(data[: len(data) // 2])
    result = quantkit("remove", tiny_model_path, photos, "-o", tmp_path / "out")
    assert result.code == 0, result.err
    assert "skipped 1" in result.out and "photo_01.jpg" in result.err
    assert len(list((tmp_path / "out").iterdir())) == 7


@pytest.mark.slow
def test_real_cutout_with_the_int8_model(u2netp_int8: Path, tmp_path: Path) -> None:
    report = remove(RemoveOptions(u2netp_int8, tmp_path / "o"), [CALIB / "astronaut.png"])
    alpha = np.asarray(Image.open(report.written[0]))[..., 3].astype(np.float32) / 255
    session = make_session(U2NETP)
    fp32 = (
        np.asarray(
            predict_mask_image(session, read_spec(U2NETP), open_image(CALIB / "astronaut.png")), np.float32
        )
        / 255
    )
    both = ((alpha >= 0.5) & (fp32 >= 0.5)).sum()
    either = ((alpha >= 0.5) | (fp32 >= 0.5)).sum()
    assert both / either > 0.95
