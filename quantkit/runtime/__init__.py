"""Runtimes behind one seam: everything that runs a model for its masks or its speed.

``compare``, ``remove``, the held-out check and ``bench`` (in its child processes) ask for
a runner through :func:`open_runner`; which engine runs it is a setting, not a branch in
each caller. Adding a runtime is one module and one entry in ``_OPENERS``. It is also the
one place a file made for VNNI CPUs is refused on a CPU that would compute it wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from quantkit.errors import QuantkitError
from quantkit.files.ownership import TARGET_CPU_KEY
from quantkit.isa import IsaInfo, TargetCpu, host_isa
from quantkit.model.metadata import read_metadata
from quantkit.runtime.base import OptLevel, Runner, RuntimeName, RuntimeSettings


def _ort(model: Path, settings: RuntimeSettings, output: int) -> Runner:
    from quantkit.runtime.ort import OrtRunner

    return OrtRunner(model, settings, output)


def _openvino(model: Path, settings: RuntimeSettings, output: int) -> Runner:
    from quantkit.runtime.openvino import OpenVinoRunner

    return OpenVinoRunner(model, settings, output)


_OPENERS: dict[RuntimeName, Callable[[Path, RuntimeSettings, int], Runner]] = {
    RuntimeName.ORT: _ort,
    RuntimeName.OPENVINO: _openvino,
}


def open_runner(
    model: Path, settings: RuntimeSettings | None = None, output: int = 0, *, isa: IsaInfo | None = None
) -> Runner:
    """Load ``model`` on the runtime ``settings`` names; read output ``output`` (the mask).

    Refuses a model made for VNNI CPUs where ``isa`` (this CPU unless given) lacks VNNI.
    """
    settings = settings or RuntimeSettings()
    check_target_cpu(model, settings, isa or host_isa())
    return _OPENERS[settings.runtime](model, settings, output)


def integer_kernels(settings: RuntimeSettings) -> bool:
    """Whether ``settings`` run a QDQ model's convolutions on integer kernels.

    onnxruntime fuses DequantizeLinear -> Conv -> QuantizeLinear into an integer convolution
    only when it optimises the graph; with optimisations off it runs the graph as written,
    the convolution in float on the dequantized weights - what a VNNI CPU's exact int32
    sums compute, up to float rounding, on any CPU.
    """
    return not (settings.runtime is RuntimeName.ORT and settings.opt_level is OptLevel.DISABLE)


def check_target_cpu(model: Path, settings: RuntimeSettings, isa: IsaInfo) -> None:
    """Refuse to run ``model`` here if it was made for CPUs this one is not (``--target-cpu``).

    Refused, not run with a warning: a VNNI file on an AVX2 CPU runs as fast as ever and
    without an error, and its masks are wrong (u2netp's held-out IoU vs FP32 0.80 where the
    same file scores 0.98 on a VNNI CPU). A warning scrolls past in a pipeline; every figure
    that compare, bench or remove printed beside it would belong to a model that does not
    work on that machine. The one run allowed is onnxruntime with graph optimisations off
    (:func:`integer_kernels`), which computes the file right, only slower.
    """
    value = read_metadata(model).get(TARGET_CPU_KEY)
    if value is None:
        return
    try:
        target = TargetCpu(value)
    except ValueError:
        raise QuantkitError(
            f"model {model} was made for CPU target '{value}', which this quantkit does not know; "
            "upgrade quantkit"
        ) from None
    if not isa.runs(target) and integer_kernels(settings):
        raise QuantkitError(
            f"model {model} was quantized with --target-cpu {target.value} ({target.weight_bits}-bit "
            f"weights) and this CPU ({isa.describe()}) would compute its masks wrong; quantize it "
            "again without --target-cpu for a file that runs on every CPU"
        )
