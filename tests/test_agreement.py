"""Mask agreement (IoU at 0.5, MAE, largest difference) and the JPEG-95 noise floor beside it.

Ground-truth saliency metrics have their own file (test_saliency.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from quantkit.accuracy.agreement import AgreementLog, Summary, agreement
from quantkit.accuracy.noise import Within, jpeg_resave


def test_agreement_known_answers() -> None:
    a = np.zeros((10, 10), np.float32)
    b = np.zeros((10, 10), np.float32)
    a[:, :5] = 1.0  # 50 pixels
    b[:, 2:7] = 1.0  # 50 pixels, 30 shared
    result = agreement(a, b)
    assert result.iou == pytest.approx(30 / 70)
    assert result.mae == pytest.approx(40 / 100)
    assert result.max_abs == 1.0


def test_threshold_is_half_and_soft_values_count_for_mae() -> None:
    a = np.full((4, 4), 0.49, np.float32)
    b = np.full((4, 4), 0.51, np.float32)
    result = agreement(a, b)
    assert result.iou == 0.0  # a is all background, b all foreground
    assert result.mae == pytest.approx(0.02, abs=1e-6)
    assert agreement(np.full((2, 2), 0.5, np.float32), np.ones((2, 2), np.float32)).iou == 1.0  # 0.5 is in


def test_two_empty_masks_agree_perfectly() -> None:
    empty = np.zeros((3, 3), np.float32)
    assert agreement(empty, empty).iou == 1.0


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        agreement(np.zeros((2, 2)), np.zeros((3, 3)))


def log_of(ious: list[float]) -> AgreementLog:
    """A log whose images have exactly these IoUs (a full 10x10 reference, a partial other)."""
    log = AgreementLog()
    for k, iou in enumerate(ious):
        mask = np.ones((10, 10), np.float32)
        other = np.zeros((10, 10), np.float32)
        other[:, : round(10 * iou)] = 1
        log.add(f"img{k}", agreement(mask, other))
    return log


def test_summary_and_worst() -> None:
    log = log_of([1.0, 0.5, 0.9, 0.2])
    assert log.iou.mean == pytest.approx(0.65)
    assert log.iou.minimum == pytest.approx(0.2)
    assert [name for name, _ in log.worst(2)] == ["img3", "img1"]
    assert Summary.of([1.0] * 19 + [0.0]).p05 == pytest.approx(0.95)
    empty = AgreementLog()
    assert np.isnan(empty.iou.mean) and np.isnan(empty.mae) and np.isnan(empty.max_abs)


def test_worst_breaks_ties_by_mae_then_name() -> None:
    ref = np.zeros((4, 4), np.float32)
    log = AgreementLog()
    log.add("b", agreement(ref, np.full((4, 4), 0.2, np.float32)))
    log.add("a", agreement(ref, np.full((4, 4), 0.2, np.float32)))
    log.add("c", agreement(ref, np.full((4, 4), 0.4, np.float32)))
    assert all(v.iou == 1.0 for v in log.values)  # all still background: IoU ties
    assert [name for name, _ in log.worst(3)] == ["c", "a", "b"]


def test_within_the_noise_floor() -> None:
    model = log_of([0.9, 0.9, 1.0, 1.0])
    floor = log_of([1.0, 0.8, 1.0, 0.9])
    within = Within(model, floor)
    assert within.beyond_floor == pytest.approx(0.25)  # only img0 moved more than the re-save
    assert within.misses(0.0) == []  # mean 0.95 vs 0.925, p05 0.9 vs 0.815
    behind = Within(floor, model)
    misses = behind.misses(0.01)
    assert len(misses) == 2
    assert misses[0].startswith("mean IoU 0.9250 < noise floor 0.9500 - 0.01")
    assert misses[1].startswith("5th-percentile IoU")
    assert behind.misses(0.1) == []  # a wide enough margin forgives both


def test_jpeg_resave_is_a_small_invisible_change() -> None:
    yy, xx = np.mgrid[0:24, 0:40]
    pixels = np.stack([xx * 6, yy * 10, (xx + yy) * 4], axis=-1).astype(np.uint8)  # a smooth photo
    image = Image.fromarray(pixels)
    resaved = jpeg_resave(image)
    assert resaved.mode == "RGB" and resaved.size == (40, 24)
    moved = np.abs(np.asarray(resaved, np.int16) - pixels.astype(np.int16))
    assert 0 < moved.mean() < 2 and moved.max() < 16  # changed, but noise-sized
    again = jpeg_resave(Image.fromarray(pixels).convert("RGBA"))  # any mode
    assert np.array_equal(np.asarray(again), np.asarray(resaved))
