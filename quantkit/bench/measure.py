"""Size, peak memory and latency of models on runtimes, side by side, measured fairly.

Each (model, runtime) pair lives in its own child process
(:mod:`quantkit.bench.worker`), so peak RSS is its own. Timed runs are
interleaved - a few runs of each entry per round, round after round - so that
when a shared machine speeds up or slows down, every entry feels it alike and
the ratios against the first entry hold even when the milliseconds drift
(±10% between runs on the 2-core development VM).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from quantkit.errors import QuantkitError
from quantkit.files.guard import OutputGuard
from quantkit.files.scratch import held_signals, scratch_dir
from quantkit.isa import IsaInfo, host_isa
from quantkit.model.images import SkipLog, iter_images, list_images
from quantkit.model.preprocess import preprocess
from quantkit.model.spec import ModelSpec, read_spec
from quantkit.progress import NullProgress, Progress
from quantkit.runtime.base import RuntimeName, RuntimeSettings
from quantkit.system import cpu_name

from .timing import Latency


@dataclass(frozen=True)
class BenchOptions:
    images: Path | None = None  # None: one fixed pseudo-photo, the same for every model
    runs: int = 20
    warmup: int = 3
    rounds: int = 4
    max_images: int = 8
    family: str | None = None
    settings: RuntimeSettings = field(default_factory=RuntimeSettings)
    runtimes: tuple[RuntimeName, ...] = (RuntimeName.ORT,)


@dataclass(frozen=True)
class Entry:
    model: Path
    runtime: RuntimeName

    @property
    def label(self) -> str:
        return f"{self.model} ({self.runtime.value})"


@dataclass(frozen=True)
class EntryResult:
    entry: Entry
    size_bytes: int
    load_seconds: float
    baseline_rss_bytes: int
    peak_rss_bytes: int
    latency: Latency

    @property
    def throughput(self) -> float:
        return 1000.0 / self.latency.mean_ms if self.latency.mean_ms > 0 else float("nan")

    def to_dict(self, reference: EntryResult) -> dict[str, Any]:
        return {
            "model": str(self.entry.model),
            "runtime": self.entry.runtime.value,
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
        }


@dataclass(frozen=True)
class BenchReport:
    results: tuple[EntryResult, ...]
    options: BenchOptions
    environment: dict[str, str]
    isa: IsaInfo  # INT8 speed depends on it: u2netp INT8 0.36x of FP32 time with VNNI, 0.53x on AVX2 (README)

    @property
    def reference(self) -> EntryResult:
        return self.results[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "isa": self.isa.to_dict(),
            "runs": self.options.runs,
            "images": str(self.options.images) if self.options.images else None,
            "settings": self.options.settings.to_dict(),
            "models": [r.to_dict(self.reference) for r in self.results],
        }


def environment(runtimes: tuple[RuntimeName, ...]) -> dict[str, str]:
    env = {"cpu": cpu_name(), "cpu_count": str(os.cpu_count()), "python": sys.version.split()[0]}
    packages = {RuntimeName.ORT: "onnxruntime", RuntimeName.OPENVINO: "openvino"}
    for runtime in runtimes:
        with contextlib.suppress(metadata.PackageNotFoundError):
            env[packages[runtime]] = metadata.version(packages[runtime])
    return env


class _Worker:
    def __init__(self, workers: list[_Worker]) -> None:
        """Start the child and add it to ``workers``, uncut by Ctrl-C or SIGTERM."""
        with held_signals():  # else a signal inside Popen leaves a child nobody can end
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "quantkit.bench.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
            workers.append(self)

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
        """End the child: EOF ends an idle one; one still timing (Ctrl-C, SIGTERM) is killed.

        No question is asked here: after an interrupt the pipe may hold half a reply.
        """
        with contextlib.suppress(OSError, ValueError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass(frozen=True)
class BenchJob:
    entries: tuple[Entry, ...]
    specs: dict[Path, ModelSpec]
    files: list[Path]
    options: BenchOptions
    guard: OutputGuard


def plan_bench(
    models: list[Path],
    *,
    options: BenchOptions | None = None,
    force: bool = False,
    progress: Progress | None = None,
) -> BenchJob:
    options = options or BenchOptions()
    progress = progress or NullProgress()
    if not models:
        raise QuantkitError("bench needs at least one model")
    if not options.runtimes:
        raise QuantkitError("bench needs at least one runtime")
    specs = {path: read_spec(path, options.family) for path in models}  # a clear error now beats a dead child
    for spec in specs.values():
        if spec.detection.note:
            progress.warn(f"{spec.path.name}: {spec.detection.note}")
    files = list_images(options.images, limit=options.max_images) if options.images else []
    entries = tuple(Entry(model, runtime) for model in models for runtime in options.runtimes)
    guard = OutputGuard(force=force)
    guard.add_inputs([*models, *([options.images] if options.images else [])])
    return BenchJob(entries, specs, files, options, guard)


def run_bench(job: BenchJob, progress: Progress | None = None) -> BenchReport:
    progress = progress or NullProgress()
    with scratch_dir("quantkit-bench-") as work:
        inputs = _input_batches(job, work)
        return _measure(job, inputs, progress)


def _input_batches(job: BenchJob, work: Path) -> dict[Path, Path]:
    """Per model: a .npy of preprocessed inputs (shared when the preprocessing is the same)."""
    batches: dict[tuple[object, ...], Path] = {}
    out: dict[Path, Path] = {}
    for model, spec in job.specs.items():
        key = (spec.height, spec.width, spec.mean, spec.std)
        if key not in batches:
            tensors = [preprocess(image, spec) for _, image in iter_images(job.files, SkipLog())]
            if not tensors:  # no photos: a fixed pseudo-photo, the same for every model
                rng = np.random.default_rng(0)
                tensors = [rng.standard_normal((1, 3, spec.height, spec.width)).astype(np.float32)]
            batches[key] = work / f"inputs-{len(batches)}.npy"
            np.save(batches[key], np.stack(tensors))
        out[model] = batches[key]
    return out


def _measure(job: BenchJob, inputs: dict[Path, Path], progress: Progress) -> BenchReport:
    options = job.options
    workers: list[_Worker] = []
    try:
        loads = []
        progress.start("loading models (one process each)", len(job.entries))
        for entry in job.entries:
            worker = _Worker(workers)
            settings = replace(options.settings, runtime=entry.runtime)
            command = {
                "model": str(entry.model.resolve()),
                "inputs": str(inputs[entry.model]),
                "mask_output": job.specs[entry.model].family.mask_output,
                "settings": settings.to_dict(),
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
        progress.start("timing (entries interleaved)", options.runs * len(workers))
        for count in per_round:
            if count == 0:
                continue
            for k, worker in enumerate(workers):
                timings[k] += worker.ask({"run": count})["seconds"]
                progress.advance(count)
        results = tuple(
            EntryResult(
                entry=entry,
                size_bytes=entry.model.stat().st_size,
                load_seconds=float(load["load_seconds"]),
                baseline_rss_bytes=int(load["baseline_rss_bytes"]),
                peak_rss_bytes=int(worker.ask({"rss": True})["peak_rss_bytes"]),
                latency=Latency.of(seconds),
            )
            for entry, worker, load, seconds in zip(job.entries, workers, loads, timings, strict=True)
        )
    finally:
        for worker in workers:
            worker.close()
    return BenchReport(results, options, environment(options.runtimes), host_isa())
