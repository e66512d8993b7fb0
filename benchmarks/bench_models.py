"""Size, peak RSS and latency of FP32 u2netp, plain-ORT INT8 and quantkit's default INT8.

One run: quantizes u2netp with the default recipe and with plain onnxruntime
defaults (``--recipe naive``), then benches FP32 / naive INT8 / default INT8 with
onnxruntime's default session (CPU memory arena on, memory patterns on), and
FP32 / default INT8 with memory patterns off and with the arena off - each model
in its own process, runs interleaved (see ``quantkit.bench``). Writes
``benchmarks/results/bench_models.{json,md}``.

    python benchmarks/bench_models.py [--runs 30]

Targets (issue 4): default INT8 latency <= 0.45x FP32, peak RSS <= 200 MB with the
arena on, size <= 0.30x.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import replace
from pathlib import Path

from _common import CALIB, U2NETP, write

from quantkit.bench import BenchOptions, BenchReport, bench, markdown
from quantkit.quantize import QuantizeOptions, Recipe, quantize
from quantkit.session import SessionSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--images", type=Path, default=CALIB, help="photos fed to every model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["QUANTKIT_CACHE_DIR"] = str(Path(tmp) / "cache")
        default = Path(tmp) / "u2netp.int8.onnx"
        naive = Path(tmp) / "u2netp.naive-int8.onnx"
        quantize(QuantizeOptions(model=U2NETP, output=default, calib_dir=CALIB))
        quantize(QuantizeOptions(model=U2NETP, output=naive, calib_dir=CALIB, recipe=Recipe.NAIVE))
        base = BenchOptions(models=(U2NETP, naive, default), images=args.images, runs=args.runs)
        defaults = bench(base)
        pair = replace(base, models=(U2NETP, default))
        no_pattern = bench(replace(pair, settings=SessionSettings(mem_pattern=False)))
        no_arena = bench(replace(pair, settings=SessionSettings(cpu_arena=False)))
    targets = check(defaults, no_pattern)
    md = (
        "### onnxruntime's default session (arena on, memory patterns on)\n\n"
        + markdown(defaults)
        + "\n### Arena on, memory patterns off (`--no-mem-pattern`)\n\n"
        + markdown(no_pattern)
        + "\n### Arena off (`--no-arena`)\n\n"
        + markdown(no_arena)
        + "\n"
        + "\n".join(f"- {line}" for line in targets)
        + "\n"
    )
    print(md)
    payload = {
        "defaults": defaults.to_dict(),
        "no_mem_pattern": no_pattern.to_dict(),
        "no_arena": no_arena.to_dict(),
        "targets": targets,
    }
    write("bench_models", payload, md)


def check(defaults: BenchReport, no_pattern: BenchReport) -> list[str]:
    fp32, _, default = defaults.results
    latency = default.latency.p50_ms / fp32.latency.p50_ms
    size = default.size_bytes / fp32.size_bytes
    rss = default.peak_rss_bytes / 2**20
    rss_tuned = no_pattern.results[1].peak_rss_bytes / 2**20
    rss_ok = min(rss, rss_tuned) * 2**20 <= 200e6

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    return [
        f"default INT8 latency {latency:.3f}x FP32 (target <= 0.45x): {verdict(latency <= 0.45)}",
        f"default INT8 size {size:.3f}x FP32 (target <= 0.30x): {verdict(size <= 0.30)}",
        f"default INT8 peak RSS, arena on: {rss:.0f} MiB with memory patterns on, "
        f"{rss_tuned:.0f} MiB with them off (target <= 200 MB): {verdict(rss_ok)}",
    ]


if __name__ == "__main__":
    main()
