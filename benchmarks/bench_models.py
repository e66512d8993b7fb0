"""Size, peak RSS and latency of FP32 u2netp, plain-ORT INT8 and quantkit's default INT8, on both runtimes.

One run: quantizes u2netp with the default recipe and with plain onnxruntime
(``naive``), then benches, each entry in its own process and runs interleaved:

1. FP32 / naive INT8 / default INT8 on onnxruntime's default session;
2. FP32 and default INT8 on onnxruntime with memory patterns off (what ``remove``
   and ``compare`` use) and on OpenVINO (f32 inference precision for float parts);
3. the same with ``--threads 1`` and with spinning off (``--no-spin``).

Writes ``benchmarks/results/bench_models.{json,md}`` with the targets of the
speed issue checked against the interleaved ratios.

    python benchmarks/bench_models.py [--runs 30]
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

from _common import CALIB, U2NETP, write

import quantkit
from quantkit.bench.measure import BenchReport
from quantkit.bench.table import markdown
from quantkit.passes.recipes import NAIVE
from quantkit.runtime.base import RuntimeName, RuntimeSettings

BOTH = (RuntimeName.ORT, RuntimeName.OPENVINO)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--images", type=Path, default=CALIB, help="photos fed to every model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        default = quantkit.quantize(
            U2NETP, output=Path(tmp) / "u2netp.int8.onnx", options=quantkit.QuantizeOptions(cache_dir=cache)
        ).output
        naive = quantkit.quantize(
            U2NETP,
            output=Path(tmp) / "u2netp.naive.onnx",
            options=quantkit.QuantizeOptions(cache_dir=cache, recipe=NAIVE),
        ).output
        base = quantkit.BenchOptions(images=args.images, runs=args.runs)
        runs = {
            "onnxruntime defaults": quantkit.bench(U2NETP, naive, default, options=base),
            "memory patterns off, onnxruntime and OpenVINO": quantkit.bench(
                U2NETP,
                default,
                options=replace(base, settings=RuntimeSettings(mem_pattern=False), runtimes=BOTH),
            ),
            "one thread": quantkit.bench(
                U2NETP,
                default,
                options=replace(base, settings=RuntimeSettings(threads=1, mem_pattern=False), runtimes=BOTH),
            ),
            "spinning off": quantkit.bench(
                U2NETP,
                default,
                options=replace(
                    base, settings=RuntimeSettings(spinning=False, mem_pattern=False), runtimes=BOTH
                ),
            ),
        }
    targets = check(runs["onnxruntime defaults"], runs["memory patterns off, onnxruntime and OpenVINO"])
    md = "".join(f"### {title}\n\n{markdown(report)}\n" for title, report in runs.items())
    md += "\n".join(f"- {line}" for line in targets) + "\n"
    print(md)
    write("bench_models", {**{k: v.to_dict() for k, v in runs.items()}, "targets": targets}, md)


def check(defaults: BenchReport, both: BenchReport) -> list[str]:
    fp32, _, default = defaults.results
    ort_fp32, ov_fp32, ort_int8, ov_int8 = both.results
    best = min(ort_int8.latency.p50_ms, ov_int8.latency.p50_ms) / ort_fp32.latency.p50_ms

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    latency = default.latency.p50_ms / fp32.latency.p50_ms
    serving = ort_int8.peak_rss_bytes / 2**20
    return [
        f"default INT8 on onnxruntime {latency:.3f}x FP32 (target <= 0.30x): {verdict(latency <= 0.30)}",
        f"default INT8 on the best runtime {best:.3f}x onnxruntime FP32 (target <= 0.22x): "
        f"{verdict(best <= 0.22)}",
        f"size {default.size_bytes / fp32.size_bytes:.3f}x FP32",
        f"serving peak RSS, INT8 on onnxruntime, memory patterns off: {serving:.0f} MiB (target <= 120 MiB): "
        f"{verdict(serving <= 120)}; OpenVINO {ov_int8.peak_rss_bytes / 2**20:.0f} MiB; "
        f"FP32 {ort_fp32.peak_rss_bytes / 2**20:.0f} / {ov_fp32.peak_rss_bytes / 2**20:.0f} MiB",
    ]


if __name__ == "__main__":
    main()
