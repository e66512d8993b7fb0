"""Ground-truth saliency metrics - max F-measure, MAE, S-measure, E-measure - in numpy alone.

Why this module exists: these are the four numbers salient-object-detection papers
report, so quantkit reports them too, and until now took them from ``pysodmetrics``.
That package drags in scikit-learn, scikit-image and OpenCV and pins
scikit-image < 0.26, which rembg >= 2.0.86 cannot live with. This module computes
the same numbers as quantkit's use of ``pysodmetrics`` 1.6.2, from 256-bin
histograms, so nothing but numpy is needed.

What "the same" means, i.e. the conventions of ``pysodmetrics`` (which follow the
authors' MATLAB code) that are kept here on purpose:

* the prediction is quantized to 8 bits (``rint(p * 255)``) and then stretched so
  its smallest value becomes 0 and its largest 1 (MATLAB's ``mapminmax``), unless
  it is constant. All four metrics see the stretched map, so a faint, low-contrast
  prediction is scored as if it had full contrast;
* the 256 thresholds are applied to ``floor(stretched * 255)``;
* max F and max E are the maximum over thresholds of the curve averaged over images
  (not the mean of per-image maxima);
* an image whose truth has no foreground scores F = 0 at every threshold;
* E-measure divides by (pixels - 1), so a perfect prediction scores
  pixels / (pixels - 1), a hair above 1;
* an S-measure quadrant whose truth and prediction are both flat scores 1 or 0
  depending on floating-point rounding in the reference code, reproduced here
  (see ``_flat_quadrant_ssim``). A truth whose centroid lies in its last row or
  column leaves a quadrant empty, and the reference code's S-measure is then NaN,
  for the image and for the mean: that is reproduced too.

The accumulator keeps two 256-entry curves and a few sums, never per-image arrays,
so its memory does not grow with the number of images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVELS = 256
BETA2 = 0.3  # β² of the F-measure: precision weighs more than recall (Achanta et al. 2009)
ALPHA = 0.5  # S-measure weight of the object term against the region term (Fan et al. 2017)
EPS = float(np.spacing(1))  # MATLAB's eps, the guard the reference code adds to denominators

_LEVEL_VALUES = np.arange(LEVELS, dtype=np.float64) / 255.0
_THRESHOLDS = np.arange(LEVELS)


@dataclass(frozen=True)
class SaliencyScores:
    max_f: float  # max over thresholds of the mean F-measure (β² = 0.3)
    mae: float  # mean absolute error
    s_measure: float  # structure measure (α = 0.5)
    e_measure: float  # max over thresholds of the mean enhanced-alignment measure
    images: int
    empty_masks: int  # truths with no foreground (F is 0 there by convention)

    def to_dict(self) -> dict[str, float | int]:
        return {
            "max_f": self.max_f,
            "mae": self.mae,
            "s_measure": self.s_measure,
            "e_measure": self.e_measure,
            "images": self.images,
            "empty_masks": self.empty_masks,
        }


@dataclass(frozen=True)
class _Histogram:
    """One image, reduced to pixel counts per (quadrant, truth, prediction level).

    ``counts[r, c, t, k]`` counts the pixels in the lower (``r = 1``) or upper rows
    and the right (``c = 1``) or left columns of the S-measure split, whose truth is
    ``t`` and whose 8-bit prediction is ``k``. ``values[k]`` is what level ``k``
    means after the min-max stretch.
    """

    counts: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]
    split: tuple[int, int]

    @property
    def background(self) -> np.ndarray:
        return np.asarray(self.counts[:, :, 0].sum(axis=(0, 1)))

    @property
    def foreground(self) -> np.ndarray:
        return np.asarray(self.counts[:, :, 1].sum(axis=(0, 1)))


@dataclass(frozen=True)
class ImageTerms:
    """What one image adds to the running sums: 4 KB, picklable.

    ``compare`` on Ray computes these on the workers and sends them to the driver,
    which adds them in photo order - the same additions in the same order as a local
    run, so the figures are the same to the last bit.
    """

    f_curve: np.ndarray  # F-measure per threshold
    e_curve: np.ndarray  # E-measure per threshold
    mae: float
    s_measure: float
    empty: bool  # the truth has no foreground


def image_terms(prediction: np.ndarray, truth: np.ndarray) -> ImageTerms:
    """Score one image: ``prediction`` in [0, 1]; ``truth`` foreground where > 0.5 (uint8: > 127)."""
    levels, foreground = _prepare(prediction, truth)
    histogram = _histogram(levels, foreground)
    background, foreground_counts = histogram.background, histogram.foreground
    true_pos, false_pos = _positives_per_threshold(histogram.values, foreground_counts, background)
    pixels = levels.size
    truth_pixels = int(foreground_counts.sum())
    return ImageTerms(
        f_curve=_f_curve(true_pos, false_pos, truth_pixels),
        e_curve=_e_curve(true_pos, false_pos, truth_pixels, pixels),
        mae=_mae(histogram.values, foreground_counts, background),
        s_measure=_s_measure(histogram),
        empty=truth_pixels == 0,
    )


class SaliencyMetrics:
    """Streaming max F-measure, MAE, S-measure and E-measure over (prediction, truth) pairs.

    Feed one image at a time with :meth:`add` (or its :func:`image_terms` with
    :meth:`add_terms`); :meth:`result` can be called at any point. Memory is constant
    in the number of images: only running sums are kept.
    """

    def __init__(self) -> None:
        self._f_curve = np.zeros(LEVELS)
        self._e_curve = np.zeros(LEVELS)
        self._mae = 0.0
        self._s_measure = 0.0
        self._images = 0
        self._empty = 0

    def add(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        """Score one image: ``prediction`` in [0, 1]; ``truth`` foreground where > 0.5 (uint8: > 127)."""
        self.add_terms(image_terms(prediction, truth))

    def add_terms(self, terms: ImageTerms) -> None:
        self._f_curve += terms.f_curve
        self._e_curve += terms.e_curve
        self._mae += terms.mae
        self._s_measure += terms.s_measure
        self._images += 1
        self._empty += int(terms.empty)

    def result(self) -> SaliencyScores:
        if self._images == 0:
            nan = float("nan")
            return SaliencyScores(nan, nan, nan, nan, 0, 0)
        n = self._images
        return SaliencyScores(
            max_f=float(np.max(self._f_curve / n)),
            mae=self._mae / n,
            s_measure=self._s_measure / n,
            e_measure=float(np.max(self._e_curve / n)),
            images=n,
            empty_masks=self._empty,
        )


def _prepare(prediction: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-bit prediction levels and boolean truth, the way quantkit has always fed pysodmetrics."""
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction and truth shapes differ: {prediction.shape} vs {truth.shape}")
    if prediction.ndim != 2 or prediction.size == 0:
        raise ValueError(f"expected a non-empty HxW mask, got shape {prediction.shape}")
    if not np.isfinite(prediction).all():
        raise ValueError("prediction contains NaN or infinity")
    levels = np.clip(np.rint(prediction * 255.0), 0, 255).astype(np.uint8)
    foreground = truth > (127 if truth.dtype == np.uint8 else 0.5)
    return levels, foreground


