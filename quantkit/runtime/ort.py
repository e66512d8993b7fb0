"""onnxruntime: sessions built from typed settings, failures as one-line errors.

Two users: :class:`OrtRunner`, the runtime seam's onnxruntime implementation
(masks, timing, bench), and :func:`ort_session`, which the quantization pipeline
uses for its own augmented graphs (statistics, sensitivity) that only
onnxruntime runs. Sessions log fatal errors only: every failure becomes a
:class:`~quantkit.errors.QuantkitError` line, and onnxruntime's own error log
printed above it would make two messages of one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from quantkit.errors import QuantkitError
from quantkit.runtime.base import OptLevel, RuntimeSettings

_FATAL_ONLY = 4


def _opt_level(level: OptLevel) -> Any:
    import onnxruntime as ort

    return {
        OptLevel.DISABLE: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        OptLevel.BASIC: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        OptLevel.EXTENDED: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        OptLevel.ALL: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]


def ort_session(model: Path | bytes, settings: RuntimeSettings | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``model`` (a path or serialized bytes)."""
    import onnxruntime as ort

    settings = settings or RuntimeSettings()
    available = ort.get_available_providers()
    if settings.provider not in available:
        raise QuantkitError(
            f"execution provider {settings.provider} is not available in this onnxruntime "
            f"(available: {', '.join(available)})"
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = settings.inter_threads
    options.enable_cpu_mem_arena = settings.cpu_arena
    options.enable_mem_pattern = settings.mem_pattern
    options.graph_optimization_level = _opt_level(settings.opt_level)
    options.log_severity_level = _FATAL_ONLY
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if settings.spinning else "0")
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=[settings.provider])
    except Exception as exc:
        where = "the model" if isinstance(model, bytes) else str(model)
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise QuantkitError(f"onnxruntime cannot load {where}: {text[:300]}") from exc


class OrtRunner:
    """The runtime seam's onnxruntime implementation: one session, the mask output only."""

    def __init__(self, model: Path, settings: RuntimeSettings, output: int = 0) -> None:
        self.session = ort_session(model, settings)
        image = self.session.get_inputs()[0]
        self._input = image.name
        # An FP16 export without float32 inputs takes float16 (onnxruntime does not convert).
        self._dtype = np.float16 if image.type == "tensor(float16)" else np.float32
        self._outputs = [self.session.get_outputs()[output].name]

    @property
    def input_name(self) -> str:
        return str(self._input)

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return np.asarray(
            self.session.run(self._outputs, {self._input: tensor.astype(self._dtype, copy=False)})[0]
        )
