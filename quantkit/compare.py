"""Run several models on the same photos and measure how their masks agree.

The first model is the reference (normally the FP32 original). Photos are
streamed: each is decoded and preprocessed once, run through one session per
model, post-processed as rembg does, scored, and dropped - only per-photo
numbers are kept, so memory stays flat over any number of photos. With
ground-truth masks, every model is also scored against them, and the deltas
against the reference are what the accuracy gate checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from quantkit.errors import QuantkitError
from quantkit.images import ImageReadError, SkipLog, iter_images, list_images, open_image
from quantkit.masks import predict_mask
from quantkit.metrics import AgreementLog, GroundTruthMetrics, GroundTruthScores, agreement
from quantkit.progress import NullProgress, Progress
from quantkit.session import SessionSettings, make_session
from quantkit.spec import ModelSpec, read_spec


@dataclass
class ModelScores:
    path: Path
    spec: ModelSpec
    agreement: AgreementLog = field(default_factory=AgreementLog)  # empty for the reference
    truth: GroundTruthScores | None = None


@dataclass
class CompareReport:
    images_dir: Path
    masks_dir: Path | None
    models: list[ModelScores]
    images: int
    skipped: list[tuple[str, str]]
    missing_masks: list[str]

    @property
    def reference(self) -> ModelScores:
        return self.models[0]

    @property
    def candidates(self) -> list[ModelScores]:
        return self.models[1:]

    def to_dict(self, worst: int = 10) -> dict[str, object]:
        ref = self.reference
        out: dict[str, object] = {
            "images_dir": str(self.images_dir),
            "masks_dir": str(self.masks_dir) if self.masks_dir else None,
            "images": self.images,
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
            "missing_masks": self.missing_masks,
            "reference": {"model": str(ref.path), "ground_truth": ref.truth.to_dict() if ref.truth else None},
            "models": [],
        }
        models: list[dict[str, object]] = []
        for m in self.candidates:
            log = m.agreement
            iou = log.iou
            entry: dict[str, object] = {
                "model": str(m.path),
                "agreement": {
                    "iou": {"mean": iou.mean, "p05": iou.p05, "min": iou.minimum},
                    "mae": log.mae,
                    "max_abs_diff": log.max_abs,
                    "worst": [
                        {"image": name, "iou": a.iou, "mae": a.mae, "max_abs_diff": a.max_abs}
                        for name, a in log.worst(worst)
                    ],
                    "per_image": [
                        {"image": name, "iou": a.iou, "mae": a.mae, "max_abs_diff": a.max_abs}
                        for name, a in zip(log.names, log.values, strict=True)
                    ],
                },
                "ground_truth": m.truth.to_dict() if m.truth else None,
                "ground_truth_delta": _delta(m.truth, ref.truth),
            }
            models.append(entry)
        out["models"] = models
        return out


def _delta(model: GroundTruthScores | None, ref: GroundTruthScores | None) -> dict[str, float] | None:
    if model is None or ref is None:
        return None
    return {
        "max_f": model.max_f - ref.max_f,
        "mae": model.mae - ref.mae,
        "s_measure": model.s_measure - ref.s_measure,
        "e_measure": model.e_measure - ref.e_measure,
    }


def load_truth(masks_dir: Path, image: Path, size: tuple[int, int]) -> np.ndarray | None:
    """Ground-truth mask for ``image`` (same stem, .png), as a bool array at the image's size."""
    path = masks_dir / f"{image.stem}.png"
    if not path.is_file():
        return None
    try:
        mask = open_image(path).convert("L")
    except ImageReadError:
        return None
    if mask.size != size:
        mask = mask.resize(size, Image.Resampling.NEAREST)
    return np.asarray(mask) > 127


def compare_models(
    models: list[Path],
    images_dir: Path,
    *,
    masks_dir: Path | None = None,
    limit: int | None = None,
    settings: SessionSettings | None = None,
    progress: Progress | None = None,
) -> CompareReport:
    if len(models) < 2:
        raise QuantkitError("compare needs at least two models: the reference (FP32) first, then the others")
    if masks_dir is not None and not masks_dir.is_dir():
        raise QuantkitError(f"mask folder {masks_dir} does not exist")
    progress = progress or NullProgress()
    specs = [read_spec(path) for path in models]
    sessions = [make_session(path, settings) for path in models]
    scores = [ModelScores(path, spec) for path, spec in zip(models, specs, strict=True)]
    truth_metrics = [GroundTruthMetrics() for _ in models] if masks_dir else []
    files = list_images(images_dir, limit=limit)
    skips = SkipLog()
    missing: list[str] = []
    count = 0
    progress.start(f"comparing {len(models)} models", len(files))
    for path, image in iter_images(files, skips):
        masks = [predict_mask(session, spec, image) for session, spec in zip(sessions, specs, strict=True)]
        for score, mask in zip(scores[1:], masks[1:], strict=True):
            score.agreement.add(path.name, agreement(masks[0], mask))
        if masks_dir is not None:
            truth = load_truth(masks_dir, path, image.size)
            if truth is None:
                missing.append(path.name)
            else:
                for metric, mask in zip(truth_metrics, masks, strict=True):
                    metric.add(mask, truth)
        count += 1
        progress.advance()
    for _, reason in skips.skipped:
        progress.warn(f"skipped {reason}")
    if count == 0:
        raise QuantkitError(f"none of the {len(files)} images in {images_dir} could be read")
    if masks_dir is not None:
        if missing:
            progress.warn(f"{len(missing)} images have no ground-truth mask in {masks_dir}")
        for score, metric in zip(scores, truth_metrics, strict=True):
            score.truth = metric.result() if metric.images else None
    return CompareReport(
        images_dir=images_dir,
        masks_dir=masks_dir,
        models=scores,
        images=count,
        skipped=[(p.name, r) for p, r in skips.skipped],
        missing_masks=missing,
    )
