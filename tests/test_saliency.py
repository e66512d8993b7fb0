"""The numpy-only saliency metrics: hand-checkable answers, and agreement with pysodmetrics.

quantkit used to take max F, MAE, S and E from ``pysodmetrics``; ``SaliencyMetrics``
must give the same numbers. Where pysodmetrics is installed the tests compare
against it directly, driven exactly as quantkit drove it; without it those tests
skip and the hand-derived ones still run.

Memory does not grow with the number of images by construction: the accumulator
holds two 256-entry curves and four scalars, never a per-image array.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from quantkit.accuracy.saliency import SaliencyMetrics, SaliencyScores

Pair = tuple[np.ndarray, np.ndarray]
METRICS = ("max_f", "mae", "s_measure", "e_measure")
TOLERANCE = 1e-12  # what is left is float summation order; F and E curves match bit for bit


def score(pairs: Iterable[Pair]) -> SaliencyScores:
    metrics = SaliencyMetrics()
    for prediction, truth in pairs:
        metrics.add(prediction, truth)
    return metrics.result()


def centred_square(size: int = 32, lo: int = 8, hi: int = 24) -> np.ndarray:
    truth = np.zeros((size, size), bool)
    truth[lo:hi, lo:hi] = True
    return truth


def f_all_foreground(share: float) -> float:
    """F-measure (β² = 0.3) when every pixel is predicted foreground: P = share, R = 1."""
    return 1.3 * share / (0.3 * share + 1)


# --- hand-checkable answers ---------------------------------------------------


def test_perfect_prediction() -> None:
    truth = centred_square()
    result = score([(truth.astype(np.float32), truth)])
    pixels = truth.size
    assert result.max_f == 1.0
    assert result.mae == 0.0
    assert result.s_measure == pytest.approx(1.0, abs=1e-12)
    # E-measure divides by (pixels - 1), as the authors' MATLAB code does.
    assert result.e_measure == pytest.approx(pixels / (pixels - 1), rel=1e-12)
    assert (result.images, result.empty_masks) == (1, 0)


def test_inverted_prediction() -> None:
    truth = centred_square()
    result = score([(1.0 - truth.astype(np.float64), truth)])
    pixels = truth.size
    share = truth.mean()
    assert result.mae == 1.0
    # Only threshold 0 (everything foreground) catches any of the object.
    assert result.max_f == pytest.approx(f_all_foreground(share), rel=1e-12)
    assert result.s_measure == 0.0
    # All-foreground: every pixel's centred prediction is 0, alignment 0, enhanced 1/4.
    assert result.e_measure == pytest.approx(pixels / (4 * (pixels - 1)), rel=1e-12)


def test_empty_truth_with_empty_prediction() -> None:
    truth = np.zeros((20, 30), bool)
    result = score([(np.zeros((20, 30)), truth)])
    assert result.max_f == 0.0  # F is 0 for an empty truth, whatever the prediction
    assert result.mae == 0.0
    assert result.s_measure == 1.0  # 1 - mean(prediction)
    assert result.e_measure == pytest.approx(600 / 599, rel=1e-12)  # pixels predicted background
    assert result.empty_masks == 1


def test_empty_truth_with_constant_prediction() -> None:
    truth = np.zeros((20, 30), bool)
    value = 51 / 255  # rint(0.2 * 255) = 51; a constant map is not stretched
    result = score([(np.full((20, 30), 0.2), truth)])
    assert result.max_f == 0.0
    assert result.mae == pytest.approx(value, rel=1e-12)
    assert result.s_measure == pytest.approx(1 - value, rel=1e-12)
    assert result.e_measure == pytest.approx(600 / 599, rel=1e-12)  # thresholds above the value


def test_all_foreground_truth() -> None:
    truth = np.ones((16, 16), bool)
    perfect = score([(np.ones((16, 16)), truth)])
    assert (perfect.max_f, perfect.mae, perfect.s_measure) == (1.0, 0.0, 1.0)
    assert perfect.e_measure == pytest.approx(256 / 255, rel=1e-12)

    half = score([(np.full((16, 16), 0.5), truth)])
    value = 128 / 255  # rint(127.5) = 128
    assert half.max_f == 1.0  # at thresholds up to the value everything is a true positive
    assert half.mae == pytest.approx(1 - value, rel=1e-12)
    assert half.s_measure == pytest.approx(value, rel=1e-12)  # mean(prediction)
    assert half.e_measure == pytest.approx(256 / 255, rel=1e-12)


def test_constant_prediction_on_an_object() -> None:
    truth = centred_square()
    value = 128 / 255
    share = float(truth.mean())
    result = score([(np.full(truth.shape, 0.5, np.float32), truth)])
    assert result.max_f == pytest.approx(f_all_foreground(share), rel=1e-12)
    assert result.mae == pytest.approx(share * (1 - value) + (1 - share) * value, rel=1e-12)
    assert result.e_measure == pytest.approx(truth.size / (4 * (truth.size - 1)), rel=1e-12)
    # Object term 2μ/(μ² + 1 + σ) inside and outside; a flat map has no structure, region term 0.
    object_term = share * 2 * value / (value**2 + 1) + (1 - share) * 2 * (1 - value) / ((1 - value) ** 2 + 1)
    assert result.s_measure == pytest.approx(0.5 * object_term, abs=1e-12)


def test_prediction_is_min_max_stretched() -> None:
    truth = centred_square()
    faint = np.where(truth, 0.6, 0.2)  # two levels: stretched to exactly 0 and 1
    assert score([(faint, truth)]) == score([(truth.astype(np.float64), truth)])


def test_max_is_taken_over_the_mean_curve() -> None:
    square = centred_square()
    empty = np.zeros_like(square)
    result = score([(square.astype(np.float64), square), (empty.astype(np.float64), empty)])
    # Thresholds 1..255: F is 1 for the square and 0 for the empty truth.
    assert result.max_f == 0.5
    assert result.mae == 0.0
    assert result.s_measure == pytest.approx(1.0, abs=1e-12)
    assert result.e_measure == pytest.approx(square.size / (square.size - 1), rel=1e-12)
    assert (result.images, result.empty_masks) == (2, 1)


def test_truth_centroid_on_the_last_row_gives_nan_s_measure() -> None:
    truth = np.zeros((10, 12), bool)
    truth[-1, 3:] = True  # centroid row 9: the lower quadrants are empty, as in pysodmetrics
    prediction = truth.astype(np.float64)
    result = score([(prediction, truth), (centred_square().astype(np.float64), centred_square())])
    assert math.isnan(result.s_measure)
    assert result.mae == 0.0
    assert result.max_f == 1.0


def test_truth_encodings_agree() -> None:
    truth = centred_square()
    prediction = np.linspace(0, 1, truth.size).reshape(truth.shape)
    as_bool = score([(prediction, truth)])
    assert score([(prediction, truth.astype(np.uint8) * 255)]) == as_bool
    assert score([(prediction, np.where(truth, 0.9, 0.1))]) == as_bool
    assert score([(prediction, np.where(truth, 128, 127).astype(np.uint8))]) == as_bool


def test_no_images() -> None:
    result = SaliencyMetrics().result()
    assert all(math.isnan(result.to_dict()[name]) for name in METRICS)
    assert (result.images, result.empty_masks) == (0, 0)


def test_to_dict() -> None:
    result = score([(np.zeros((4, 4)), np.zeros((4, 4), bool))])
    assert result.to_dict() == {
        "max_f": 0.0,
        "mae": 0.0,
        "s_measure": 1.0,
        "e_measure": result.e_measure,
        "images": 1,
        "empty_masks": 1,
    }


@pytest.mark.parametrize(
    ("prediction", "truth"),
    [
        (np.zeros((4, 4)), np.zeros((4, 5), bool)),
        (np.zeros((2, 4, 4)), np.zeros((2, 4, 4), bool)),
        (np.zeros((0, 4)), np.zeros((0, 4), bool)),
        (np.full((4, 4), np.nan), np.zeros((4, 4), bool)),
    ],
)
def test_bad_input_is_an_error(prediction: np.ndarray, truth: np.ndarray) -> None:
    with pytest.raises(ValueError):
        SaliencyMetrics().add(prediction, truth)


# --- agreement with pysodmetrics ------------------------------------------------


def reference(pairs: Iterable[Pair]) -> dict[str, float]:
    """pysodmetrics driven exactly as quantkit.metrics.GroundTruthMetrics drove it."""
    sod = pytest.importorskip("py_sod_metrics")
    fm = sod.FmeasureV2(
        metric_handlers={"fm": sod.FmeasureHandler(with_dynamic=True, with_adaptive=False, beta=0.3)}
    )
    mae, sm, em = sod.MAE(), sod.Smeasure(), sod.Emeasure()
    for prediction, truth in pairs:
        pred = np.clip(np.rint(prediction * 255.0), 0, 255).astype(np.uint8)
        gt = (truth > (127 if truth.dtype == np.uint8 else 0.5)).astype(np.uint8) * 255
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for metric in (fm, mae, sm, em):
                metric.step(pred=pred, gt=gt)
    return {
        "max_f": float(np.nanmax(fm.get_results()["fm"]["dynamic"])),
        "mae": float(mae.get_results()["mae"]),
        "s_measure": float(sm.get_results()["sm"]),
        "e_measure": float(np.nanmax(em.get_results()["em"]["curve"])),
    }


def assert_matches_reference(pairs: list[Pair]) -> None:
    expected = reference(pairs)
    ours = score(pairs).to_dict()
    for name in METRICS:
        a, b = float(ours[name]), expected[name]
        same = (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE)
        assert same, f"{name}: ours {a!r}, pysodmetrics {b!r}"


def blob(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    ry, rx = rng.uniform(1, h), rng.uniform(1, w)
    return np.asarray(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1)


def test_matches_pysodmetrics_on_random_masks() -> None:
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(40):
        shape = (int(rng.integers(1, 50)), int(rng.integers(1, 50)))
        truth = rng.random(shape) < rng.random()
        pairs.append((rng.random(shape).astype(np.float32), truth))
    assert_matches_reference(pairs)
    for pair in pairs:
        assert_matches_reference([pair])


def test_matches_pysodmetrics_on_blobs() -> None:
    rng = np.random.default_rng(1)
    pairs = []
    for _ in range(30):
        shape = (int(rng.integers(20, 90)), int(rng.integers(20, 90)))
        truth = blob(rng, shape)
        noisy = np.clip(truth + rng.normal(0, rng.uniform(0.05, 0.5), shape), 0, 1)
        pairs.append((noisy, truth))
        pairs.append((blob(rng, shape).astype(np.float64) * rng.uniform(0.1, 1), truth))
    assert_matches_reference(pairs)


def test_matches_pysodmetrics_on_flat_quadrants() -> None:
    """Flat prediction over flat truth in a quadrant: the reference's rounding decides 0 or 1."""
    rng = np.random.default_rng(2)
    for _ in range(40):
        h, w = int(rng.integers(6, 80)), int(rng.integers(6, 80))
        truth = np.zeros((h, w), bool)
        truth[1 : h // 3, 1 : w // 3] = True  # two objects on a diagonal: two quadrants hold no object
        truth[2 * h // 3 : h - 1, 2 * w // 3 : w - 1] = True
        constant = np.full((h, w), rng.integers(1, 255) / 255)
        two_level = np.where(truth, rng.integers(0, 256) / 255, constant)
        assert_matches_reference([(constant, truth)])
        assert_matches_reference([(two_level, truth)])


def test_matches_pysodmetrics_on_empty_and_full_truths() -> None:
    rng = np.random.default_rng(3)
    shape = (17, 23)
    pairs = [
        (rng.random(shape), np.zeros(shape, bool)),
        (rng.random(shape) * 0.02, np.zeros(shape, bool)),
        (rng.random(shape), np.ones(shape, bool)),
        (np.full(shape, 0.7), np.ones(shape, bool)),
    ]
    assert_matches_reference(pairs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_matches_pysodmetrics_on_arbitrary_maps(data: st.DataObject) -> None:
    shape = data.draw(st.tuples(st.integers(1, 12), st.integers(1, 12)))
    levels = st.sampled_from([0.0, 0.25, 0.5, 1.0]) | st.floats(0, 1)
    prediction = data.draw(hnp.arrays(np.float64, shape, elements=levels))
    truth = data.draw(hnp.arrays(np.bool_, shape))
    assert_matches_reference([(prediction, truth)])


# --- real masks -------------------------------------------------------------------


def box_blur(mask: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)² window, edges replicated: a soft, u2netp-like prediction."""
    padded = np.pad(mask.astype(np.float64), radius, mode="edge")
    table = np.pad(padded.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    k = 2 * radius + 1
    h, w = mask.shape
    window = table[k : k + h, k : k + w] - table[:h, k : k + w] - table[k : k + h, :w] + table[:h, :w]
    return np.asarray(window / k**2)


def ecssd_pairs(root: Path, count: int = 30) -> dict[str, list[Pair]]:
    truths = [
        np.asarray(Image.open(path).convert("L")) for path in sorted((root / "masks").glob("*.png"))[:count]
    ]
    exact = [(t.astype(np.float64) / 255, t) for t in truths]
    blurred = [(box_blur(t / 255, 6), t) for t in truths]
    shifted = [(box_blur(np.roll(t / 255, (9, -12), axis=(0, 1)), 6), t) for t in truths]
    return {"exact": exact, "blurred": blurred, "shifted": shifted}


@pytest.mark.ecssd
def test_ecssd_masks_rank_degraded_predictions(ecssd: Path) -> None:
    runs = {name: score(pairs) for name, pairs in ecssd_pairs(ecssd).items()}
    exact, blurred, shifted = runs["exact"], runs["blurred"], runs["shifted"]
    assert exact.images == 30
    assert exact.empty_masks == 0
    assert (exact.max_f, exact.mae) == (1.0, 0.0)
    assert exact.s_measure == pytest.approx(1.0, abs=1e-9)  # each SSIM is σ/(σ + eps), a hair under 1
    assert exact.max_f > blurred.max_f > shifted.max_f
    assert exact.mae < blurred.mae < shifted.mae
    assert exact.s_measure > blurred.s_measure > shifted.s_measure
    assert exact.e_measure > blurred.e_measure > shifted.e_measure


@pytest.mark.ecssd
def test_ecssd_matches_pysodmetrics(ecssd: Path) -> None:
    for pairs in ecssd_pairs(ecssd).values():
        assert_matches_reference(pairs)
