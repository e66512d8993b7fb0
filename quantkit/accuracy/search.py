"""Mixed precision to a target: relax the fewest ranges, keep the fewest, cheapest nodes in float.

After offset absorption, equalisation and clipped calibration ranges most of a model
quantizes well, but a model the recipe has not met before may still have a layer that
does not. This search asks the mask metric itself, on held-out photos: it ranks
convolutions by how much signal they lose (:mod:`quantkit.sensitivity`) and tries,
most suspect first, (1) for each suspect, giving the tensors its input and output are
quantized with their exact measured range back where calibration clipped their tails -
free at run time; then (2) keeping each suspect in float alone, and (3) with the ops
that feed only it. Each round keeps the candidate that buys the most IoU (ties: the
cheaper), until the target is met, nothing helps, or a limit is reached. A round ends
at the first candidate that reaches the target: the candidates come cheapest kind
first, most suspect first, so the rest could only buy IoU that is not needed, at a
re-quantization each (5-6 s on a u2net-sized model).
Every quantization in the loop reuses the cached calibration, so a candidate costs one
``quantize_static`` and one pass over the held-out set. The order of candidates and the
tie-breaks are fixed, so the same inputs give the same choices.

Why ranges first: clipping a tensor's far tail is right for the heavy-tailed activations
of real models (IS-Net: 0.73 -> 0.99 IoU vs FP32) but can be wrong for one tensor of a
model whose mask lives in that tail; measured on a randomly initialised test model at
native photo sizes, IoU vs FP32 0.70 with its logit clipped and 0.91 with it exact - and
an exact range costs no latency, where a float island costs about 2x its share of MACs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from enum import Enum

import onnx

from quantkit.accuracy.agreement import AgreementLog
from quantkit.accuracy.sensitivity import LayerLoss, island
from quantkit.graph.index import GraphIndex

# Latency a float island costs, per unit of the model's MACs it holds. Measured on
# u2netp: Conv_243 alone (2.4% of the MACs) cost +3.2% latency, its 5-node island +5.6%
# (the float/INT8 boundaries add layout changes). An estimate, not a timing, so the
# search makes the same choices on every run and every machine.
FLOAT_COST_PER_MAC_SHARE = 2.0


@dataclass(frozen=True)
class Plan:
    """What a candidate changes against the all-INT8 model with the recipe's ranges."""

    float_nodes: tuple[str, ...] = ()  # kept in float
    exact: tuple[str, ...] = ()  # tensors given their exact measured (unclipped) range

    def __add__(self, other: Plan) -> Plan:
        return Plan(self.float_nodes + other.float_nodes, self.exact + other.exact)


NO_CHANGE = Plan()


