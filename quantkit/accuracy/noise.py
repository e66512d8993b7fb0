"""The noise floor: how far the reference model's own masks move under an invisible change.

Mask IoU at 0.5 is a harsh yardstick. Measured on 281 held-out PASCAL-S photos,
FP32 u2netp compared with *itself* on the same photos re-saved as JPEG quality 95
scores IoU 0.976 (p05 0.883); JPEG q85 0.956; a one-pixel shift 0.926. An INT8
model at 0.975 there is as far from FP32 as a re-save nobody can see - but a bare
0.975 does not say so. So wherever quantkit reports agreement, it reports the
reference model's stability under a JPEG-95 re-encode of the same photo beside
it: one extra inference per photo, with the same pre- and post-processing.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from quantkit.accuracy.agreement import AgreementLog

JPEG_QUALITY = 95


def jpeg_resave(image: Image.Image, quality: int = JPEG_QUALITY) -> Image.Image:
    """``image`` as it comes back from a JPEG save at ``quality`` (Pillow's default 4:2:0)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as resaved:
        resaved.load()
        return resaved.copy()


@dataclass(frozen=True)
class Within:
    """Is a model's agreement within the noise floor (less a margin)?"""

    model: AgreementLog
    floor: AgreementLog

    @property
    def beyond_floor(self) -> float:
        """Share of photos where the model moved the mask more than the re-save did."""
        pairs = zip(self.model.values, self.floor.values, strict=True)
        worse = sum(1 for m, f in pairs if m.iou < f.iou)
        return worse / len(self.model) if len(self.model) else float("nan")

    def paired_gap(self) -> tuple[float, float]:
        """Mean of (model IoU - floor IoU) over photos, and its standard error.

        Both IoUs measure distance from the reference mask on the same photo, so the
        per-photo difference is the paired statistic; its standard error says how far
        the mean gap can wander by the luck of which photos were picked.
        """
        diffs = np.array([m.iou - f.iou for m, f in zip(self.model.values, self.floor.values, strict=True)])
        if len(diffs) < 2:
            return float(diffs.mean()) if len(diffs) else float("nan"), float("inf")
        return float(diffs.mean()), float(diffs.std(ddof=1) / np.sqrt(len(diffs)))

    def misses(self, margin: float) -> list[str]:
        """Which of mean and p05 fall short of the floor's minus ``margin`` (empty: within)."""
        model, floor = self.model.iou, self.floor.iou
        out = []
        if not model.mean >= floor.mean - margin:
            out.append(f"mean IoU {model.mean:.4f} < noise floor {floor.mean:.4f} - {margin}")
        if not model.p05 >= floor.p05 - margin:
            out.append(f"5th-percentile IoU {model.p05:.4f} < noise floor {floor.p05:.4f} - {margin}")
        return out
