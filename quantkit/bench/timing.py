"""Latency figures, measured and summarised the same way everywhere.

Callers run warm-up passes first (the first runs pay for allocations and kernel
selection); the median is the figure that resists a busy machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from quantkit.runtime.base import Runner


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p90_ms: float
    mean_ms: float
    runs: int

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        return cls(
            p50_ms=float(np.percentile(ms, 50)),
            p90_ms=float(np.percentile(ms, 90)),
            mean_ms=float(ms.mean()),
            runs=len(seconds),
        )

    def to_dict(self) -> dict[str, float | int]:
        return {
            "p50": round(self.p50_ms, 3),
            "p90": round(self.p90_ms, 3),
            "mean": round(self.mean_ms, 3),
            "runs": self.runs,
        }


def time_runs(runner: Runner, inputs: list[np.ndarray], runs: int, start: int = 0) -> list[float]:
    """Seconds per run for ``runs`` runs, cycling through ``inputs`` from index ``start``.

    Only the mask output is fetched, as rembg's sessions only use the mask.
    """
    seconds = []
    for k in range(runs):
        tensor = inputs[(start + k) % len(inputs)]
        began = time.perf_counter()
        runner.run(tensor)
        seconds.append(time.perf_counter() - began)
    return seconds