@dataclass(frozen=True)
class IslandChoice:
    anchor: str  # the convolution that lost the most signal
    nodes: tuple[str, ...]  # everything kept in float for it (none when only ranges changed)
    iou_before: float
    iou_after: float
    macs_share: float  # share of the model's MACs now in float (all islands so far)
    estimated_cost: float  # latency over the all-INT8 model, estimated from macs_share
    exact: tuple[str, ...] = ()  # tensors given their exact range for it

    @property
    def plan(self) -> Plan:
        return Plan(self.nodes, self.exact)

    def to_dict(self) -> dict[str, object]:
        return {
            "anchor": self.anchor,
            "nodes": list(self.nodes),
            "exact_ranges": list(self.exact),
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
    def plan(self) -> Plan:
        return sum((c.plan for c in self.chosen), Plan())

    @property
    def float_nodes(self) -> tuple[str, ...]:
        return self.plan.float_nodes

    def to_dict(self) -> dict[str, object]:
        return {
            # the JSON of 0.3.0 had only islands; ranges given back exact come beside them
            "islands": [c.to_dict() for c in self.chosen if c.nodes],
            "exact_ranges": [c.to_dict() for c in self.chosen if c.exact],
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
    evaluate: Callable[[Plan], AgreementLog],
    macs_share: Callable[[tuple[str, ...]], float],
    limits: SearchLimits,
    on_try: Callable[[str], None] = lambda _: None,
    relaxable: Collection[str] = (),
) -> SearchResult:
    """Greedy search; ``evaluate(plan)`` quantizes and scores a candidate.

    ``relaxable``: the tensors whose calibrated range is narrower than their exact one.
    Candidates whose estimated cost exceeds ``limits.max_cost`` are not even tried.
    """
    started = time.monotonic()
    chosen: list[IslandChoice] = []
    current = baseline
    tried = 0
    suspects = [loss.node for loss in losses[: limits.suspects]]
    index = GraphIndex.build(float_model)

    def finish(reason: StopReason) -> SearchResult:
        return SearchResult(tuple(chosen), tried, time.monotonic() - started, reason, current)

    while current.iou.mean < limits.target_iou:
        if sum(1 for c in chosen if c.nodes) >= limits.max_islands:  # exact ranges cost nothing
            return finish(StopReason.ISLAND_LIMIT)
        kept = sum((c.plan for c in chosen), Plan())
        options = _options(float_model, index, suspects, kept, relaxable)
        if not options:
            return finish(StopReason.NO_CANDIDATES)
        round_ = _Round()
        for anchor, step in options:
            share = macs_share(kept.float_nodes + step.float_nodes)
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
            log = evaluate(kept + step)
            tried += 1
            gain = log.iou.mean - current.iou.mean
            if round_.best is None or (gain, -cost) > (round_.best[0], round_.best[1]):
                choice = IslandChoice(
                    anchor, step.float_nodes, current.iou.mean, log.iou.mean, share, cost, step.exact
                )
                round_.best = (gain, -cost, choice, log)
            if log.iou.mean >= limits.target_iou and gain >= limits.min_gain:
                break  # the cheapest kind, then the most suspect, that suffices
        if round_.best is None or round_.best[0] < limits.min_gain:
            if round_.limit is not None:
                return finish(round_.limit)
            return finish(StopReason.NO_GAIN if round_.affordable else StopReason.OVER_BUDGET)
        _, _, choice, current = round_.best
        chosen.append(choice)
        if choice.nodes:  # a suspect whose ranges were relaxed may still want to be float
            suspects = [s for s in suspects if s != choice.anchor]
        if round_.limit is not None and current.iou.mean < limits.target_iou:
            return finish(round_.limit)
    return finish(StopReason.TARGET_MET)


# Ops whose quantized output onnxruntime gives its input's scale (its QDQ "direct 8-bit"
# ops): a range set on their output is not the one used, their input's is.
_SAME_SCALE = frozenset(
    {"MaxPool", "Resize", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Flatten", "Identity"}
)
# Activations onnxruntime fuses into the convolution before them in QDQ: the convolution's
# own output range is then unused, the activation's output carries the range.
_FUSED_AFTER = frozenset({"Relu", "Clip"})


def ranged_tensors(index: GraphIndex, node: onnx.NodeProto) -> tuple[str, ...]:
    """The tensors whose calibrated ranges a convolution's input and output are actually
    quantized with: back through ops that reuse their input's scale, forward through a ReLU
    fused into it. Measured on a test model: a wider range on a convolution's own output
    before a ReLU, or on a MaxPool's output, leaves the quantized file byte for byte the same."""
    source = node.input[0]
    while (producer := index.producer.get(source)) is not None and producer.op_type in _SAME_SCALE:
        source = producer.input[0]
    target = node.output[0]
    outputs = index.graph_outputs
    while target not in outputs and len(readers := index.consumers.get(target, [])) == 1:
        if readers[0].op_type not in _FUSED_AFTER:
            break
        target = readers[0].output[0]
    return (source, target)


def _options(
    float_model: onnx.ModelProto,
    index: GraphIndex,
    suspects: list[str],
    kept: Plan,
    relaxable: Collection[str],
) -> list[tuple[str, Plan]]:
    """Candidates: first, for every suspect, its clipped tensors given their exact range
    (free at run time, so a float island never wins a round one of them could have won);
    then each suspect alone in float, and with the ops that feed only it."""
    options: list[tuple[str, Plan]] = []
    for anchor in suspects:
        node = index.by_name.get(anchor)
        if node is None:
            continue
        exact = tuple(
            dict.fromkeys(t for t in ranged_tensors(index, node) if t in relaxable and t not in kept.exact)
        )
        plan = Plan(exact=exact)
        if exact and all(p != plan for _, p in options):
            options.append((anchor, plan))
    for anchor in suspects:
        for with_inputs in (False, True):
            plan = Plan(
                tuple(n for n in island(float_model, anchor, with_inputs) if n not in kept.float_nodes)
            )
            if plan.float_nodes and all(p != plan for _, p in options):
                options.append((anchor, plan))
    return options
