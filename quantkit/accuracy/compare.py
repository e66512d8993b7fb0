"""Run several models on the same photos and measure how their masks agree.

The first model is the reference (normally the FP32 original). Photos are
streamed: each is decoded and preprocessed once per input size, run through one
runner per model, post-processed as rembg does, scored, and dropped - only
per-photo numbers are kept, so memory stays flat over any number of photos.
Beside every agreement figure stands the noise floor: the reference model on the
same photo re-saved as JPEG 95 (:mod:`quantkit.accuracy.noise`), one extra
inference per photo. With ground-truth masks, every model is also scored against
them (:mod:`quantkit.accuracy.saliency`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from quantkit.accuracy.agreement import Agreement, AgreementLog, agreement
from quantkit.accuracy.noise import JPEG_QUALITY, Within, jpeg_resave
from quantkit.accuracy.saliency import ImageTerms, SaliencyMetrics, SaliencyScores, image_terms
from quantkit.cluster.photos import RayOptions, map_photos
from quantkit.errors import QuantkitError
from quantkit.files.guard import OutputGuard
from quantkit.isa import IsaInfo, host_isa
from quantkit.model.family import DetectedBy, Detection
from quantkit.model.images import ImageReadError, SkipLog, list_images, open_image
from quantkit.model.masks import predict_mask_array
from quantkit.model.spec import ModelSpec, read_spec
from quantkit.progress import NullProgress, Progress
from quantkit.runtime import open_runner
from quantkit.runtime.base import Runner, RuntimeSettings

# The serving defaults remove uses: memory patterns off costs nothing here and saves ~80 MiB a model.
COMPARE_SESSION = RuntimeSettings(mem_pattern=False)


@dataclass
class ModelScores:
    path: Path
    spec: ModelSpec
    agreement: AgreementLog = field(default_factory=AgreementLog)  # empty for the reference
    truth: SaliencyScores | None = None

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


@dataclass
class CompareReport:
    images_dir: Path
    masks_dir: Path | None
    models: list[ModelScores]
    floor: AgreementLog | None  # reference vs reference on the JPEG-95 re-save; None if skipped
    images: int
    skipped: list[tuple[str, str]]
    missing_masks: list[str]
    settings: RuntimeSettings
    isa: IsaInfo  # the CPU the masks were computed on: INT8 masks can depend on it (quantkit.isa)

    @property
    def reference(self) -> ModelScores:
        return self.models[0]

    @property
    def candidates(self) -> list[ModelScores]:
        return self.models[1:]

    def within(self, model: ModelScores) -> Within | None:
        return None if self.floor is None else Within(model.agreement, self.floor)

    def to_dict(self, worst: int = 10) -> dict[str, Any]:
        ref = self.reference
        floor = None
        if self.floor is not None:
            floor = {
                "perturbation": f"JPEG quality {JPEG_QUALITY} re-save, reference model",
                "iou_mean": self.floor.iou.mean,
                "iou_p05": self.floor.iou.p05,
                "iou_min": self.floor.iou.minimum,
                "mae": self.floor.mae,
            }
        return {
            "images_dir": str(self.images_dir),
            "masks_dir": str(self.masks_dir) if self.masks_dir else None,
            "images": self.images,
            "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
            "missing_masks": self.missing_masks,
            "runtime": self.settings.to_dict(),
            "isa": self.isa.to_dict(),
            "jpeg95": floor,
            "reference": {
                "model": str(ref.path),
                "family": ref.spec.family.name,
                "precision": ref.spec.precision,
                "size_bytes": ref.size_bytes,
                "ground_truth": ref.truth.to_dict() if ref.truth else None,
            },
            "models": [self._model_dict(m, worst) for m in self.candidates],
        }

    def _model_dict(self, model: ModelScores, worst: int) -> dict[str, Any]:
        log = model.agreement
        floor = self.floor

        def photo(name: str, index: int) -> dict[str, Any]:
            a = log.values[index]
            entry: dict[str, Any] = {"image": name, "iou": a.iou, "mae": a.mae, "max_abs_diff": a.max_abs}
            if floor is not None:
                entry["jpeg95_iou"] = floor.values[index].iou
            return entry

        index = {name: k for k, name in enumerate(log.names)}
        within = self.within(model)
        return {
            "model": str(model.path),
            "family": model.spec.family.name,
            "precision": model.spec.precision,
            "size_bytes": model.size_bytes,
            "agreement": {
                "iou": {"mean": log.iou.mean, "p05": log.iou.p05, "min": log.iou.minimum},
                "mae": log.mae,
                "max_abs_diff": log.max_abs,
                "beyond_jpeg95_fraction": within.beyond_floor if within else None,
                "worst": [photo(name, index[name]) for name, _ in log.worst(worst)],
                "per_image": [photo(name, k) for k, name in enumerate(log.names)],
            },
            "ground_truth": model.truth.to_dict() if model.truth else None,
            "ground_truth_delta": _delta(model.truth, self.reference.truth),
        }


def _delta(model: SaliencyScores | None, ref: SaliencyScores | None) -> dict[str, float] | None:
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


@dataclass(frozen=True)
class CompareJob:
    models: list[Path]
    specs: list[ModelSpec]
    images_dir: Path
    files: list[Path]
    masks_dir: Path | None
    noise_floor: bool
    settings: RuntimeSettings
    guard: OutputGuard


def plan_compare(
    models: list[Path],
    *,
    images: Path,
    masks: Path | None = None,
    limit: int | None = None,
    family: str | None = None,
    noise_floor: bool = True,
    settings: RuntimeSettings | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> CompareJob:
    """Read and check every input before any work; the guard then checks the outputs."""
    progress = progress or NullProgress()
    if len(models) < 2:
        raise QuantkitError("compare needs at least two models: the reference (FP32) first, then the others")
    if masks is not None and not masks.is_dir():
        raise QuantkitError(f"mask folder {masks} does not exist")
    specs = [read_spec(path, family) for path in models]
    reference = specs[0].detection
    if reference.by is not DetectedBy.INPUT_SIZE:  # a quantized copy's name often says nothing
        specs[1:] = [
            replace(
                read_spec(s.path, reference.family.name),
                detection=Detection(reference.family, DetectedBy.REFERENCE),
            )
            if s.detection.by is DetectedBy.INPUT_SIZE
            else s
            for s in specs[1:]
        ]
    for spec in specs:
        if spec.detection.note:
            progress.warn(f"{spec.path.name}: {spec.detection.note}")
    files = list_images(images, limit=limit)
    guard = OutputGuard(force=force)
    guard.add_inputs([*models, images, *files, *([masks] if masks else [])])
    return CompareJob(models, specs, images, files, masks, noise_floor, settings or COMPARE_SESSION, guard)


@dataclass(frozen=True)
class PhotoScores:
    """What compare keeps of one photo: a few numbers, picklable, so a Ray actor can send them back."""

    skipped: str | None = None  # why the photo could not be read; nothing else is set then
    agreement: tuple[Agreement, ...] = ()  # each candidate's mask against the reference's
    floor: Agreement | None = None  # the reference's mask of the JPEG-95 re-save against its own
    truth: tuple[ImageTerms, ...] | None = None  # each model against the ground truth; None: no mask


@dataclass(frozen=True)
class ScorePhotos:
    """compare's work on one photo, for :func:`quantkit.cluster.photos.map_photos`.

    Opened once per process - here, or on each Ray actor - with one runner per model.
    """

    specs: tuple[ModelSpec, ...]
    settings: RuntimeSettings
    noise_floor: bool
    masks_dir: Path | None

    def with_settings(self, settings: RuntimeSettings) -> ScorePhotos:
        return replace(self, settings=settings)

    def open(self) -> Callable[[Path], PhotoScores]:
        runners = [open_runner(spec.path, self.settings, spec.family.mask_output) for spec in self.specs]
        return partial(self.score, runners)

    def score(self, runners: list[Runner], path: Path) -> PhotoScores:
        try:
            image = open_image(path)
        except ImageReadError as exc:
            return PhotoScores(skipped=exc.message)
        masks = [predict_mask_array(r, s, image) for r, s in zip(runners, self.specs, strict=True)]
        floor = None
        if self.noise_floor:
            floor = agreement(masks[0], predict_mask_array(runners[0], self.specs[0], jpeg_resave(image)))
        truth = None
        if self.masks_dir is not None:
            expected = load_truth(self.masks_dir, path, image.size)
            if expected is not None:
                truth = tuple(image_terms(mask, expected) for mask in masks)
        return PhotoScores(
            agreement=tuple(agreement(masks[0], mask) for mask in masks[1:]), floor=floor, truth=truth
        )


def run_compare(
    job: CompareJob, progress: Progress | None = None, ray: RayOptions | None = None
) -> CompareReport:
    """Score every photo (here, or on the Ray cluster of ``ray``) and aggregate in photo order."""
    progress = progress or NullProgress()
    work = ScorePhotos(tuple(job.specs), job.settings, job.noise_floor, job.masks_dir)
    scores = [ModelScores(path, spec) for path, spec in zip(job.models, job.specs, strict=True)]
    truth_metrics = [SaliencyMetrics() for _ in job.models] if job.masks_dir else []
    floor = AgreementLog() if job.noise_floor else None
    skips = SkipLog()
    missing: list[str] = []
    count = 0
    label = f"comparing {len(job.models)} models"
    with map_photos(work, job.files, label=label, progress=progress, ray=ray) as photos:
        for path, photo in zip(job.files, photos, strict=True):
            if photo.skipped is not None:
                skips.add(path, photo.skipped)
                continue
            for score, value in zip(scores[1:], photo.agreement, strict=True):
                score.agreement.add(path.name, value)
            if floor is not None and photo.floor is not None:
                floor.add(path.name, photo.floor)
            if job.masks_dir is not None:
                if photo.truth is None:
                    missing.append(path.name)
                else:
                    for metric, terms in zip(truth_metrics, photo.truth, strict=True):
                        metric.add_terms(terms)
            count += 1
    for _, reason in skips.skipped:
        progress.warn(f"skipped {reason}")
    if count == 0:
        raise QuantkitError(f"none of the {len(job.files)} images in {job.images_dir} could be read")
    if job.masks_dir is not None:
        if missing:
            progress.warn(f"{len(missing)} images have no ground-truth mask in {job.masks_dir}")
        for score, metric in zip(scores, truth_metrics, strict=True):
            scores_ = metric.result()
            score.truth = scores_ if scores_.images else None
    return CompareReport(
        images_dir=job.images_dir,
        masks_dir=job.masks_dir,
        models=scores,
        floor=floor,
        images=count,
        skipped=[(p.name, r) for p, r in skips.skipped],
        missing_masks=missing,
        settings=job.settings,
        isa=host_isa(),
    )
