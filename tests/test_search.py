"""The mixed-precision search: greedy, bounded, deterministic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from quantkit.metrics import AgreementLog, agreement
from quantkit.quantize import QuantizeOptions, _prepare, quantize
from quantkit.search import FLOAT_COST_PER_MAC_SHARE, SearchLimits, search_islands
from quantkit.sensitivity import LayerLoss, conv_macs


def log_with_iou(iou: float, images: int = 4) -> AgreementLog:
    """An agreement log whose every image has exactly this IoU (masks of 100 pixels)."""
    log = AgreementLog()
    for k in range(images):
        ref = np.zeros(100, np.float32)
        ref[:50] = 1
        other = np.zeros(100, np.float32)
        shared = round(50 * 2 * iou / (1 + iou))  # |A∩B| / |A∪B| = iou with |A| = |B| = 50
        other[:shared] = 1
        other[50 : 50 + 50 - shared] = 1
        log.add(f"img{k}", agreement(ref, other))
    return log


def test_greedy_search_picks_what_helps_and_respects_the_cost_bound(
    tiny_model_path: Path, tmp_path: Path
) -> None:
    model = onnx.load(str(_prepare(onnx.load(str(tiny_model_path)), tmp_path)))
    macs = conv_macs(model)
    total = sum(macs.values())
    losses = [LayerLoss("Conv_2", 30, 5, 0), LayerLoss("Conv_0", 40, 30, 0), LayerLoss("Conv_1", 30, 28, 0)]
    tried: list[tuple[str, ...]] = []

    def evaluate(nodes: tuple[str, ...]) -> AgreementLog:
        tried.append(nodes)
        return log_with_iou(0.99 if "Conv_2" in nodes else 0.90)

    def share(nodes: tuple[str, ...]) -> float:
        return sum(macs.get(n, 0) for n in nodes) / total

    limits = SearchLimits(target_iou=0.98, seconds=60, max_cost=1.0)
    result = search_islands(model, losses, log_with_iou(0.90), evaluate, share, limits)
    assert result.stopped_because == "target met"
    assert [c.anchor for c in result.chosen] == ["Conv_2"]
    assert result.chosen[0].nodes == ("Conv_2",)  # the smaller island wins a tie on IoU
    assert result.chosen[0].estimated_cost == FLOAT_COST_PER_MAC_SHARE * share(("Conv_2",))
    again = search_islands(model, losses, log_with_iou(0.90), evaluate, share, limits)
    assert [c.to_dict() for c in again.chosen] == [c.to_dict() for c in result.chosen]

    # Too expensive: Conv_2's islands are never even tried.
    tight = SearchLimits(
        target_iou=0.98, seconds=60, max_cost=0.5 * FLOAT_COST_PER_MAC_SHARE * share(("Conv_2",))
    )
    tried.clear()
    capped = search_islands(model, losses, log_with_iou(0.90), evaluate, share, tight)
    assert capped.chosen == [] and all("Conv_2" not in nodes for nodes in tried)
    nothing = SearchLimits(target_iou=0.98, seconds=60, max_cost=0.0)
    broke = search_islands(model, losses, log_with_iou(0.90), evaluate, share, nothing)
    assert broke.tried == 0 and broke.stopped_because == "every candidate exceeds the latency budget"

    # A met target means no search at all.
    assert search_islands(model, losses, log_with_iou(0.99), evaluate, share, limits).tried == 0


def test_search_runs_end_to_end_on_a_missed_target(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    reports = []
    for k in range(2):
        out = tmp_path / f"m{k}.onnx"
        reports.append(
            quantize(
                QuantizeOptions(
                    model=tiny_model_path, output=out, calib_dir=photos, target_iou=0.9999, max_slowdown=1.0
                )
            )
        )
    first, second = reports
    assert first.search is not None and first.search.tried > 0
    assert first.losses and first.losses[0].drop >= first.losses[-1].drop
    assert first.search.to_dict()["islands"] == second.search.to_dict()["islands"]  # type: ignore[union-attr]
    assert (tmp_path / "m0.onnx").read_bytes() == (tmp_path / "m1.onnx").read_bytes()
