"""The held-out check ``quantize`` runs on its own output, and the search if it misses.

The yardstick is the noise floor measured on the same held-out photos: the
original FP32 model against itself on each photo re-saved as JPEG 95
(:mod:`quantkit.accuracy.noise`). If the INT8 model's mean IoU against FP32 is at
least the floor's less a tolerance, it moves the masks no more than an invisible
re-save does, and it ships as is. The tolerance is ``--noise-margin`` or twice
the standard error of the per-photo gap, whichever is larger, and at most
``MAX_TOLERANCE``: on the 5 bundled held-out photos the default INT8 u2netp sat
0.006 below the floor (twice the standard error: 0.009), which a search could
not improve (7 candidates, 17 s, no gain) - the sampling noise of five photos. If not, the bounded search
(:mod:`quantkit.accuracy.search`) keeps the layers that lose the most signal in
float until it is, within a latency budget. A fixed ``--target-iou`` replaces the
floor when the user sets one.

The check scores the model that ships: the INT8 model is calibrated on the photos
that are not held out, and no refit follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import onnx

from quantkit.accuracy.agreement import AgreementLog, Summary
from quantkit.accuracy.heldout import HeldOut
from quantkit.accuracy.noise import Within
from quantkit.accuracy.search import SearchLimits, SearchResult, search_islands
from quantkit.accuracy.sensitivity import LayerLoss, layer_losses
from quantkit.graph.shapes import conv_macs, light_copy
from quantkit.progress import Progress

# The sampling error of a few photos widens the tolerance, but never past this: a model that
# breaks on one photo has a huge spread, and must not hide behind it (8-bit weights on an AVX2
# CPU without VNNI: held-out IoU 0.798 against a floor of 0.972, standard error 0.087).
MAX_TOLERANCE = 0.02


@dataclass(frozen=True)
class CheckReport:
    photos: tuple[str, ...]
    floor: Summary  # FP32 vs FP32 on the JPEG-95 re-save
    before: Summary  # INT8 vs FP32 before the search
    final: Summary  # INT8 vs FP32 as shipped
    beyond_floor: float  # share of photos where INT8 moved the mask more than the re-save
    target: float
    target_is_floor: bool
    tolerance: float  # how far below the floor still counts as within it (margin or sampling error)
    search: SearchResult | None
    losses: tuple[LayerLoss, ...]
    label: str = "held-out check"

    @property
    def gap(self) -> float:
        """INT8 mean IoU minus the noise floor's: >= 0 means within the noise."""
        return self.final.mean - self.floor.mean

    def summary(self) -> str:
        if self.gap >= 0:
            where = "within the noise"
        elif self.gap >= -self.tolerance:
            where = f"{-self.gap:.4f} below it, within the tolerance {self.tolerance:.4f}"
        else:
            where = f"{-self.gap:.4f} below it, beyond the tolerance {self.tolerance:.4f}"
        return (
            f"IoU vs FP32 mean {self.final.mean:.4f} (p05 {self.final.p05:.4f}) "
            f"on {len(self.photos)} photos; "
            f"JPEG-95 noise floor {self.floor.mean:.4f}: {where}"
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "images": list(self.photos),
            "noise_floor": {"perturbation": "jpeg95", **self.floor.to_dict()},
            "iou_before_search": self.before.to_dict(),
            "iou_final": self.final.to_dict(),
            "beyond_floor_fraction": self.beyond_floor,
            "target_iou": self.target,
            "tolerance": self.tolerance,
            "target": "noise floor" if self.target_is_floor else "--target-iou",
            "search": self.search.to_dict() if self.search else None,
            "worst_layers": [loss.to_dict() for loss in self.losses[:8]],
        }


@dataclass(frozen=True)
class CheckSettings:
    target_iou: float | None  # None: the noise floor less ``noise_margin``
    noise_margin: float
    limits: SearchLimits  # its target is replaced by the one decided here
    search: bool = True


def check_and_search(
    held: HeldOut,
    quantized: Path,
    float_path: Path,
    requantize: Callable[[tuple[str, ...]], Path],
    settings: CheckSettings,
    progress: Progress,
    work: Path,
) -> CheckReport:
    """Score ``quantized`` on ``held``; if it misses the target, search for float islands.

    ``requantize(float_nodes)`` writes a model with those nodes kept in float and
    returns its path; the search calls it once per candidate.
    """
    progress.start("checking masks on held-out photos")
    baseline = held.score(quantized)
    floor_based = settings.target_iou is None
    _, error = Within(baseline, held.floor).paired_gap()
    tolerance = min(max(settings.noise_margin, 2 * error), MAX_TOLERANCE) if floor_based else 0.0
    target = held.floor.iou.mean - tolerance if floor_based else float(settings.target_iou or 0)
    search: SearchResult | None = None
    losses: list[LayerLoss] = []
    final = baseline
    if baseline.iou.mean < target and settings.search:
        progress.start("ranking layers by signal lost")
        losses = layer_losses(float_path, quantized, held.feeds_in_order(), work)
        float_model = light_copy(onnx.load(str(float_path)))  # the search reads structure and shapes only
        macs = conv_macs(float_model)
        total = max(sum(macs.values()), 1)

        def evaluate(nodes: tuple[str, ...]) -> AgreementLog:
            candidate = requantize(nodes)
            log = held.score(candidate)
            candidate.unlink(missing_ok=True)
            return log

        progress.start("searching for layers to keep in float")
        limits = replace(settings.limits, target_iou=target)
        search = search_islands(
            float_model,
            losses,
            baseline,
            evaluate,
            lambda nodes: sum(macs.get(n, 0) for n in nodes) / total,
            limits,
            on_try=lambda _: progress.advance(),
        )
        final = search.final
    return CheckReport(
        photos=tuple(held.names),
        floor=held.floor.iou,
        before=baseline.iou,
        final=final.iou,
        beyond_floor=Within(final, held.floor).beyond_floor,
        target=target,
        target_is_floor=floor_based,
        tolerance=tolerance,
        search=search,
        losses=tuple(losses),
    )
