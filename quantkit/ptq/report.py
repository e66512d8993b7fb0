"""What ``quantize`` did, built once at the end from immutable parts.

Every pass contributes its own report (:class:`~quantkit.passes.base.PassReport`),
so the CLI table and ``--json`` show a new pass without either knowing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantkit import __version__
from quantkit.accuracy.check import CheckReport
from quantkit.errors import GateFailed
from quantkit.isa import IsaInfo
from quantkit.model.family import Detection
from quantkit.passes.base import PassReport
from quantkit.ptq.census import NodeCensus
from quantkit.ptq.options import QuantizeOptions


@dataclass(frozen=True)
class CalibrationReport:
    used: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    passes: int  # passes over the photos actually run (0: everything came from the cache)
    label: str = "calibration"

    def summary(self, method: str) -> str:
        skipped = f", {len(self.skipped)} skipped" if self.skipped else ""
        passes = f"{self.passes} passes over the photos" if self.passes else "from the cache"
        return f"{len(self.used)} photos{skipped}, {method}, {passes}"


@dataclass(frozen=True)
class QuantizeReport:
    model: Path
    output: Path
    detection: Detection
    recipe: str
    input_bytes: int
    output_bytes: int
    fp16: bool  # the input stored its weights in float16; quantize worked on its FP32 upcast
    float_bytes: int  # the FP32 model's size (the upcast's, for an FP16 input)
    seconds: float
    peak_rss_bytes: int | None
    opset_in: int
    opset_out: int
    calibration: CalibrationReport
    passes: tuple[tuple[str, PassReport], ...]  # (pass name, its report), in recipe order
    check: CheckReport | None
    census: NodeCensus
    isa: IsaInfo  # the CPU that quantized (the file does not depend on it; options.target_cpu decides)
    options: QuantizeOptions
    written: bool = True  # False: the check missed its target and the file was not kept

    @property
    def passed(self) -> bool:
        """Whether the held-out check reached its target (True when the recipe has no check)."""
        return self.check is None or self.check.passed

    @property
    def ratio(self) -> float:
        """INT8 size over FP32 size (the FP32 upcast's, for an FP16 input)."""
        return self.output_bytes / self.float_bytes if self.float_bytes else float("nan")

    def to_dict(self) -> dict[str, Any]:
        opts = self.options
        return {
            "model": str(self.model),
            "output": str(self.output),
            "family": {"name": self.detection.family.name, "detected_by": self.detection.by.value},
            "recipe": self.recipe,
            "input_precision": "fp16" if self.fp16 else "fp32",
            "input_bytes": self.input_bytes,
            "fp32_bytes": self.float_bytes,
            "output_bytes": self.output_bytes,
            "size_ratio": round(self.ratio, 4),
            "seconds": round(self.seconds, 1),
            "peak_rss_bytes": self.peak_rss_bytes,
            "opset": {"input": self.opset_in, "output": self.opset_out},
            "options": {
                "format": opts.fmt.value,
                "per_channel": opts.per_channel,
                "method": opts.method.value,
                "exclude": list(opts.exclude),
                "target_iou": opts.target_iou,
                "noise_margin": opts.noise_margin,
                "target_cpu": opts.target_cpu.value,
                "reduce_range": opts.target_cpu.reduce_range,
            },
            "calibration": {
                "used": list(self.calibration.used),
                "skipped": [{"file": f, "reason": r} for f, r in self.calibration.skipped],
                "passes": self.calibration.passes,
            },
            "passes": {name: report.to_dict() for name, report in self.passes},
            "held_out": self.check.to_dict() if self.check else None,
            "written": self.written,
            "passed": self.passed,
            "isa": {
                **self.isa.to_dict(),
                "target_cpu": opts.target_cpu.value,
                "weight_bits": opts.target_cpu.weight_bits,
                "reduce_range": opts.target_cpu.reduce_range,
                "check_runs_integer_kernels": self.isa.runs(opts.target_cpu),
            },
            "nodes": self.census.to_dict(),
            "quantkit_version": __version__,
        }


class CheckFailed(GateFailed):
    """The model was quantized, and its held-out check still misses the target after the search.

    A failed gate (exit code 1), not a result: on real IS-Net the check measured 0.52 against a
    floor of 0.995, and ``quantize`` used to write the file and exit 0 - in a pipeline nobody
    reads the summary. ``report`` says everything the run measured; ``report.written`` whether
    the file was kept (``keep_failed``) - without it nothing is at the output path.
    """

    def __init__(self, report: QuantizeReport) -> None:
        check = report.check
        verdict = check.verdict() if check is not None else "held-out check failed"
        kept = (
            f"kept {report.output} anyway (--keep-failed)"
            if report.written
            else "wrote nothing (--keep-failed writes it anyway)"
        )
        super().__init__(f"the quantized model failed its check: {verdict}; {kept}")
        self.report = report
