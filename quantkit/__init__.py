"""quantkit: post-training INT8 quantization for rembg's background-removal models.

The public API (``quantize``, ``compare``, ``bench``, ``remove``, ``new_session``,
``cutout`` and their option types) is imported on first use, so ``import quantkit``
loads neither onnx nor onnxruntime. The ``quantkit`` command (``quantkit.cli``)
is a thin layer over the same functions.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

__version__ = "0.4.0"

# onnxruntime >= 1.31 resolves a Microsoft telemetry host a few seconds after import unless
# this is set before the first import; quantkit must not touch the network.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

_EXPORTS = {
    "quantize": "quantkit.api",
    "compare": "quantkit.api",
    "bench": "quantkit.api",
    "remove": "quantkit.api",
    "new_session": "quantkit.removal.session",
    "cutout": "quantkit.removal.session",
    "Session": "quantkit.removal.session",
    "QuantizeOptions": "quantkit.ptq.options",
    "BenchOptions": "quantkit.bench.measure",
    "RemoveOptions": "quantkit.removal.remove",
    "RuntimeSettings": "quantkit.runtime.base",
    "RayOptions": "quantkit.cluster.photos",
    "Thresholds": "quantkit.accuracy.gate",
    "QuantkitError": "quantkit.errors",
    "GateFailed": "quantkit.errors",
    "CheckFailed": "quantkit.ptq.report",
    "TargetCpu": "quantkit.isa",
}
__all__ = [
    "BenchOptions",
    "CheckFailed",
    "GateFailed",
    "QuantizeOptions",
    "QuantkitError",
    "RayOptions",
    "RemoveOptions",
    "RuntimeSettings",
    "Session",
    "TargetCpu",
    "Thresholds",
    "__version__",
    "bench",
    "compare",
    "cutout",
    "new_session",
    "quantize",
    "remove",
]

if TYPE_CHECKING:
    from quantkit.accuracy.gate import Thresholds
    from quantkit.api import bench, compare, quantize, remove
    from quantkit.bench.measure import BenchOptions
    from quantkit.cluster.photos import RayOptions
    from quantkit.errors import GateFailed, QuantkitError
    from quantkit.isa import TargetCpu
    from quantkit.ptq.options import QuantizeOptions
    from quantkit.ptq.report import CheckFailed
    from quantkit.removal.remove import RemoveOptions
    from quantkit.removal.session import Session, cutout, new_session
    from quantkit.runtime.base import RuntimeSettings


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'quantkit' has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(_EXPORTS[name]), name)
