"""The runner interface and the settings every runtime understands.

A :class:`Runner` runs one model on one preprocessed input tensor and returns the
mask output, nothing else: rembg only ever reads the mask, and copying the six
side outputs of a U²-Net out of the runtime costs time and memory for nothing.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Protocol

import numpy as np

from quantkit.errors import QuantkitError


def max_threads() -> int:
    return 4 * (os.cpu_count() or 1)


class RuntimeName(str, Enum):
    ORT = "ort"
    OPENVINO = "openvino"


class OptLevel(str, Enum):
    """onnxruntime's graph optimisation levels (ignored by other runtimes)."""

    DISABLE = "disable"
    BASIC = "basic"
    EXTENDED = "extended"
    ALL = "all"


@dataclass(frozen=True)
class RuntimeSettings:
    """How to run a model. Each runtime reads the fields it has an equivalent for."""

    runtime: RuntimeName = RuntimeName.ORT
    threads: int = 0  # intra-op threads; 0: the runtime's default (one per core)
    inter_threads: int = 0  # onnxruntime only
    spinning: bool = True  # busy-wait between ops; off is faster on a loaded machine
    cpu_arena: bool = True  # onnxruntime only
    mem_pattern: bool = True  # onnxruntime only
    opt_level: OptLevel = OptLevel.ALL  # onnxruntime only
    provider: str = "CPUExecutionProvider"  # onnxruntime only

    def __post_init__(self) -> None:
        try:  # plain strings from Python callers ("openvino", "all") become the enums
            object.__setattr__(self, "runtime", RuntimeName(self.runtime))
            object.__setattr__(self, "opt_level", OptLevel(self.opt_level))
        except ValueError as exc:
            raise QuantkitError(f"runtime settings: {exc}") from exc
        # onnxruntime creates every thread it is asked for: --threads 100000 took 16 GB and
        # a load average of 700 before anything ran, and SIGTERM could not stop it.
        limit = max_threads()
        for name in ("threads", "inter_threads"):
            value = getattr(self, name)
            if not 0 <= value <= limit:
                raise QuantkitError(
                    f"--{name.replace('_', '-')} {value}: use 0 (the runtime's default) up to {limit} "
                    f"(4x the {os.cpu_count() or 1} CPUs here)"
                )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["runtime"] = self.runtime.value
        data["opt_level"] = self.opt_level.value
        return data


class Runner(Protocol):
    """One loaded model, ready to run; the mask output only."""

    @property
    def input_name(self) -> str: ...

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """``tensor`` [1, 3, H, W] float32 -> the mask output, as a numpy array."""
        ...
