"""Mixed precision to a target: keep the fewest, cheapest nodes in float.

After offset absorption and equalisation most of u2netp quantizes well, but a
model the recipe has not met before may still have a layer that does not. This
search asks the mask metric itself, on held-out photos: it ranks convolutions
by how much signal they lose (:mod:`quantkit.sensitivity`), tries keeping each
suspect - alone, or with the ops that feed it - in float, and keeps the candidate
that buys the most IoU, until the target is met, nothing helps, or the time
budget runs out. Every quantization in the loop reuses the cached calibration,
so a candidate costs one ``quantize_static`` and one pass over the held-out set.
The order of candidates and the tie-breaks are fixed, so the same inputs give
the same choices.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import onnx

from quantkit.metrics import AgreementLog
from quantkit.sensitivity import LayerLoss, island


@dataclass(frozen=True)
class IslandChoice:
    anchor: str  # the convolution that lost the most signal
    nodes: tuple[str, ...]  # everything kept in float for it
    iou_before: float
    iou_after: float
    macs_share: float
    slowdown: float  # latency of the candidate over the all-INT8 model, minus 1

    def to_dict(self) -> dict[str, object]:
        return {
            "anchor": self.anchor,
            "nodes": list(self.nodes),
            "iou_before": round(self.iou_before, 5),
            "iou_after": round(self.iou_after, 5),
            "iou_gain": round(self.iou_after - self.iou_before, 5),
            "float_macs_share": round(self.macs_share, 5),
            "slowdown": round(self.slowdown, 4),
        }


@dataclass
class SearchResult:
    chosen: list[IslandChoice] = field(default_factory=list)
    tried: int = 0
    seconds: float = 0.0
    stopped_because: str = "target met"
    final: AgreementLog | None = None

    @property
    def float_nodes(self) -> tuple[str, ...]:
        return tuple(n for choice in self.chosen for n in choice.nodes)

    def to_dict(self) -> dict[str, object]:
        return {
            "islands": [c.to_dict() for c in self.chosen],
            "candidates_tried": self.tried,
            "seconds": round(self.seconds, 1),
            "stopped_because": self.stopped_because,
        }


@dataclass(frozen=True)
class SearchLimits:
    target_iou: float
    seconds: float
    max_islands: int = 4
    max_slowdown: float = 0.06  # latency allowed over the all-INT8 model
    candidates: int = 6  # suspects (worst SQNR drop) tried per round
    min_gain: float = 0.002


def search_islands(
    float_model: onnx.ModelProto,
    losses: list[LayerLoss],
    baseline: AgreementLog,
    evaluate: Callable[[tuple[str, ...]], tuple[AgreementLog, float]],
    limits: SearchLimits,
    macs_share: Callable[[tuple[str, ...]], float],
    on_try: Callable[[str], None] = lambda _: None,
) -> SearchResult:
    """Greedy island search.

    ``evaluate(float_nodes)`` quantizes a candidate and returns its agreement log
    and its slowdown over the all-INT8 model; candidates slower than
    ``limits.max_slowdown`` are measured but never chosen.
    """
    started = time.monotonic()
    result = SearchResult(final=baseline)
    current = baseline
    kept: tuple[str, ...] = ()
    suspects = [loss.node for loss in losses[: limits.candidates]]
    if current.iou.mean >= limits.target_iou:
        return result
    while True:
        if len(result.chosen) >= limits.max_islands:
            result.stopped_because = "island limit reached"
            break
        best: tuple[float, float, IslandChoice, AgreementLog] | None = None
        options: list[tuple[str, tuple[str, ...]]] = []
        for anchor in suspects:
            for with_inputs in (False, True):
                nodes = tuple(n for n in island(float_model, anchor, with_inputs) if n not in kept)
                if nodes and (anchor, nodes) not in options:
                    options.append((anchor, nodes))
        if not options:
            result.stopped_because = "no candidates left"
            break
        out_of_time = False
        for anchor, nodes in options:
            if time.monotonic() - started > limits.seconds:
                out_of_time = True
                break
            share = macs_share(kept + nodes)
            on_try(anchor)
            log, slowdown = evaluate(kept + nodes)
            result.tried += 1
            if slowdown > limits.max_slowdown:
                continue
            gain = log.iou.mean - current.iou.mean
            choice = IslandChoice(anchor, nodes, current.iou.mean, log.iou.mean, share, slowdown)
            key = (gain, -slowdown)
            if best is None or key > (best[0], best[1]):
                best = (gain, -share, choice, log)
        if best is None or best[0] < limits.min_gain:
            result.stopped_because = "time budget spent" if out_of_time else "no candidate helped"
            break
        _, _, choice, log = best
        result.chosen.append(choice)
        kept += choice.nodes
        current = log
        result.final = log
        suspects = [s for s in suspects if s != choice.anchor]
        if current.iou.mean >= limits.target_iou:
            result.stopped_because = "target met"
            break
        if out_of_time:
            result.stopped_because = "time budget spent"
            break
    result.seconds = time.monotonic() - started
    return result
