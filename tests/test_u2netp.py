"""The real pretrained u2netp through the default recipe (slow: about a minute)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from quantkit.inspect import census
from quantkit.masks import HeldOut
from quantkit.session import make_session
from quantkit.spec import read_spec

from .conftest import CALIB, U2NETP

pytestmark = pytest.mark.slow


def test_int8_model_loads_has_int8_weights_and_gives_a_mask(u2netp_int8: Path) -> None:
    model = onnx.load(str(u2netp_int8))
    counts = census(model)
    assert counts.int8_weights >= 118  # the Conv weights (119 in u2netp; float islands may keep a few)
    assert len(counts.quantized) > 200
    session = make_session(u2netp_int8)
    assert session.get_inputs()[0].name == "input.1"
    out = session.run(None, {"input.1": np.zeros((1, 3, 320, 320), np.float32)})
    assert len(out) == 7 and out[0].shape == (1, 1, 320, 320)
    assert u2netp_int8.stat().st_size <= 0.30 * U2NETP.stat().st_size


def test_int8_masks_agree_with_fp32_on_bundled_photos(u2netp_int8: Path, u2netp_naive: Path) -> None:
    photos = sorted(p for p in CALIB.iterdir() if p.suffix in (".png", ".jpg"))
    held = HeldOut(photos, read_spec(U2NETP), U2NETP)
    good = held.score(u2netp_int8).iou
    naive = held.score(u2netp_naive).iou
    # Some bundled photos (coins, a motion-blurred clock) have no clear subject, so FP32's own
    # mask is a soft guess there; the mean and the median are what this check pins.
    per_image = sorted(a.iou for a in held.score(u2netp_int8).values)
    assert good.mean > 0.95 and per_image[len(per_image) // 2] > 0.97
    assert naive.mean < good.mean - 0.1  # the recipe is what makes the difference
