"""Mask agreement: does a model cut out what the reference cuts out?

IoU of the masks thresholded at 0.5, mean absolute error and the largest
per-pixel difference, on masks exactly as rembg returns them. IoU at 0.5 is a
harsh yardstick - FP32 u2netp against itself on the same photos re-saved as JPEG
quality 95 scores 0.976 on PASCAL-S - which is why ``compare`` reports that
noise floor beside it (:mod:`quantkit.accuracy.noise`).
"""

from __future__ import annotations

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

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "p05": self.p05, "min": self.minimum}


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
