"""Opset versions: what quantization needs, and upgrading older exports to it."""

from __future__ import annotations

import onnx
from onnx import version_converter

from quantkit.errors import QuantkitError

# Per-channel QDQ (axis attribute on QuantizeLinear/DequantizeLinear) arrived in opset 13.
MIN_QDQ_OPSET = 13


def ai_onnx_opset(model: onnx.ModelProto) -> int:
    return max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def upgrade_opset(model: onnx.ModelProto, target: int = MIN_QDQ_OPSET) -> onnx.ModelProto:
    """Return ``model`` at opset >= ``target``; older exports (PyTorch's opset 11) need it."""
    if ai_onnx_opset(model) >= target:
        return model
    try:
        return version_converter.convert_version(model, target)
    except Exception as exc:
        raise QuantkitError(
            f"cannot convert the model from opset {ai_onnx_opset(model)} to {target} "
            f"({str(exc).splitlines()[0][:160]})"
        ) from exc
