"""Mixed precision to a target: keep the fewest, cheapest nodes in float.

After offset absorption and equalisation most of u2netp quantizes well, but a
model the recipe has not met before may still have a layer that does not. This
search asks the mask metric itself, on held-out photos: it ranks convolutions
by how much signal they lose (:mod:`quantkit.sensitivity`), tries keeping each
suspect - alone, or with the ops that feed it - in float, and keeps the candidate
that buys the most IoU, until the target is met, nothing helps, or the time
budget runs out. A round ends at the first candidate that reaches the target:
the candidates come most suspect first, smaller island first, so the rest could
only buy IoU that is not needed, at a re-quantization each (5-6 s on a
u2net-sized model). Every quantization in the loop reuses the cached calibration,
so a candidate costs one ``quantize_static`` and one pass over the held-out set.
The order of candidates and the tie-breaks are fixed, so the same inputs give
the same choices.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import onnx

from quantkit.accuracy.agreement import AgreementLog
from quantkit.accuracy.sensitivity import LayerLoss, island

# Latency a float island costs, per unit of the model's MACs it holds. Measured on
# u2netp: Conv_243 alone (2.4% of the MACs) cost +3.2% latency, its 5-node island +5.6%
# (the float/INT8 boundaries add layout changes). An estimate, not a timing, so the
# search makes the same choices on every run and every machine.
FLOAT_COST_PER_MAC_SHARE = 2.0


@dataclass(frozen=True)
class IslandChoice:
    anchor: str  # the convolution that lost the most signal
    nodes: tuple[str, ...]  # everything kept in float for it
    iou_before: float
    iou_after: float
    macs_share: float  # share of the model's MACs now in float (all islands so far)
    estimated_cost: float  # latency over the all-INT8 model, estimated from macs_share

    def to_dict(self) -> dict[str, object]:
        return {
            "anchor": self.anchor,
            "nodes": list(self.nodes),
            "iou_before": round(self.iou_before, 5),
            "iou_after": round(self.iou_after, 5),
            "iou_gain": round(self.iou_after - self.iou_before, 5),
            "float_macs_share": round(self.macs_share, 5),
            "estimated_latency_cost": round(self.estimated_cost, 4),
        }


class StopReason(str, Enum):
    TARGET_MET = "target met"
    ISLAND_LIMIT = "island limit reached"
    CANDIDATE_LIMIT = "candidate limit reached"
    TIME_CAP = "time cap reached"
    NO_CANDIDATES = "no candidates left"
    OVER_BUDGET = "every candidate exceeds the latency budget"
    NO_GAIN = "no candidate helped"


@dataclass(frozen=True)
class SearchResult:
    chosen: tuple[IslandChoice, ...]
    tried: int
    seconds: float
    stopped_because: StopReason
    final: AgreementLog  # scores of the model with every chosen island in float

    @property
    def float_nodes(self) -> tuple[str, ...]:
        return tuple(n for choice in self.chosen for n in choice.nodes)

    def to_dict(self) -> dict[str, object]:
        return {
            "islands": [c.to_dict() for c in self.chosen],
            "candidates_tried": self.tried,
            "seconds": round(self.seconds, 1),
            "stopped_because": self.stopped_because.value,
        }


@dataclass(frozen=True)
class SearchLimits:
    target_iou: float
    seconds: float  # hard cap, a safety net; the candidate limit is the bound that is deterministic
    max_candidates: int = 24
    max_islands: int = 4
    max_cost: float = 0.06  # estimated latency allowed over the all-INT8 model
    suspects: int = 6  # convolutions with the worst SQNR drop considered
    min_gain: float = 0.002


@dataclass
class _Round:
    """The best candidate of one round, and why the round ended early if it did."""

    best: tuple[float, float, IslandChoice, AgreementLog] | None = None
    limit: StopReason | None = None
    affordable: int = 0


def search_islands(
    float_model: onnx.ModelProto,
    losses: list[LayerLoss],
    baseline: AgreementLog,
    evaluate: Callable[[tuple[str, ...]], AgreementLog],
    macs_share: Callable[[tuple[str, ...]], float],
    limits: SearchLimits,
    on_try: Callable[[str], None] = lambda _: None,
) -> SearchResult:
    """Greedy island search; ``evaluate(float_nodes)`` quantizes and scores a candidate.

    Candidates whose estimated cost exceeds ``limits.max_cost`` are not even tried.
    """
    started = time.monotonic()
    chosen: list[IslandChoice] = []
    current = baseline
    tried = 0
    suspects = [loss.node for loss in losses[: limits.suspects]]

    def finish(reason: StopReason) -> SearchResult:
        return SearchResult(tuple(chosen), tried, time.monotonic() - started, reason, current)

    while current.iou.mean < limits.target_iou:
        if len(chosen) >= limits.max_islands:
            return finish(StopReason.ISLAND_LIMIT)
        kept = tuple(n for c in chosen for n in c.nodes)
        options = _options(float_model, suspects, kept)
        if not options:
            return finish(StopReason.NO_CANDIDATES)
        round_ = _Round()
        for anchor, nodes in options:
            share = macs_share(kept + nodes)
            cost = FLOAT_COST_PER_MAC_SHARE * share
            if cost > limits.max_cost:
                continue
            round_.affordable += 1
            if tried >= limits.max_candidates:
                round_.limit = StopReason.CANDIDATE_LIMIT
                break
            if time.monotonic() - started > limits.seconds:
                round_.limit = StopReason.TIME_CAP
                break
            on_try(anchor)
            log = evaluate(kept + nodes)
            tried += 1
            gain = log.iou.mean - current.iou.mean
            if round_.best is None or (gain, -cost) > (round_.best[0], round_.best[1]):
                choice = IslandChoice(anchor, nodes, current.iou.mean, log.iou.mean, share, cost)
                round_.best = (gain, -cost, choice, log)
            if log.iou.mean >= limits.target_iou and gain >= limits.min_gain:
                break  # the most suspect (and, of its two islands, smaller) candidate that suffices
        if round_.best is None or round_.best[0] < limits.min_gain:
            if round_.limit is not None:
                return finish(round_.limit)
            return finish(StopReason.NO_GAIN if round_.affordable else StopReason.OVER_BUDGET)
        _, _, choice, current = round_.best
        chosen.append(choice)
        suspects = [s for s in suspects if s != choice.anchor]
        if round_.limit is not None and current.iou.mean < limits.target_iou:
            return finish(round_.limit)
    return finish(StopReason.TARGET_MET)


def _options(
    float_model: onnx.ModelProto, suspects: list[str], kept: tuple[str, ...]
) -> list[tuple[str, tuple[str, ...]]]:
    """Candidate islands: each suspect alone, and with the ops that feed only it."""
    options: list[tuple[str, tuple[str, ...]]] = []
    for anchor in suspects:
        for with_inputs in (False, True):
            nodes = tuple(n for n in island(float_model, anchor, with_inputs) if n not in kept)
            if nodes and (anchor, nodes) not in options:
                options.append((anchor, nodes))
    return options
