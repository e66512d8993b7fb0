"""rembg itself, as a real client, serving quantkit's INT8 model.

Skipped when rembg is not installed (``pip install -e ".[dev,rembg]"``; CI installs it).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import quantkit
from quantkit.accuracy.agreement import agreement
from quantkit.model.preprocess import mask_array

from .conftest import CALIB, U2NETP

rembg = pytest.importorskip("rembg")

PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "grace_hopper.jpg"]


def rembg_mask(session: object, path: Path) -> np.ndarray:
    with Image.open(path) as image:
        mask = rembg.remove(image, session=session, only_mask=True)
    return mask_array(mask)


def our_mask(session: quantkit.Session, path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return mask_array(quantkit.cutout(image, session=session, mask_only=True))


@pytest.mark.slow
def test_rembg_serves_the_int8_model(
    u2netp_int8: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "u2net_home"
    home.mkdir()
    monkeypatch.setenv("U2NET_HOME", str(home))  # recent rembg only loads custom models from here
    int8 = Path(shutil.copy(u2netp_int8, home / "u2netp.int8.onnx"))
    fp32 = Path(shutil.copy(U2NETP, home / "u2netp.onnx"))
    rembg_int8 = rembg.new_session("u2net_custom", model_path=str(int8))
    rembg_fp32 = rembg.new_session("u2net_custom", model_path=str(fp32))
    ours = quantkit.new_session(u2netp_int8)
    for name in PHOTOS:
        path = CALIB / name
        theirs = rembg_mask(rembg_int8, path)
        assert agreement(theirs, our_mask(ours, path)).iou >= 0.99, name  # same model, same pipeline
        assert agreement(rembg_mask(rembg_fp32, path), theirs).iou >= 0.9, name  # INT8 vs rembg's FP32


def test_rembg_cutout_has_alpha_from_our_mask(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("U2NET_HOME", str(home))
    model = Path(shutil.copy(U2NETP, home / "u2netp.onnx"))
    session = rembg.new_session("u2net_custom", model_path=str(model))
    with Image.open(CALIB / "chelsea.png") as image:
        cutout = rembg.remove(image, session=session)
    assert cutout.mode == "RGBA"
    ours = our_mask(quantkit.new_session(U2NETP), CALIB / "chelsea.png")
    assert np.array_equal(mask_array(cutout.getchannel("A")), ours)  # same model: the same mask, bit for bit
