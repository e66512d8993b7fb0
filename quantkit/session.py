"""onnxruntime sessions built from typed settings, with failures as one-line errors.

The session knobs rembg users tune for memory and speed (threads, the CPU memory
arena, memory patterns, graph optimisation level, execution provider) live in
:class:`SessionSettings`, so ``compare``, ``bench`` and ``remove`` build their
sessions the same way and report the settings they used.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from quantkit.errors import QuantkitError


class OptLevel(str, Enum):
    DISABLE = "disable"
    BASIC = "basic"
    EXTENDED = "extended"
    ALL = "all"

    def to_ort(self) -> ort.GraphOptimizationLevel:
        return {
            OptLevel.DISABLE: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            OptLevel.BASIC: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            OptLevel.EXTENDED: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            OptLevel.ALL: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self]


@dataclass(frozen=True)
class SessionSettings:
    intra_threads: int = 0  # 0: onnxruntime's default (one per physical core)
    inter_threads: int = 0
    cpu_arena: bool = True
    mem_pattern: bool = True
    opt_level: OptLevel = OptLevel.ALL
    provider: str = "CPUExecutionProvider"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["opt_level"] = self.opt_level.value
        return data


def make_session(model: Path | bytes, settings: SessionSettings | None = None) -> ort.InferenceSession:
    settings = settings or SessionSettings()
    available = ort.get_available_providers()
    if settings.provider not in available:
        raise QuantkitError(
            f"execution provider {settings.provider} is not available in this onnxruntime "
            f"(available: {', '.join(available)})"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.intra_threads
    options.inter_op_num_threads = settings.inter_threads
    options.enable_cpu_mem_arena = settings.cpu_arena
    options.enable_mem_pattern = settings.mem_pattern
    options.graph_optimization_level = settings.opt_level.to_ort()
    options.log_severity_level = 3  # errors only; warnings about QDQ fusion are noise
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=[settings.provider])
    except Exception as exc:
        where = "model" if isinstance(model, bytes) else str(model)
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise QuantkitError(f"onnxruntime cannot load {where}: {text[:300]}") from exc


def run_first_output(session: ort.InferenceSession, input_name: str, tensor: np.ndarray) -> np.ndarray:
    """Run and return only output 0 (the mask); the six side outputs are never copied out."""
    first = session.get_outputs()[0].name
    result = session.run([first], {input_name: tensor})[0]
    return np.asarray(result)
