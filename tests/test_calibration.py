from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import quantkit.images
from quantkit.calibration import FolderCalibrationReader
from quantkit.errors import QuantkitError
from quantkit.preprocess import preprocess
from quantkit.spec import read_spec


def test_reader_is_sorted_lazy_and_uses_inference_preprocessing(
    tiny_model_path: Path, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []
    real_open = quantkit.images.open_image

    def counting_open(path: Path) -> Image.Image:
        decoded.append(path.name)
        return real_open(path)

    monkeypatch.setattr(quantkit.images, "open_image", counting_open)
    spec = read_spec(tiny_model_path)
    reader = FolderCalibrationReader(photos, spec)
    assert decoded == []  # nothing read up front
    first = reader.get_next()
    assert decoded == ["photo_00.png"]
    assert first is not None and list(first) == ["input.1"]
    with Image.open(photos / "photo_00.png") as image:
        assert np.array_equal(first["input.1"], preprocess(image, spec))
    rest = []
    while (item := reader.get_next()) is not None:
        rest.append(item)
    assert len(rest) == 7
    assert decoded == sorted(decoded)
    assert [p.name for p in reader.used] == sorted(p.name for p in photos.iterdir())


def test_limit_and_rewind(tiny_model_path: Path, photos: Path) -> None:
    reader = FolderCalibrationReader(photos, read_spec(tiny_model_path), limit=3)
    assert len(reader) == 3
    first_pass = [reader.get_next() for _ in range(4)]
    assert first_pass[-1] is None
    reader.rewind()
    again = reader.get_next()
    assert again is not None and first_pass[0] is not None
    assert np.array_equal(again["input.1"], first_pass[0]["input.1"])


def test_unreadable_files_are_skipped_with_warning(tiny_model_path: Path, photos: Path) -> None:
    (photos / "photo_03.jpg").write_bytes(b"\xff\xd8 broken")
    reader = FolderCalibrationReader(photos, read_spec(tiny_model_path))
    reader.check()
    count = 0
    while reader.get_next() is not None:
        count += 1
    assert count == 7
    assert [p.name for p, _ in reader.skips.skipped] == ["photo_03.jpg"]


def test_no_usable_image_is_an_error(tiny_model_path: Path, tmp_path: Path) -> None:
    for k in range(3):
        (tmp_path / f"bad{k}.jpg").write_text("nope")
    reader = FolderCalibrationReader(tmp_path, read_spec(tiny_model_path))
    with pytest.raises(QuantkitError, match="none of the 3 image files"):
        reader.check()
