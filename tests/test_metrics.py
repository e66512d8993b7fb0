from __future__ import annotations

import numpy as np
import pytest

from quantkit.metrics import AgreementLog, GroundTruthMetrics, Summary, agreement


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


def test_two_empty_masks_agree_perfectly() -> None:
    empty = np.zeros((3, 3), np.float32)
    assert agreement(empty, empty).iou == 1.0


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        agreement(np.zeros((2, 2)), np.zeros((3, 3)))


def test_summary_and_worst() -> None:
    log = AgreementLog()
    for k, iou in enumerate([1.0, 0.5, 0.9, 0.2]):
        mask = np.zeros((10, 10), np.float32)
        other = mask.copy()
        mask[:, :10] = 1
        other[:, : int(10 * iou)] = 1
        log.add(f"img{k}", agreement(mask, other))
    assert log.iou.mean == pytest.approx(0.65)
    assert log.iou.minimum == pytest.approx(0.2)
    assert [name for name, _ in log.worst(2)] == ["img3", "img1"]
    assert Summary.of([1.0] * 19 + [0.0]).p05 == pytest.approx(0.95)


def test_ground_truth_perfect_and_inverted_predictions() -> None:
    truth = np.zeros((32, 32), bool)
    truth[8:24, 8:24] = True
    perfect = GroundTruthMetrics()
    perfect.add(truth.astype(np.float32), truth)
    scores = perfect.result()
    assert scores.max_f == pytest.approx(1.0, abs=1e-6)
    assert scores.mae == pytest.approx(0.0)
    assert scores.s_measure == pytest.approx(1.0, abs=1e-6)
    assert scores.e_measure == pytest.approx(1.0, abs=1e-3)
    inverted = GroundTruthMetrics()
    inverted.add((~truth).astype(np.float32), truth)
    bad = inverted.result()
    assert bad.mae == pytest.approx(1.0)
    assert bad.max_f < 0.5


def test_empty_ground_truth_is_counted_not_crashing() -> None:
    metric = GroundTruthMetrics()
    metric.add(np.zeros((16, 16), np.float32), np.zeros((16, 16), bool))
    metric.add(np.ones((16, 16), np.float32), np.ones((16, 16), bool))
    scores = metric.result()
    assert scores.images == 2 and scores.empty_masks == 1
    assert np.isfinite([scores.max_f, scores.mae, scores.s_measure, scores.e_measure]).all()
    assert scores.mae == 0.0
