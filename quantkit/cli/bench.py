"""``quantkit bench``: size, peak RSS and latency of each model, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from quantkit.bench import BenchOptions, markdown
from quantkit.bench import bench as run
from quantkit.cli._ui import (
    ForceOption,
    JsonOption,
    RichProgress,
    ThreadsOption,
    check_json_target,
    emit_json,
    err_console,
    human_bytes,
    out_console,
)
from quantkit.fileio import check_writable, write_text
from quantkit.session import OptLevel, SessionSettings


def bench(
    models: Annotated[list[Path], typer.Argument(help="Models to measure; ratios are against the first.")],
    images: Annotated[
        Path | None,
        typer.Option(
            "--images", help="Photos to feed (same for every model) [default: a fixed synthetic input]."
        ),
    ] = None,
    runs: Annotated[int, typer.Option("--runs", min=1, help="Timed runs per model.")] = 20,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="Untimed runs per model first.")] = 3,
    threads: ThreadsOption = 0,
    inter_threads: Annotated[int, typer.Option("--inter-threads", min=0, help="Inter-op threads.")] = 0,
    no_arena: Annotated[bool, typer.Option("--no-arena", help="Disable the CPU memory arena.")] = False,
    no_mem_pattern: Annotated[
        bool, typer.Option("--no-mem-pattern", help="Disable memory pattern planning.")
    ] = False,
    opt_level: Annotated[
        OptLevel, typer.Option("--opt-level", help="Graph optimisation level.")
    ] = OptLevel.ALL,
    provider: Annotated[
        str, typer.Option("--provider", help="onnxruntime execution provider.")
    ] = "CPUExecutionProvider",
    json_out: JsonOption = None,
    markdown_out: Annotated[
        Path | None, typer.Option("--markdown", help="Write a Markdown table here.")
    ] = None,
    force: ForceOption = False,
) -> None:
    """Measure models in separate processes, interleaved, with the same inputs."""
    check_json_target(json_out, force)
    if markdown_out is not None:
        check_writable(markdown_out, force=force)
    settings = SessionSettings(
        intra_threads=threads,
        inter_threads=inter_threads,
        cpu_arena=not no_arena,
        mem_pattern=not no_mem_pattern,
        opt_level=opt_level,
        provider=provider,
    )
    options = BenchOptions(models=tuple(models), images=images, runs=runs, warmup=warmup, settings=settings)
    with RichProgress() as progress:
        report = run(options, progress)
    console = out_console(json_out)
    ref = report.results[0]
    env = report.environment
    table = Table(
        title=f"quantkit bench ({env['cpu']}, onnxruntime {env['onnxruntime']})",
        title_justify="left",
    )
    for column in ("model", "size", "×size", "peak RSS", "load", "p50", "p90", "mean", "×latency", "img/s"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in report.results:
        table.add_row(
            escape(r.model.name),
            human_bytes(r.size_bytes),
            f"{r.size_bytes / ref.size_bytes:.3f}",
            human_bytes(r.peak_rss_bytes),
            f"{r.load_seconds * 1000:.0f} ms",
            f"{r.latency.p50_ms:.1f} ms",
            f"{r.latency.p90_ms:.1f} ms",
            f"{r.latency.mean_ms:.1f} ms",
            f"{r.latency.p50_ms / ref.latency.p50_ms:.3f}",
            f"{r.throughput:.2f}",
        )
    console.print(table)
    emit_json(json_out, report.to_dict(), force)
    if markdown_out is not None:
        write_text(markdown_out, markdown(report), force=force)
        err_console.print(f"wrote {escape(str(markdown_out))}")
