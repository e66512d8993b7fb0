"""The accuracy gate: thresholds, where they come from, and what failed.

Thresholds come from the command line or from ``[tool.quantkit.gate]`` in a
pyproject.toml (command line wins, key by key), so a project can pin the bar its
CI holds every INT8 model to. Each missed threshold is reported with the value
measured, so a red CI run says what regressed and by how much.

``within-noise = MARGIN`` holds the model to the reference model's own
stability: its mean and 5th-percentile IoU must be at least those of the
reference on JPEG-95 re-saves of the same photos, less MARGIN. Unlike a fixed
bar, that one moves with the photos: hard photos lower the floor and the bar.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from quantkit.accuracy.compare import CompareReport
from quantkit.errors import QuantkitError


@dataclass(frozen=True)
class Thresholds:
    min_iou: float | None = None  # mean mask IoU vs the reference
    min_iou_p05: float | None = None  # 5th percentile of per-image IoU
    max_mae: float | None = None  # mean absolute mask difference vs the reference
    max_maxf_drop: float | None = None  # reference max-F minus model max-F (needs ground truth)
    within_noise: float | None = None  # margin below the JPEG-95 noise floor allowed (mean and p05)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and not (
                isinstance(value, (int, float)) and math.isfinite(value) and 0 <= value <= 1
            ):
                raise QuantkitError(
                    f"gate threshold {f.name.replace('_', '-')} must be a number in [0, 1], got {value!r}"
                )

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def merged_over(self, base: Thresholds) -> Thresholds:
        """These thresholds, falling back to ``base`` where unset."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        return replace(base, **values)

    def to_dict(self) -> dict[str, float | None]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


KEYS = {f.name.replace("_", "-"): f.name for f in fields(Thresholds)}


def _table(data: Any, path: Path) -> dict[str, Any]:
    """``data['tool']['quantkit']['gate']`` with a one-line error wherever the shape is wrong."""
    table: Any = data
    for key in ("tool", "quantkit", "gate"):
        if not isinstance(table, dict):
            raise QuantkitError(
                f"{path}: [tool.quantkit.gate] cannot be read: the value above {key!r} is not a table"
            )
        table = table.get(key, {})
    if not isinstance(table, dict):
        raise QuantkitError(f"{path}: [tool.quantkit.gate] must be a table")
    return table


def from_pyproject(path: Path) -> Thresholds:
    """``[tool.quantkit.gate]`` of ``path``; empty thresholds if the table is absent."""
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a BOM (some Windows editors) is not an error
        data = tomllib.loads(text)
    except OSError as exc:
        raise QuantkitError(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise QuantkitError(f"{path} is not valid UTF-8 (byte {exc.start})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise QuantkitError(f"{path} is not valid TOML: {exc}") from exc
    table = _table(data, path)
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
    if thresholds.within_noise is not None and report.floor is None:
        raise QuantkitError("--within-noise needs the noise floor (drop --no-noise-floor)")
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
        within = report.within(model)
        if thresholds.within_noise is not None and within is not None:
            lines += [f"{name}: {miss} (within-noise)" for miss in within.misses(thresholds.within_noise)]
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
