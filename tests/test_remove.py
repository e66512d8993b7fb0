"""Cutouts: ``quantkit.remove`` for folders, ``quantkit.cutout`` for one photo, and the CLI."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import quantkit
from quantkit import QuantkitError, RemoveOptions
from quantkit.accuracy.agreement import agreement
from quantkit.model.images import open_image
from quantkit.model.preprocess import mask_array
from quantkit.removal.compose import parse_color

from .cli_helpers import quantkit as run_cli
from .conftest import CALIB, U2NETP


def test_cutouts_are_signed_rgba_at_the_photo_size(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    files = sorted(photos.iterdir())
    report = quantkit.remove(tiny_model_path, [photos], output_dir=out)
    assert report.written == [out / f"{p.stem}.png" for p in files] and report.skipped == []
    for source, written in zip(files, report.written, strict=True):
        with Image.open(written) as result, Image.open(source) as original:
            assert result.mode == "RGBA" and result.size == original.size
            assert np.array_equal(np.asarray(result)[..., :3], np.asarray(original.convert("RGB")))
            assert str(result.info["Software"]).startswith("quantkit")  # --force may replace it later


def test_mask_only_is_the_one_photo_api_and_the_inference_path(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    files = sorted(photos.iterdir())[:2]
    report = quantkit.remove(
        tiny_model_path, files, output_dir=tmp_path / "m", options=RemoveOptions(mask_only=True)
    )
    session = quantkit.new_session(tiny_model_path)
    for source, written in zip(files, report.written, strict=True):
        assert written.name == f"{source.stem}.mask.png"
        with Image.open(source) as image:
            expected = quantkit.cutout(image, session=session, mask_only=True)
            cut = quantkit.cutout(image, session=session)
        assert expected.mode == "L" and np.array_equal(np.asarray(Image.open(written)), np.asarray(expected))
        assert np.array_equal(np.asarray(cut)[..., 3], np.asarray(expected))  # the mask is the alpha


def test_outputs_are_checked_before_any_work_and_force_replaces_only_our_pngs(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    quantkit.remove(tiny_model_path, [photos / "photo_00.png"], output_dir=out)
    (out / "photo_03.png").write_text("keep")  # a user's file where an output would go
    with pytest.raises(QuantkitError, match=r"photo_00\.png already exists \(use --force"):
        quantkit.remove(tiny_model_path, [photos], output_dir=out)
    with pytest.raises(QuantkitError, match=r"photo_03\.png exists and was not written by quantkit"):
        quantkit.remove(tiny_model_path, [photos], output_dir=out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["photo_00.png", "photo_03.png"]  # nothing written
    assert (out / "photo_03.png").read_text() == "keep"
    (out / "photo_03.png").unlink()
    report = quantkit.remove(tiny_model_path, [photos], output_dir=out, force=True)  # ours: replaced
    assert len(report.written) == 8


def test_photos_can_never_be_replaced_by_their_cutouts(tiny_model_path: Path, photos: Path) -> None:
    before = {p.name: p.read_bytes() for p in photos.iterdir()}
    with pytest.raises(QuantkitError, match=r"photo_00\.png is an input of this command"):
        quantkit.remove(tiny_model_path, [photos], output_dir=photos, force=True)
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before


def test_name_collisions_and_contradictory_options_are_refused(tiny_model_path: Path, tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "a.jpg")
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(QuantkitError, match="would both be written to"):
        quantkit.remove(tiny_model_path, [tmp_path / "a.jpg", tmp_path / "a.png"], output_dir=tmp_path / "o")
    both = RemoveOptions(mask_only=True, bg_color=(0, 0, 0, 255))
    with pytest.raises(QuantkitError, match="--bg-color and --mask-only do not go together"):
        quantkit.remove(tiny_model_path, [tmp_path / "a.jpg"], output_dir=tmp_path / "o", options=both)
    assert not (tmp_path / "o").exists()


def test_background_colour_syntax() -> None:
    assert parse_color("#ff0000") == (255, 0, 0, 255)
    assert parse_color("#00ff0080") == (0, 255, 0, 128)
    assert parse_color(" 0,128,255,10 ") == (0, 128, 255, 10)
    for bad in ("red", "#12345", "1,2", "1,2,300", "1,2,3,4,5"):
        with pytest.raises(QuantkitError, match="--bg-color"):
            parse_color(bad)


def test_max_size_keeps_the_original_size_and_bg_color_is_opaque(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.jpg"
    Image.new("RGB", (900, 600), (90, 120, 200)).save(big)
    options = RemoveOptions(max_size=200, bg_color=(0, 255, 0, 255))
    report = quantkit.remove(tiny_model_path, [big], output_dir=tmp_path / "o", options=options)
    with Image.open(report.written[0]) as result:
        assert result.size == (900, 600)
        assert np.asarray(result)[..., 3].min() == 255  # composited onto an opaque colour


def test_exif_orientation_is_applied_by_both_apis(tiny_model_path: Path, tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 degrees to display
    buffer = io.BytesIO()
    Image.new("RGB", (50, 30), (10, 200, 10)).save(buffer, format="JPEG", exif=exif)
    path = tmp_path / "turned.jpg"
    path.write_bytes(buffer.getvalue())
    report = quantkit.remove(tiny_model_path, [path], output_dir=tmp_path / "o")
    with Image.open(report.written[0]) as out:
        assert out.size == (30, 50)
    with Image.open(path) as image:  # as decoded by Pillow, not yet upright
        assert image.size == (50, 30)
        assert quantkit.cutout(image, session=quantkit.new_session(tiny_model_path)).size == (30, 50)


def test_odd_modes_through_the_cli(tiny_model_path: Path, tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    source = Image.open(CALIB / "coffee.png").convert("RGB").resize((60, 40))
    for mode in ("L", "RGBA", "P", "CMYK", "I;16"):
        if mode == "I;16":
            image = Image.fromarray(np.asarray(source.convert("L"), dtype=np.uint16) * 257)
        else:
            image = source.convert(mode)
        image.save(folder / f"{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png'}")
    result = run_cli("remove", tiny_model_path, folder, "-o", tmp_path / "out")
    assert result.code == 0, result.err
    assert "wrote 5 file(s)" in result.out
    for path in (tmp_path / "out").iterdir():
        with Image.open(path) as out:
            assert out.size == (60, 40) and out.mode == "RGBA", path.name


def test_truncated_photo_is_skipped_and_counted(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    data = (photos / "photo_01.jpg").read_bytes()
    (photos / "photo_01.jpg").write_bytes(data[: len(data) // 2])
    result = run_cli("remove", tiny_model_path, photos, "-o", tmp_path / "out")
    assert result.code == 0, result.err
    assert "skipped 1" in result.out and "warning" in result.err and "photo_01.jpg" in result.err
    assert len(list((tmp_path / "out").iterdir())) == 7


def test_a_run_that_writes_nothing_leaves_no_folder(tiny_model_path: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    report = quantkit.remove(tiny_model_path, [broken], output_dir=tmp_path / "new" / "out")
    assert report.written == [] and [name for name, _ in report.skipped] == ["broken.png"]
    assert not (tmp_path / "new" / "out").exists()


@pytest.mark.slow
def test_real_cutout_with_the_int8_model(u2netp_int8: Path, tmp_path: Path) -> None:
    report = quantkit.remove(u2netp_int8, [CALIB / "astronaut.png"], output_dir=tmp_path / "o")
    with Image.open(report.written[0]) as cut:
        alpha = mask_array(cut.getchannel("A"))
    fp32 = quantkit.cutout(
        open_image(CALIB / "astronaut.png"), session=quantkit.new_session(U2NETP), mask_only=True
    )
    assert agreement(mask_array(fp32), alpha).iou > 0.95
