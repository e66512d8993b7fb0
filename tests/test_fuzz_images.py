"""Fuzzing the image decoding path: whatever the bytes, a clean ImageReadError or an image."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from quantkit.model.images import ImageReadError, open_image
from quantkit.model.preprocess import preprocess

from .test_preprocess import spec


def _seed_files() -> list[bytes]:
    seeds = []
    for fmt, mode in (
        ("PNG", "RGB"),
        ("JPEG", "RGB"),
        ("PNG", "P"),
        ("GIF", "P"),
        ("BMP", "RGB"),
        ("WEBP", "RGBA"),
    ):
        buffer = io.BytesIO()
        image = Image.new("RGB", (17, 11), (200, 30, 90)).convert(mode)
        image.save(buffer, format=fmt)
        seeds.append(buffer.getvalue())
    return seeds


SEEDS = _seed_files()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    cut = draw(st.integers(1, len(data)))
    return bytes(data[:cut])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.one_of(mutated(), st.binary(max_size=300)))
def test_decoding_never_escapes_with_another_exception(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "fuzz.png"
    path.write_bytes(payload)
    try:
        image = open_image(path)
    except ImageReadError as exc:
        assert "fuzz.png" in exc.message and "\n" not in exc.message
        return
    tensor = preprocess(image, spec(8))
    assert tensor.shape == (1, 3, 8, 8) and np.isfinite(tensor).all()
