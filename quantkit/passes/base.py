"""The two kinds of pass, and the report every pass returns.

A :class:`FloatRewrite` changes the float model before ``quantize_static`` sees it.
It declares the activation statistics it needs (:meth:`FloatRewrite.request`),
and the pipeline merges the requests of all rewrites of a recipe into as few
passes over the photos as their dependencies allow: a rewrite that can say how
it changed the statistics (``carries``) returns them carried through
(``Rewritten.stats``), so the next rewrite needs no new pass; one that cannot
returns ``None`` and the next request is measured afresh - so no later
rewrite's request joins a pass made for one that cannot carry. MinMax
calibration ranges join the last pass when every rewrite after it carries them.

A :class:`PostPass` changes the quantized model (lossless: size, names).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import onnx

from quantkit.statistics.types import ActivationStats, StatsRequest


class PassReport(Protocol):
    """What a pass did, able to summarise itself for the CLI table and ``--json``."""

    @property
    def label(self) -> str:
        """The row label in ``quantkit quantize``'s summary."""
        ...

    def summary(self) -> str:
        """One line for that row; empty when there is nothing worth showing."""
        ...

    def to_dict(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Rewritten:
    model: onnx.ModelProto
    report: PassReport
    stats: ActivationStats | None  # the input statistics as they are after this rewrite, if it can say


class FloatRewrite(Protocol):
    @property
    def name(self) -> str:
        """Its key in reports and ``--json``."""
        ...

    @property
    def carries(self) -> bool:
        """Whether :meth:`apply` returns the statistics carried through. Decides, before any
        photo is seen, whether later rewrites' requests join this one's pass: with a rewrite
        that cannot carry them they would be measured for nothing."""
        ...

    @property
    def carries_distributions(self) -> bool:
        """Whether the carried statistics keep the value histograms too (rescaling channels
        unequally, as equalisation does, changes a tensor's distribution in a way its
        histogram cannot follow). Decides whether calibration's clipped tails join a pass
        before this rewrite or take one of their own after it."""
        ...

    def request(self, model: onnx.ModelProto) -> StatsRequest:
        """Statistics this rewrite needs (empty: none). ``model`` is the one the rewrite will
        receive, or, when its request joins an earlier rewrite's pass, that rewrite's model:
        a tensor that does not exist there yet can be asked for as a ``Projection``."""
        ...

    def apply(self, model: onnx.ModelProto, stats: ActivationStats) -> Rewritten:
        """A new model (``model`` is left untouched) and what was done."""
        ...


class PostPass(Protocol):
    @property
    def name(self) -> str: ...

    def apply(self, model: onnx.ModelProto) -> tuple[onnx.ModelProto, PassReport]:
        """A new quantized model (``model`` is left untouched) and what was done."""
        ...
