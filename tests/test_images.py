from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quantkit.errors import QuantkitError
from quantkit.model.images import ImageReadError, SkipLog, expand_inputs, iter_images, list_images, open_image


def test_lists_only_images_sorted(tmp_path: Path) -> None:
    for name in ["b.jpg", "a.PNG", "c.webp", "notes.md", ".hidden.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.PNG", "b.jpg", "c.webp"]
    assert [p.name for p in list_images(tmp_path, limit=2)] == ["a.PNG", "b.jpg"]


def test_empty_and_missing_folders_are_errors(tmp_path: Path) -> None:
    with pytest.raises(QuantkitError, match="no images in"):
        list_images(tmp_path)
    (tmp_path / "readme.txt").write_text("not an image")
    with pytest.raises(QuantkitError, match="no images in"):
        list_images(tmp_path)
    with pytest.raises(QuantkitError, match="does not exist"):
        list_images(tmp_path / "missing")


def test_truncated_jpeg_is_skipped_with_a_reason(tmp_path: Path) -> None:
    good = tmp_path / "a.jpg"
    Image.new("RGB", (64, 64), (200, 10, 10)).save(good)
    bad = tmp_path / "b.jpg"
    bad.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    skips = SkipLog()
    got = [p.name for p, _ in iter_images([good, bad], skips)]
    assert got == ["a.jpg"]
    assert len(skips) == 1 and "b.jpg" in skips.skipped[0][1]


def test_text_file_with_image_name_is_skipped(tmp_path: Path) -> None:
    fake = tmp_path / "fake.png"
    fake.write_text("definitely not a PNG")
    with pytest.raises(ImageReadError, match="not a readable image"):
        open_image(fake)


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    Image.new("1", (12_000, 8_000)).save(bomb)  # 96 Mpx of 1-bit pixels: a small file
    assert bomb.stat().st_size < 2_000_000
    with pytest.raises(ImageReadError, match="decompression bomb"):
        open_image(bomb)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "1"])
def test_common_modes_open(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"img.{'jpg' if mode == 'CMYK' else 'png'}"
    Image.new("RGB", (10, 8), (120, 60, 30)).convert(mode).save(path)
    image = open_image(path)
    assert image.size == (10, 8)
    assert image.convert("RGB").size == (10, 8)


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4000).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    image = open_image(path)
    rgb = np.asarray(image.convert("RGB"))[..., 0]
    # Pillow's own convert would clip everything above 255 to white
    assert rgb.max() == round(60000 * 255 / 65535)
    assert len(np.unique(rgb)) == 16


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 10, 20))  # white stripe on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif, quality=95)
    path = tmp_path / "rotated.jpg"
    path.write_bytes(buffer.getvalue())
    upright = open_image(path)
    assert upright.size == (20, 40)
    pixels = np.asarray(upright.convert("L"))
    assert pixels[:10].mean() > 200 and pixels[-10:].mean() < 50  # stripe now on top


def test_float_image_in_unit_range_is_scaled_to_8_bits(tmp_path: Path) -> None:
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5], [1.0, np.nan]], dtype=np.float32), mode="F").save(path)
    pixels = np.asarray(open_image(path))
    assert pixels.dtype == np.uint8
    assert pixels.tolist() == [[0, 128], [255, 0]]  # NaN becomes black, not an error


def test_inputs_expand_folders_in_order_and_skip_what_is_not_a_file(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("b.png", "a.jpg", "notes.txt"):
        (folder / name).write_bytes(b"x")
    single = tmp_path / "z.png"
    single.write_bytes(b"x")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opening it would block until someone writes: it must not even be opened
    skips = SkipLog()
    files = expand_inputs([single, folder, fifo], skips)
    assert [p.name for p in files] == ["z.png", "a.jpg", "b.png"]
    assert [(p.name, reason) for p, reason in skips.skipped] == [("pipe.png", f"{fifo}: not a regular file")]
    with pytest.raises(QuantkitError, match="does not exist"):
        expand_inputs([tmp_path / "gone.jpg"], SkipLog())
    with pytest.raises(ImageReadError, match="not a regular file"):
        open_image(fifo)
