"""Recipes as data: which rewrites run before ``quantize_static``, which passes after.

``naive`` is plain onnxruntime (opset upgrade, ``quant_pre_process``,
``quantize_static``): on u2netp it runs 2.5x faster than FP32 and destroys the
masks (mean IoU vs FP32 0.74 on ECSSD 0001-0300). ``default`` keeps them (0.990)
and is faster still; ``benchmarks/recipes.py`` measures every prefix of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from quantkit.errors import QuantkitError
from quantkit.passes.absorb import AbsorbOffsets
from quantkit.passes.base import FloatRewrite, PostPass
from quantkit.passes.compact import Compact
from quantkit.passes.equalize import Equalize, Magnitude
from quantkit.passes.side_layout import SideLayout
from quantkit.passes.taps import SplitTaps
from quantkit.passes.widen import Widen


@dataclass(frozen=True)
class RangePolicy:
    """How MinMax calibration turns measured statistics into ranges (``quantkit.ptq.ranges``).

    ``clip_tail``: the share of each tensor's sampled values its range may leave outside
    (0: the exact min and max, as onnxruntime's own MinMax calibration). ``saturate_logits``:
    clip tensors that only feed a sigmoid to where float32's sigmoid saturates.
    ``share_concat``: give a Concat's inputs its range where that costs little.
    """

    clip_tail: float = 0.0
    saturate_logits: bool = False
    share_concat: bool = False  # a Concat's inputs take its range: no second rounding


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    rewrites: tuple[FloatRewrite, ...] = ()
    post: tuple[PostPass, ...] = ()
    check: bool = False  # held-out check against the noise floor, and the search if it misses
    ranges: RangePolicy = RangePolicy()  # how activation ranges are read from the measured statistics


NAIVE = Recipe("naive", "plain onnxruntime quantize_static")
DEFAULT = Recipe(
    "default",
    "offset absorption, equalisation, widening, tap split, NCHW side resizes; held-out check and search",
    rewrites=(
        AbsorbOffsets(),
        Equalize(alpha=0.75, magnitude=Magnitude.RMS),
        Widen(),
        SplitTaps(),
    ),  # SplitTaps reads Widen's result
    post=(SideLayout(), Compact()),  # Compact last: it renames what the passes before it add
    check=True,
    ranges=RangePolicy(clip_tail=5e-5, saturate_logits=True, share_concat=True),
)
RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (DEFAULT, NAIVE)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise QuantkitError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})")
    return RECIPES[name]
