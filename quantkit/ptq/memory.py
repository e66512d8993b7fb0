"""Refusing early, in one line, a model too big for this machine.

Without this, a model that cannot fit runs for minutes and is then killed by
the kernel's OOM killer - no message, no cleanup. The estimate is what
quantization holds at its peak: a few copies of the weights (the proto, the
onnxruntime session, the quantizer's copy) and one inference's working set,
which onnxruntime keeps at about twelve times the largest activation tensor
(measured: u2netp at 1024 px peaks at 3.2 GiB for plain inference, its largest
tensor being 268 MB; at 320 px 355 MiB for 26 MB).
"""

from __future__ import annotations

from pathlib import Path

import onnx

from quantkit.errors import QuantkitError
from quantkit.graph.prepare import with_static_input
from quantkit.graph.shapes import light_copy, tensor_bytes
from quantkit.model.spec import ModelSpec
from quantkit.system import available_memory_bytes, peak_rss_bytes

WEIGHT_COPIES = 4
ACTIVATION_FACTOR = 12
BASE_BYTES = 300 * 2**20  # the interpreter, numpy, onnx and onnxruntime themselves


def estimated_bytes(model_bytes: int, largest_activation: int) -> int:
    return BASE_BYTES + WEIGHT_COPIES * model_bytes + ACTIVATION_FACTOR * largest_activation


def largest_activation(model: onnx.ModelProto, spec: ModelSpec) -> int:
    """Bytes of the largest tensor of ``model`` at the size it will be calibrated at."""
    static = with_static_input(light_copy(model), spec.height, spec.width)
    return max(tensor_bytes(static).values(), default=0)


def check_memory(path: Path, model: onnx.ModelProto, spec: ModelSpec) -> None:
    """Raise if quantizing ``model`` clearly cannot fit in the memory available now."""
    available = available_memory_bytes()
    if available is None:
        return
    weights = path.stat().st_size * (2 if spec.fp16 else 1)  # an FP16 model is quantized as its FP32 upcast
    need = estimated_bytes(weights, largest_activation(model, spec))
    have = available + (peak_rss_bytes() or 0)
    if need > have:
        raise QuantkitError(
            f"quantizing {path.name} at {spec.width}x{spec.height} needs about {need / 2**30:.1f} GiB "
            "of memory; "
            f"{have / 2**30:.1f} GiB is available"
        )
