"""The accuracy gate: thresholds, where they come from, and what failed.

Thresholds come from the command line or from ``[tool.quantkit.gate]`` in a
pyproject.toml (command line wins, key by key), so a project can pin the bar its
CI holds every INT8 model to. Each missed threshold is reported with the value
measured, so a red CI run says what regressed and by how much.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields, replace
from pathlib import Path

from quantkit.compare import CompareReport
from quantkit.errors import QuantkitError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


@dataclass(frozen=True)
class Thresholds:
    min_iou: float | None = None  # mean mask IoU vs the reference
    min_iou_p05: float | None = None  # 5th percentile of per-image IoU
    max_mae: float | None = None  # mean absolute mask difference vs the reference
    max_maxf_drop: float | None = None  # reference max-F minus model max-F (needs ground truth)

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def merged_over(self, base: Thresholds) -> Thresholds:
        """These thresholds, falling back to ``base`` where unset."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return replace(base, **values)

    def to_dict(self) -> dict[str, float | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


KEYS = {
    "min-iou": "min_iou",
    "min-iou-p05": "min_iou_p05",
    "max-mae": "max_mae",
    "max-maxf-drop": "max_maxf_drop",
}


def from_pyproject(path: Path) -> Thresholds:
    """``[tool.quantkit.gate]`` of ``path``; empty thresholds if the table is absent."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise QuantkitError(f"cannot read {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise QuantkitError(f"{path} is not valid TOML: {exc}") from exc
    table = data.get("tool", {}).get("quantkit", {}).get("gate", {})
    if not isinstance(table, dict):
        raise QuantkitError(f"{path}: [tool.quantkit.gate] must be a table")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise QuantkitError(
            f"{path}: unknown [tool.quantkit.gate] keys: {', '.join(unknown)} (known: {', '.join(KEYS)})"
        )
    values: dict[str, float] = {}
    for key, value in table.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise QuantkitError(f"{path}: [tool.quantkit.gate] {key} must be a number")
        values[KEYS[key]] = float(value)
    return Thresholds(**values)


def failures(report: CompareReport, thresholds: Thresholds) -> list[str]:
    """One line per missed threshold per compared model; empty when all pass."""
    if thresholds.max_maxf_drop is not None and report.masks_dir is None:
        raise QuantkitError("--max-maxf-drop needs ground-truth masks (--masks DIR)")
    lines: list[str] = []
    ref_truth = report.reference.truth
    for model in report.candidates:
        name = model.path.name
        iou = model.agreement.iou
        if thresholds.min_iou is not None and not iou.mean >= thresholds.min_iou:
            lines.append(f"{name}: mean IoU {iou.mean:.4f} < min-iou {thresholds.min_iou}")
        if thresholds.min_iou_p05 is not None and not iou.p05 >= thresholds.min_iou_p05:
            lines.append(f"{name}: 5th-percentile IoU {iou.p05:.4f} < min-iou-p05 {thresholds.min_iou_p05}")
        if thresholds.max_mae is not None and not model.agreement.mae <= thresholds.max_mae:
            lines.append(f"{name}: MAE {model.agreement.mae:.5f} > max-mae {thresholds.max_mae}")
        if thresholds.max_maxf_drop is not None:
            if model.truth is None or ref_truth is None:
                lines.append(f"{name}: no ground-truth masks matched the images, max-F cannot be checked")
            else:
                drop = ref_truth.max_f - model.truth.max_f
                if not drop <= thresholds.max_maxf_drop:
                    lines.append(
                        f"{name}: max-F drop {drop:.4f} ({ref_truth.max_f:.4f} -> {model.truth.max_f:.4f}) "
                        f"> max-maxf-drop {thresholds.max_maxf_drop}"
                    )
    return lines
