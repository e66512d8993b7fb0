"""The one call into onnxruntime's quantizer, with the choices quantkit makes for it.

QDQ (or QOperator) graphs, per-channel signed 8-bit weights, unsigned 8-bit
activations, ranges from a calibration cache measured beforehand
(:mod:`quantkit.ptq.ranges`) so the quantizer never calibrates itself - which
lets the accuracy search quantize a candidate again and again for the cost of
the quantization alone. 7-bit weights unless the file is made for VNNI CPUs only
(:mod:`quantkit.isa`): the CPU that quantizes never decides.
"""

from __future__ import annotations

from pathlib import Path

from quantkit.errors import QuantkitError
from quantkit.ptq.options import QuantFormat, QuantizeOptions
from quantkit.ptq.ranges import ort_method


def quantize_with_ranges(
    float_model: Path,
    ranges: Path,
    target: Path,
    options: QuantizeOptions,
    exclude: tuple[str, ...],
) -> None:
    """Quantize ``float_model`` with the ranges stored in ``ranges``; write ``target``."""
    from onnxruntime.quantization import QuantFormat as OrtFormat
    from onnxruntime.quantization import QuantType, quantize_static

    try:
        quantize_static(
            str(float_model),
            str(target),
            None,
            quant_format=OrtFormat.QDQ if options.fmt is QuantFormat.QDQ else OrtFormat.QOperator,
            per_channel=options.per_channel,
            reduce_range=options.target_cpu.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(exclude),
            calibrate_method=ort_method(options.method),
            calibration_cache_path=str(ranges),
        )
    except OSError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise QuantkitError(f"onnxruntime's quantize_static failed: {first[:200]}") from exc
