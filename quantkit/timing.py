"""Latency of a model on one input, measured the same way everywhere.

Warm-up runs first (the first runs pay for allocations and kernel selection),
then ``runs`` timed runs; the median is the figure that resists a busy machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort


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


def time_runs(
    session: ort.InferenceSession, feed: dict[str, np.ndarray], runs: int, warmup: int = 2
) -> list[float]:
    first = [session.get_outputs()[0].name]
    for _ in range(warmup):
        session.run(first, feed)
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(first, feed)
        seconds.append(time.perf_counter() - start)
    return seconds