def _histogram(levels: np.ndarray, foreground: np.ndarray) -> _Histogram:
    """One pass over the pixels; every metric below works on these 2048 counts."""
    split = _split_point(foreground)
    index = np.left_shift(foreground, 8, dtype=np.intp)
    index += levels
    index[split[0] :] += 4 * LEVELS
    index[:, split[1] :] += 2 * LEVELS
    counts = np.bincount(index.ravel(), minlength=8 * LEVELS).reshape(2, 2, 2, LEVELS)
    height, width = levels.shape
    return _Histogram(counts, _stretched_values(levels), (height, width), split)


def _stretched_values(levels: np.ndarray) -> np.ndarray:
    """The value each 8-bit level takes after the min-max stretch (MATLAB ``mapminmax(im2double(p))``).

    Computed with the same float operations as the reference, so values match bit for
    bit; levels outside the image's range are clipped (they have no pixels).
    """
    low, high = float(_LEVEL_VALUES[levels.min()]), float(_LEVEL_VALUES[levels.max()])
    if low == high:
        return _LEVEL_VALUES
    return np.asarray((np.clip(_LEVEL_VALUES, low, high) - low) / (high - low))


def _split_point(foreground: np.ndarray) -> tuple[int, int]:
    """Rows and columns of the S-measure's upper-left quadrant: through the rounded truth centroid.

    The ``+ 1`` is MATLAB's inclusive ``1:X``: the centroid row and column belong to
    the upper-left quadrant. A truth without foreground has no region term; all its
    pixels go to the first quadrant.
    """
    height, width = foreground.shape
    rows = np.count_nonzero(foreground, axis=1)
    total = int(rows.sum())
    if total == 0:
        return height, width
    cols = np.count_nonzero(foreground, axis=0)
    cy = round(int(rows @ np.arange(height)) / total)
    cx = round(int(cols @ np.arange(width)) / total)
    return cy + 1, cx + 1


