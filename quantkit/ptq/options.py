"""Everything ``quantize`` can be told, typed, with the defaults users get.

The model, the output path and ``--force`` are arguments of
:func:`quantkit.quantize`; these are the *how*: which photos, which recipe, how
hard to check the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from quantkit.errors import QuantkitError
from quantkit.isa import TargetCpu
from quantkit.passes.recipes import DEFAULT, Recipe


class QuantFormat(str, Enum):
    QDQ = "qdq"
    QOPERATOR = "qoperator"


class CalibMethod(str, Enum):
    """How activation ranges are chosen; MinMax is exact and needs one pass in bounded memory."""

    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"
    DISTRIBUTION = "distribution"


# Beyond 1% a "tail" is the body of the distribution: that is a different method (percentile).
MAX_CLIP_TAIL = 0.01


@dataclass(frozen=True)
class QuantizeOptions:
    calib_dir: Path | None = None  # None: the photos bundled with quantkit
    calib_limit: int | None = None
    recipe: Recipe = field(default_factory=lambda: DEFAULT)
    family: str | None = None  # rembg family name; None: detect from the file name
    fmt: QuantFormat = QuantFormat.QDQ
    per_channel: bool = True
    method: CalibMethod = CalibMethod.MINMAX
    clip_tail: float | None = None  # MinMax: share of values a range may leave outside; None: the recipe's
    exclude: tuple[str, ...] = ()  # nodes kept in float
    eval_dir: Path | None = None  # None: every 4th calibration photo is held out
    eval_limit: int = 64
    target_iou: float | None = None  # None: the held-out noise floor, less ``noise_margin``
    noise_margin: float = 0.005
    search_seconds: float = 120.0  # a safety net; the candidate limit is the deterministic bound
    max_slowdown: float = 0.06  # estimated latency the search may add over all-INT8
    target_cpu: TargetCpu = TargetCpu.ANY  # ANY: 7-bit weights, right everywhere; VNNI: 8-bit (quantkit.isa)
    use_cache: bool = True
    cache_dir: Path | None = None  # None: $QUANTKIT_CACHE_DIR or the platform's cache folder

    def __post_init__(self) -> None:
        if self.clip_tail is None:
            return
        if not 0.0 <= self.clip_tail <= MAX_CLIP_TAIL:
            raise QuantkitError(f"--clip-tail must lie in [0, {MAX_CLIP_TAIL}], got {self.clip_tail}")
        if self.method is not CalibMethod.MINMAX:
            raise QuantkitError(
                f"--clip-tail applies to minmax calibration; {self.method.value} chooses its own ranges"
            )
