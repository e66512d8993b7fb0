"""``quantkit remove`` here and on Ray: photos/s with 1 and 2 Ray workers, and the driver's memory.

The default INT8 u2netp (quantized first, or ``--model``) cuts out ECSSD's first
``--limit`` photos (default 1,000) as RGBA PNGs, four ways, one after the other,
each in a fresh child process: here on onnxruntime's default threads (one per
core), here on 1 thread, and with ``--ray local`` on 1 and on 2 workers (one thread
each). For each: wall time (a Ray run includes starting its private instance),
seconds to the first result (the actors load the model then), photos/s from the
start of the photos to the last (so a short run understates Ray), the driver's
peak RSS (``VmHWM``; Ray's own processes are not the driver) and its RSS when 10%,
50% and 100% of the photos were done - flat if the driver's memory does not grow
with the number of photos - and whether every PNG has the same bytes as the
first run's. Skips, writing nothing, when ECSSD is not found (``--ecssd``,
``$QUANTKIT_ECSSD`` or ``../shared/datasets/ECSSD``). Writes
``benchmarks/results/ray_throughput.{json,md}``.

    python benchmarks/ray_throughput.py [--ecssd PATH] [--limit 1000] [--model INT8.onnx]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

from _common import U2NETP, ecssd, write

import quantkit
from quantkit.isa import host_isa
from quantkit.model.images import list_images
from quantkit.removal.session import SERVING
from quantkit.system import cpu_name

RUNS: dict[str, dict[str, Any]] = {
    "here, default threads": {"threads": 0, "ray_workers": None},
    "here, 1 thread": {"threads": 1, "ray_workers": None},
    "Ray local, 1 worker": {"threads": 1, "ray_workers": 1},
    "Ray local, 2 workers": {"threads": 1, "ray_workers": 2},
}
CHECKPOINTS = (0.1, 0.5, 1.0)  # shares of the photos at which the driver's RSS is read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ecssd")
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--model", type=Path, help="an INT8 model (default: quantize u2netp now)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one run, in its own process
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    data = ecssd(args.ecssd)
    if data is None:
        print("ECSSD not found (--ecssd, $QUANTKIT_ECSSD or ../shared/datasets/ECSSD): skipped")
        return
    files = list_images(data / "images", limit=args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            options = quantkit.QuantizeOptions(cache_dir=work / "cache")
            model = quantkit.quantize(U2NETP, output=work / "u2netp.int8.onnx", options=options).output
        results: dict[str, dict[str, Any]] = {}
        first: dict[str, str] | None = None
        for name, run in RUNS.items():
            out = work / f"out{len(results)}"
            spec = {**run, "model": str(model), "images": str(data / "images"), "limit": args.limit}
            spec["out"] = str(out)
            print(f"{name}: {len(files)} photos...", file=sys.stderr, flush=True)
            done = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(spec)],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                sys.exit(f"{name} failed ({done.returncode}):\n{done.stderr}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            digests = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}
            first = first or digests
            result["same_bytes_as_first"] = digests == first
            result["pngs"] = len(digests)
            results[name] = result
    md = markdown(results, len(files))
    print(md)
    payload = {
        "photos": f"first {len(files)} ECSSD photos",
        "cpu": cpu_name(),
        "isa": host_isa().describe(),
        "versions": {name: version(name) for name in ("quantkit", "onnxruntime", "ray")},
        "runs": results,
    }
    write("ray_throughput", payload, md)


def markdown(results: dict[str, dict[str, Any]], photos: int) -> str:
    base = results["here, default threads"]["photos_per_s"]
    rows = ""
    for name, r in results.items():
        at = " / ".join(f"{r['rss_mib_at'][str(c)]:.0f}" for c in CHECKPOINTS)
        rows += (
            f"| {name} | {r['seconds']:.1f} | {r['first_result_s']:.1f} | {r['photos_per_s']:.2f} "
            f"| {r['photos_per_s'] / base:.2f}x "
            f"| {r['peak_rss_mib']:.0f} | {at} | {'yes' if r['same_bytes_as_first'] else 'NO'} |\n"
        )
    return (
        f"`quantkit remove` with the default INT8 u2netp on the first {photos} ECSSD photos (RGBA PNGs), "
        f"{cpu_name()} ({host_isa().describe()}), onnxruntime {version('onnxruntime')}, "
        f"ray {version('ray')}; "
        "each run in a fresh process, one after the other. seconds: the whole call (a Ray run: with "
        "starting its instance); first result: seconds from the start of the photos (the actors load the "
        "model then; results come in blocks of up to 8); photos/s: from the start of the photos to the "
        "last; RSS: the driver process only.\n\n"
        "| run | seconds | first result s | photos/s | vs here | driver peak RSS MiB "
        "| driver RSS MiB at "
        + " / ".join(f"{c:.0%}" for c in CHECKPOINTS)
        + " | same PNG bytes |\n|---|---:|---:|---:|---:|---:|---:|---|\n"
        + rows
    )


class Meter:
    """A quantkit Progress that notes when the photos start and end and the RSS at checkpoints."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.started = 0.0
        self.ended = 0.0
        self.rss_at: dict[str, float] = {}
        self.first = 0.0  # when the first result came

    def start(self, label: str, total: int | None = None) -> None:
        if total:  # the photos' step (after Ray connected, for a Ray run)
            self.total, self.done, self.started = total, 0, time.perf_counter()

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        self.ended = time.perf_counter()
        self.first = self.first or self.ended
        for share in CHECKPOINTS:
            if str(share) not in self.rss_at and self.done >= share * self.total:
                self.rss_at[str(share)] = _status_mib("VmRSS")

    def warn(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr)


def child(spec: dict[str, Any]) -> None:
    settings = replace(SERVING, threads=spec["threads"])  # remove's own settings
    workers = spec["ray_workers"]
    ray = quantkit.RayOptions("local", workers=workers) if workers else None
    meter = Meter()
    began = time.perf_counter()
    report = quantkit.remove(
        spec["model"],
        list_images(Path(spec["images"]), limit=spec["limit"]),
        output_dir=spec["out"],
        options=quantkit.RemoveOptions(settings=settings),
        progress=meter,
        ray=ray,
    )
    seconds = time.perf_counter() - began
    result = {
        "seconds": seconds,
        "photos_per_s": meter.done / (meter.ended - meter.started),
        "first_result_s": meter.first - meter.started,
        "written": len(report.written),
        "skipped": len(report.skipped),
        "peak_rss_mib": _status_mib("VmHWM"),
        "rss_mib_at": meter.rss_at,
        "workers": workers,
        "threads": spec["threads"],
    }
    print(json.dumps(result))


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


if __name__ == "__main__":
    main()