def _positives_per_threshold(
    values: np.ndarray, foreground: np.ndarray, background: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives when the prediction is cut at ``floor(value * 255) >= t``, t = 0..255."""
    bins = (values * 255).astype(np.uint8)  # non-decreasing in the level
    first_level = np.searchsorted(bins, _THRESHOLDS, side="left")
    return _at_or_above(foreground)[first_level], _at_or_above(background)[first_level]


def _at_or_above(counts: np.ndarray) -> np.ndarray:
    """``out[k]`` = pixels at level k or higher; ``out[256]`` = 0."""
    out = np.zeros(LEVELS + 1, dtype=np.int64)
    out[:LEVELS] = np.cumsum(counts[::-1])[::-1]
    return out


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ratio, 0 where the denominator is 0 (the reference's convention for 0/0)."""
    out = np.zeros(np.shape(denominator))
    np.divide(numerator, denominator, out=out, where=np.asarray(denominator) != 0)
    return out


def _f_curve(true_pos: np.ndarray, false_pos: np.ndarray, truth_pixels: int) -> np.ndarray:
    """F-measure per threshold, F = (1 + β²)PR / (β²P + R) (Achanta et al., CVPR 2009).

    The harmonic-style mean of precision and recall of the binarized map; β² = 0.3
    weighs precision more, the convention of saliency benchmarks. Where nothing is
    predicted, or the truth is empty, the undefined ratios count as 0.
    """
    precision = _divide(true_pos, true_pos + false_pos)
    recall = _divide(true_pos, np.full(LEVELS, truth_pixels))
    return _divide((1 + BETA2) * precision * recall, BETA2 * precision + recall)


def _e_curve(true_pos: np.ndarray, false_pos: np.ndarray, truth_pixels: int, pixels: int) -> np.ndarray:
    """Enhanced-alignment measure per threshold (Fan et al., "Enhanced-alignment Measure for Binary
    Foreground Map Evaluation", IJCAI 2018).

    Both maps are centred on their means; each pixel's alignment 2ab / (a² + b²) of the
    two centred values is mapped to (1 + alignment)² / 4 and averaged, so it captures
    pixel-level agreement and image-level statistics at once. A binarized map takes
    two values, so only four (prediction, truth) combinations exist, weighted by
    their pixel counts. For an empty (or full) truth the alignment degenerates and the
    reference counts the pixels predicted background (or foreground).
    """
    predicted = true_pos + false_pos
    not_predicted = pixels - predicted
    if truth_pixels == 0:
        enhanced_sum = not_predicted.astype(np.float64)
    elif truth_pixels == pixels:
        enhanced_sum = predicted.astype(np.float64)
    else:
        mean_pred = predicted / pixels
        mean_truth = truth_pixels / pixels
        false_neg = truth_pixels - true_pos
        true_neg = not_predicted - false_neg
        pred_fg, pred_bg = 1 - mean_pred, 0 - mean_pred
        truth_fg, truth_bg = 1 - mean_truth, 0 - mean_truth
        enhanced_sum = (
            _enhanced(pred_fg, truth_fg) * true_pos
            + _enhanced(pred_fg, truth_bg) * false_pos
            + _enhanced(pred_bg, truth_fg) * false_neg
            + _enhanced(pred_bg, truth_bg) * true_neg
        )
    return np.asarray(enhanced_sum / (pixels - 1 + EPS))


def _enhanced(pred: np.ndarray, truth: float) -> np.ndarray:
    alignment = 2 * (pred * truth) / (pred**2 + truth**2 + EPS)
    return np.asarray((alignment + 1) ** 2 / 4)


def _mae(values: np.ndarray, foreground: np.ndarray, background: np.ndarray) -> float:
    """Mean absolute error of the stretched map against the 0/1 truth (Perazzi et al., CVPR 2012)."""
    pixels = int(foreground.sum() + background.sum())
    return float((foreground @ (1 - values) + background @ values) / pixels)


def _s_measure(histogram: _Histogram) -> float:
    """Structure measure (Fan et al., "Structure-measure: A New Way to Evaluate Foreground Maps", ICCV 2017).

    S = α·S_object + (1 - α)·S_region, clipped at 0. S_object compares the
    prediction's distribution inside the object and inside the background with the
    ideal (mean 1 there, 0 here, no spread); S_region splits the image into four
    quadrants at the truth's centroid and averages their SSIM-like structural
    similarity, weighted by area. For an all-background truth S is 1 - mean(pred);
    for an all-foreground truth, mean(pred).
    """
    values = histogram.values
    foreground, background = histogram.foreground, histogram.background
    truth_pixels = int(foreground.sum())
    pixels = truth_pixels + int(background.sum())
    if truth_pixels == 0:
        return float(1 - (foreground + background) @ values / pixels)
    if truth_pixels == pixels:
        return float((foreground + background) @ values / pixels)
    share = truth_pixels / pixels
    object_score = _object_similarity(values, foreground) * share + _object_similarity(
        1 - values, background
    ) * (1 - share)
    total = object_score * ALPHA + _region_similarity(histogram) * (1 - ALPHA)
    return float(np.maximum(0.0, total))  # np.maximum keeps a NaN region score


def _object_similarity(values: np.ndarray, counts: np.ndarray) -> float:
    """2μ / (μ² + 1 + σ): 1 only for a region predicted uniformly at 1 (σ with ddof = 1)."""
    n = int(counts.sum())
    mean = float(counts @ values / n)
    spread = math.sqrt(float(counts @ (values - mean) ** 2) / (n - 1)) if n > 1 else 0.0
    return 2 * mean / (mean**2 + 1 + spread + EPS)


def _region_similarity(histogram: _Histogram) -> float:
    """Area-weighted SSIM of the four quadrants around the truth's centroid."""
    height, width = histogram.shape
    cy, cx = histogram.split
    area = height * width
    weight_lt = cx * cy / area
    weight_rt = cy * (width - cx) / area
    weight_lb = (height - cy) * cx / area
    weight_rb = 1 - weight_lt - weight_rt - weight_lb
    rows, cols = (cy, height - cy), (cx, width - cx)

    def quadrant(r: int, c: int) -> float:
        return _ssim(histogram.counts[r, c], histogram.values, rows[r], cols[c], width)

    return (
        quadrant(0, 0) * weight_lt
        + quadrant(0, 1) * weight_rt
        + quadrant(1, 0) * weight_lb
        + quadrant(1, 1) * weight_rb
    )


def _ssim(counts: np.ndarray, values: np.ndarray, rows: int, cols: int, width: int) -> float:
    """The S-measure's SSIM of one quadrant: 4 μx μy σxy / ((μx² + μy²)(σx² + σy²)).

    ``counts[t, k]``: pixels with truth ``t`` and level ``k``. Both variances use
    (n - 1 + eps); 0/0 is 1 (both maps flat), otherwise a zero numerator is 0. An
    empty quadrant has no mean: NaN, as in the reference.
    """
    pixels = rows * cols
    if pixels == 0:
        return float("nan")
    background, foreground = counts
    either = background + foreground
    present = np.flatnonzero(either)
    truth_pixels = int(foreground.sum())
    if present.size == 1 and truth_pixels in (0, pixels):
        return _flat_quadrant_ssim(float(values[present[0]]), rows, cols, width)
    mean_pred = float(either @ values / pixels)
    mean_truth = truth_pixels / pixels
    centred = values - mean_pred
    denominator = pixels - 1 + EPS
    var_pred = float(either @ centred**2) / denominator
    var_truth = (truth_pixels * (1 - mean_truth) ** 2 + (pixels - truth_pixels) * mean_truth**2) / denominator
    covariance = float(foreground @ centred * (1 - mean_truth) + background @ centred * (0 - mean_truth))
    covariance /= denominator
    numerator = 4 * mean_pred * mean_truth * covariance
    spread = (mean_pred**2 + mean_truth**2) * (var_pred + var_truth)
    if numerator != 0:
        return numerator / (spread + EPS)
    return 1.0 if spread == 0 else 0.0


def _flat_quadrant_ssim(value: float, rows: int, cols: int, width: int) -> float:
    """SSIM of a quadrant where truth and prediction are both constant.

    Both variances are 0, so the score is 0/0 = 1 in exact arithmetic. The
    reference takes the prediction's variance around ``np.mean`` of the quadrant,
    and for most values that mean is not exactly ``value`` (about 70% of a random sample of
    sizes and levels): the variance is ~1e-33 instead of 0 and the score becomes 0. To give
    the same number, take that mean the same way, over a slice of the same shape
    and strides as the reference's (a view into a row-major image ``width`` wide).
    Sums of 0s and 1s are exact, so those skip the allocation.
    """
    if value in (0.0, 1.0):
        return 1.0
    mean = float(np.mean(np.full((rows, width), value)[:, :cols]))
    return 1.0 if mean == value else 0.0
