"""Mask agreement between models, and ground-truth saliency metrics.

Agreement (does the INT8 model cut out what the FP32 model cuts out?) is IoU of
the masks thresholded at 0.5, mean absolute error and the largest per-pixel
difference, on masks exactly as rembg returns them. Ground-truth metrics are the
ones saliency papers report - max F-measure (β² = 0.3), MAE, S-measure and
E-measure - computed by the maintained ``pysodmetrics`` package, so the numbers
can be set beside published ones.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

THRESHOLD = 0.5


@dataclass(frozen=True)
class Agreement:
    iou: float
    mae: float
    max_abs: float


def agreement(reference: np.ndarray, other: np.ndarray) -> Agreement:
    """Compare two masks in [0, 1] of the same shape."""
    if reference.shape != other.shape:
        raise ValueError(f"mask shapes differ: {reference.shape} vs {other.shape}")
    a = reference >= THRESHOLD
    b = other >= THRESHOLD
    union = int(np.count_nonzero(a | b))
    iou = 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union
    diff = np.abs(reference.astype(np.float64) - other.astype(np.float64))
    return Agreement(iou=float(iou), mae=float(diff.mean()), max_abs=float(diff.max()))


@dataclass(frozen=True)
class Summary:
    mean: float
    p05: float
    minimum: float

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        if not values:
            return cls(float("nan"), float("nan"), float("nan"))
        arr = np.asarray(values, dtype=np.float64)
        return cls(float(arr.mean()), float(np.percentile(arr, 5)), float(arr.min()))


@dataclass
class AgreementLog:
    """Per-image agreement of one model with the reference, and its aggregates."""

    names: list[str] = field(default_factory=list)
    values: list[Agreement] = field(default_factory=list)

    def add(self, name: str, value: Agreement) -> None:
        self.names.append(name)
        self.values.append(value)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def iou(self) -> Summary:
        return Summary.of([v.iou for v in self.values])

    @property
    def mae(self) -> float:
        return float(np.mean([v.mae for v in self.values])) if self.values else float("nan")

    @property
    def max_abs(self) -> float:
        return float(max((v.max_abs for v in self.values), default=float("nan")))

    def worst(self, count: int) -> list[tuple[str, Agreement]]:
        """The ``count`` images with the lowest IoU (ties broken by larger MAE, then name)."""
        order = sorted(
            range(len(self.values)),
            key=lambda i: (self.values[i].iou, -self.values[i].mae, self.names[i]),
        )
        return [(self.names[i], self.values[i]) for i in order[:count]]


@dataclass(frozen=True)
class GroundTruthScores:
    max_f: float
    mae: float
    s_measure: float
    e_measure: float  # max over thresholds of the mean enhanced-alignment measure
    images: int
    empty_masks: int  # ground truths with no foreground (F and E are 0 there by convention)

    def to_dict(self) -> dict[str, float | int]:
        return {
            "max_f": self.max_f,
            "mae": self.mae,
            "s_measure": self.s_measure,
            "e_measure": self.e_measure,
            "images": self.images,
            "empty_masks": self.empty_masks,
        }


class GroundTruthMetrics:
    """Streaming accumulator over (prediction, ground truth) pairs for one model."""

    def __init__(self) -> None:
        import py_sod_metrics as sod  # imported here: it pulls in OpenCV

        self._fm = sod.FmeasureV2(
            metric_handlers={"fm": sod.FmeasureHandler(with_dynamic=True, with_adaptive=False, beta=0.3)}
        )
        self._mae = sod.MAE()
        self._sm = sod.Smeasure()
        self._em = sod.Emeasure()
        self.images = 0
        self.empty = 0

    def add(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        """``prediction`` in [0, 1]; ``truth`` any array where > 0.5 (or > 127) is foreground."""
        pred = np.clip(np.rint(prediction * 255.0), 0, 255).astype(np.uint8)
        gt_bool = truth > (127 if truth.dtype == np.uint8 else 0.5)
        gt = gt_bool.astype(np.uint8) * 255
        if not gt_bool.any():
            self.empty += 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            self._fm.step(pred=pred, gt=gt)
            self._mae.step(pred=pred, gt=gt)
            self._sm.step(pred=pred, gt=gt)
            self._em.step(pred=pred, gt=gt)
        self.images += 1

    def result(self) -> GroundTruthScores:
        if self.images == 0:
            nan = float("nan")
            return GroundTruthScores(nan, nan, nan, nan, 0, 0)
        fm = np.asarray(self._fm.get_results()["fm"]["dynamic"], dtype=np.float64)
        em = np.asarray(self._em.get_results()["em"]["curve"], dtype=np.float64)
        return GroundTruthScores(
            max_f=float(np.nanmax(fm)),
            mae=float(self._mae.get_results()["mae"]),
            s_measure=float(self._sm.get_results()["sm"]),
            e_measure=float(np.nanmax(em)),
            images=self.images,
            empty_masks=self.empty,
        )
