"""Size, peak memory and latency of models, side by side, measured fairly.

Each model lives in its own child process (:mod:`quantkit.bench_worker`), so
peak RSS is per model. Timed runs are interleaved - a few runs of each model per
round, round after round - so that when a shared machine speeds up or slows
down, all models feel it alike and the ratios against the first model hold even
when the absolute milliseconds drift.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quantkit.errors import QuantkitError
from quantkit.images import SkipLog, iter_images, list_images
from quantkit.isa import cpu_name
from quantkit.preprocess import preprocess
from quantkit.progress import NullProgress, Progress
from quantkit.session import SessionSettings
from quantkit.spec import read_spec
from quantkit.timing import Latency


@dataclass(frozen=True)
class BenchOptions:
    models: tuple[Path, ...]
    images: Path | None = None
    runs: int = 20
    warmup: int = 3
    rounds: int = 4
    max_images: int = 8
    settings: SessionSettings = field(default_factory=SessionSettings)


@dataclass
class ModelBench:
    model: Path
    size_bytes: int
    load_seconds: float
    baseline_rss_bytes: int
    peak_rss_bytes: int
    latency: Latency

    @property
    def throughput(self) -> float:
        return 1000.0 / self.latency.mean_ms if self.latency.mean_ms > 0 else float("nan")

    def to_dict(self, reference: ModelBench, settings: SessionSettings) -> dict[str, Any]:
        return {
            "model": str(self.model),
            "size_bytes": self.size_bytes,
            "peak_rss_bytes": self.peak_rss_bytes,
            "baseline_rss_bytes": self.baseline_rss_bytes,
            "load_seconds": round(self.load_seconds, 4),
            "latency_ms": self.latency.to_dict(),
            "throughput_per_s": round(self.throughput, 3),
            "ratios": {
                "size": round(self.size_bytes / reference.size_bytes, 4),
                "latency_p50": round(self.latency.p50_ms / reference.latency.p50_ms, 4),
                "peak_rss": round(self.peak_rss_bytes / reference.peak_rss_bytes, 4),
            },
            "settings": settings.to_dict(),
        }


@dataclass
class BenchReport:
    results: list[ModelBench]
    options: BenchOptions
    environment: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        ref = self.results[0]
        return {
            "environment": self.environment,
            "runs": self.options.runs,
            "images": str(self.options.images) if self.options.images else None,
            "models": [r.to_dict(ref, self.options.settings) for r in self.results],
        }


def environment() -> dict[str, str]:
    import onnxruntime as ort

    return {
        "cpu": cpu_name(),
        "cpu_count": str(os.cpu_count()),
        "onnxruntime": ort.__version__,
        "python": sys.version.split()[0],
    }


class _Worker:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quantkit.bench_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )

    def ask(self, command: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write(json.dumps(command) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = ""
        if not line:
            raise QuantkitError("the benchmark child process died (out of memory?)")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise QuantkitError(str(reply["error"]))
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(QuantkitError):
                self.ask({"quit": True})
            self.proc.kill()
        self.proc.wait()


def _input_batches(options: BenchOptions, work: Path) -> list[tuple[str, Path]]:
    """Per model: its input name and a .npy of preprocessed inputs (shared when specs match)."""
    files = list_images(options.images, limit=options.max_images) if options.images else []
    batches: dict[tuple[object, ...], Path] = {}
    out = []
    for model in options.models:
        spec = read_spec(model)  # a clear error now beats a dead child later
        key = (spec.height, spec.width, spec.mean, spec.std)
        if key not in batches:
            tensors = [preprocess(image, spec) for _, image in iter_images(files, SkipLog())]
            if not tensors:  # no photos: a fixed pseudo-photo, the same for every model
                rng = np.random.default_rng(0)
                tensors = [rng.standard_normal((1, 3, spec.height, spec.width)).astype(np.float32)]
            batches[key] = work / f"inputs-{len(batches)}.npy"
            np.save(batches[key], np.stack(tensors))
        out.append((spec.input_name, batches[key]))
    return out


def bench(options: BenchOptions, progress: Progress | None = None) -> BenchReport:
    progress = progress or NullProgress()
    if not options.models:
        raise QuantkitError("bench needs at least one model")
    with tempfile.TemporaryDirectory(prefix="quantkit-bench-") as tmp:
        inputs = _input_batches(options, Path(tmp))
        return _bench(options, inputs, progress)


def _bench(options: BenchOptions, inputs: list[tuple[str, Path]], progress: Progress) -> BenchReport:
    workers: list[_Worker] = []
    try:
        loads = []
        progress.start("loading models (one process each)", len(options.models))
        for model, (input_name, batch) in zip(options.models, inputs, strict=True):
            worker = _Worker()
            workers.append(worker)
            command = {
                "model": str(model.resolve()),
                "input_name": input_name,
                "inputs": str(batch),
                **options.settings.to_dict(),
            }
            loads.append(worker.ask({"load": command}))
            progress.advance()
        for worker in workers:
            worker.ask({"run": options.warmup})
        timings: list[list[float]] = [[] for _ in workers]
        per_round = [
            options.runs // options.rounds + (1 if k < options.runs % options.rounds else 0)
            for k in range(options.rounds)
        ]
        progress.start("timing (models interleaved)", options.runs * len(workers))
        for count in per_round:
            if count == 0:
                continue
            for k, worker in enumerate(workers):
                timings[k] += worker.ask({"run": count})["seconds"]
                progress.advance(count)
        results = []
        for model, worker, load, seconds in zip(options.models, workers, loads, timings, strict=True):
            peak = int(worker.ask({"rss": True})["peak_rss_bytes"])
            results.append(
                ModelBench(
                    model=model,
                    size_bytes=model.stat().st_size,
                    load_seconds=float(load["load_seconds"]),
                    baseline_rss_bytes=int(load["baseline_rss_bytes"]),
                    peak_rss_bytes=peak,
                    latency=Latency.of(seconds),
                )
            )
    finally:
        for worker in workers:
            worker.close()
    return BenchReport(results, options, environment())


def markdown(report: BenchReport) -> str:
    ref = report.results[0]
    env = report.environment
    lines = [
        f"CPU: {env['cpu']} ({env['cpu_count']} logical cores), onnxruntime {env['onnxruntime']}, "
        f"{report.options.runs} timed runs per model, interleaved; settings: "
        + ", ".join(f"{k}={v}" for k, v in report.options.settings.to_dict().items()),
        "",
        "| model | size | size ratio | peak RSS | load | p50 latency | p90 | latency ratio | images/s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.results:
        cells = [
            r.model.name,
            f"{r.size_bytes / 1e6:.2f} MB",
            f"{r.size_bytes / ref.size_bytes:.3f}x",
            f"{r.peak_rss_bytes / 2**20:.0f} MiB",
            f"{r.load_seconds * 1000:.0f} ms",
            f"{r.latency.p50_ms:.1f} ms",
            f"{r.latency.p90_ms:.1f} ms",
            f"{r.latency.p50_ms / ref.latency.p50_ms:.3f}x",
            f"{r.throughput:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
