"""``quantkit bench``: size, peak RSS and latency of each model on each runtime, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from quantkit.bench.measure import BenchOptions, BenchReport, plan_bench, run_bench
from quantkit.bench.table import HEADER, caption, markdown, rows
from quantkit.cli._ui import (
    FamilyOption,
    ForceOption,
    JsonOption,
    NoSpinOption,
    RichProgress,
    ThreadsOption,
    emit_json,
    guard_json,
    note,
    show,
    table,
)
from quantkit.files.atomic import write_text
from quantkit.files.ownership import OutputKind
from quantkit.runtime.base import OptLevel, RuntimeName, RuntimeSettings

SHORT = "Size, peak memory and latency, side by side."
NAME = "bench"


def run(
    models: Annotated[
        list[Path],
        typer.Argument(metavar="MODEL...", help="Models to measure; ratios are against the first."),
    ],
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            metavar="DIR",
            help="Photos to feed, the same for every model. Default: one fixed synthetic input.",
            show_default=False,
        ),
    ] = None,
    runtime: Annotated[
        list[RuntimeName] | None,
        typer.Option(
            "--runtime",
            metavar="ort|openvino",
            help="Runtime(s); repeat to put each model on several side by side (openvino: pip install "
            "quantkit[openvino]). Default: ort.",
            show_default=False,
        ),
    ] = None,
    runs: Annotated[int, typer.Option("--runs", metavar="N", min=1, help="Timed runs per model.")] = 20,
    warmup: Annotated[
        int, typer.Option("--warmup", metavar="N", min=0, help="Untimed runs per model first.")
    ] = 3,
    family: FamilyOption = None,
    threads: ThreadsOption = 0,
    no_spin: NoSpinOption = False,
    inter_threads: Annotated[
        int, typer.Option("--inter-threads", metavar="N", min=0, help="Inter-op threads (onnxruntime).")
    ] = 0,
    no_arena: Annotated[
        bool, typer.Option("--no-arena", help="Disable the CPU memory arena (onnxruntime).")
    ] = False,
    no_mem_pattern: Annotated[
        bool, typer.Option("--no-mem-pattern", help="Disable memory pattern planning (onnxruntime).")
    ] = False,
    opt_level: Annotated[
        OptLevel,
        typer.Option(
            "--opt-level",
            metavar="disable|basic|extended|all",
            help="Graph optimisation level (onnxruntime).",
        ),
    ] = OptLevel.ALL,
    provider: Annotated[
        str, typer.Option("--provider", metavar="NAME", help="Execution provider (onnxruntime).")
    ] = "CPUExecutionProvider",
    json_out: JsonOption = None,
    markdown_out: Annotated[
        Path | None,
        typer.Option(
            "--markdown", metavar="FILE", help="Write the table as Markdown here.", show_default=False
        ),
    ] = None,
    force: ForceOption = False,
) -> None:
    """Measure models in separate processes, interleaved, on the same inputs."""
    settings = RuntimeSettings(
        threads=threads,
        inter_threads=inter_threads,
        spinning=not no_spin,
        cpu_arena=not no_arena,
        mem_pattern=not no_mem_pattern,
        opt_level=opt_level,
        provider=provider,
    )
    runtimes = tuple(dict.fromkeys(runtime or [RuntimeName.ORT]))
    options = BenchOptions(
        images=images, runs=runs, warmup=warmup, family=family, settings=settings, runtimes=runtimes
    )
    with RichProgress() as progress:
        job = plan_bench(models, options=options, force=force, progress=progress)
        guard_json(job.guard, json_out)
        if markdown_out is not None:
            job.guard.file(markdown_out, OutputKind.MARKDOWN, "--markdown")
        report = run_bench(job, progress)
    show(render(report), json_out)
    emit_json(json_out, report.to_dict(), NAME)
    if markdown_out is not None:
        write_text(markdown_out, markdown(report))
        note(f"wrote {markdown_out}")


def render(report: BenchReport) -> str:
    models = [
        f"  {k}  {r.entry.model} ({r.entry.runtime.value})" for k, r in enumerate(report.results, start=1)
    ]
    return "\n".join(
        [f"quantkit bench: {caption(report)}", *models, "", table(HEADER, rows(report), first_left=False)]
    )
