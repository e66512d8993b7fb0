"""``quantkit quantize``: FP32 ONNX in, INT8 ONNX out, with a summary of what changed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from quantkit.calibrate import CalibMethod
from quantkit.cli._ui import (
    ForceOption,
    JsonOption,
    RichProgress,
    check_json_target,
    emit_json,
    human_bytes,
    out_console,
)
from quantkit.quantize import QuantFormat, QuantizeOptions, QuantizeReport, Recipe
from quantkit.quantize import quantize as run


def quantize(
    model: Annotated[Path, typer.Argument(help="FP32 ONNX model (u2net, u2netp, u2net_human_seg, silueta).")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="INT8 model to write [default: MODEL.int8.onnx].")
    ] = None,
    calib: Annotated[
        Path | None, typer.Option("--calib", help="Folder of calibration photos [default: ./calib_images].")
    ] = None,
    calib_limit: Annotated[
        int | None,
        typer.Option("--calib-limit", min=1, help="Use at most N calibration photos (sorted by name)."),
    ] = None,
    recipe: Annotated[
        Recipe,
        typer.Option("--recipe", help="default: keeps the masks; naive: plain onnxruntime quantize_static."),
    ] = Recipe.DEFAULT,
    fmt: Annotated[QuantFormat, typer.Option("--format", help="QDQ or QOperator graph.")] = QuantFormat.QDQ,
    per_channel: Annotated[
        bool, typer.Option("--per-channel/--no-per-channel", help="Per-output-channel weight scales.")
    ] = True,
    method: Annotated[
        CalibMethod, typer.Option("--method", help="Activation range calibration.")
    ] = CalibMethod.MINMAX,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="Keep this node in float (repeatable).")
    ] = None,
    eval_dir: Annotated[
        Path | None,
        typer.Option(
            "--eval", help="Photos to check masks on [default: every 4th calibration photo, held out]."
        ),
    ] = None,
    eval_limit: Annotated[int, typer.Option("--eval-limit", min=1, help="Check on at most N photos.")] = 64,
    target_iou: Annotated[
        float,
        typer.Option(
            "--target-iou", min=0.0, max=1.0, help="Mean mask IoU vs FP32 to reach on the check photos."
        ),
    ] = 0.95,
    search_seconds: Annotated[
        float, typer.Option("--search-seconds", min=0.0, help="Time budget of the mixed-precision search.")
    ] = 120.0,
    max_slowdown: Annotated[
        float,
        typer.Option(
            "--max-slowdown", min=0.0, help="Latency the search may add (estimated), e.g. 0.06 = 6%."
        ),
    ] = 0.06,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not reuse or store calibration ranges.")
    ] = False,
    force: ForceOption = False,
    json_out: JsonOption = None,
) -> None:
    """Quantize an FP32 U²-Net model to INT8, keeping its masks."""
    options = QuantizeOptions(
        model=model,
        output=output,
        calib_dir=calib,
        calib_limit=calib_limit,
        recipe=recipe,
        fmt=fmt,
        per_channel=per_channel,
        method=method,
        exclude=tuple(exclude or ()),
        force=force,
        eval_dir=eval_dir,
        eval_limit=eval_limit,
        target_iou=target_iou,
        search_seconds=search_seconds,
        max_slowdown=max_slowdown,
        use_cache=not no_cache,
    )
    check_json_target(json_out, force)
    with RichProgress() as progress:
        report = run(options, progress)
    render(report, out_console(json_out))
    emit_json(json_out, report.to_dict(), force)


def render(report: QuantizeReport, console) -> None:  # type: ignore[no-untyped-def]
    table = Table(
        title=f"quantkit quantize ({report.recipe.value} recipe)", show_header=False, title_justify="left"
    )
    table.add_column(style="bold")
    table.add_column()
    table.add_row(
        "input", f"{escape(str(report.model))}  {human_bytes(report.input_bytes)}  (opset {report.opset_in})"
    )
    table.add_row(
        "output",
        f"{escape(str(report.output))}  {human_bytes(report.output_bytes)}  (opset {report.opset_out})",
    )
    table.add_row("size ratio", f"{report.ratio:.3f}x")
    skipped = f", {len(report.calib_skipped)} skipped" if report.calib_skipped else ""
    table.add_row("calibration", f"{len(report.calib_used)} photos{skipped}, {report.options.method.value}")
    census = report.census
    floats = ", ".join(f"{name} ({op})" for name, op in census.float_nodes) or "none"
    moves = f" (+{len(census.float_moves)} float Slice/Pad-type data moves)" if census.float_moves else ""
    table.add_row(
        "nodes", f"{len(census.quantized)} quantized, {len(census.float_nodes)} float compute{moves}"
    )
    table.add_row("stayed float", escape(floats))
    if report.offsets:
        table.add_row(
            "offsets absorbed",
            escape(", ".join(f"{o.producer}[{o.channel}] {o.offset:.1f}" for o in report.offsets)),
        )
    if report.equalization:
        eq = report.equalization
        table.add_row(
            "equalised", f"{eq.groups} channel groups, scales {eq.scale_min:.2f}..{eq.scale_max:.2f}"
        )
    if report.widening and (report.widening.widened_outputs or report.widening.widened_inputs):
        wide = report.widening
        table.add_row(
            "widened for speed",
            escape(
                ", ".join(
                    [
                        *(f"{n} (outputs)" for n in wide.widened_outputs),
                        *(f"{n} (input)" for n in wide.widened_inputs),
                    ]
                )
            ),
        )
    if report.held_out_before_search is not None:
        before = report.held_out_before_search
        table.add_row(
            "held-out IoU",
            f"mean {before.mean:.4f}, min {before.minimum:.4f} on {len(report.eval_images)} photos "
            f"(target {report.options.target_iou:.3f})",
        )
    if report.search is not None:
        for island in report.search.chosen:
            table.add_row(
                "kept float",
                f"{escape(', '.join(island.nodes))}: IoU {island.iou_before:.4f} -> {island.iou_after:.4f}, "
                f"~{100 * island.estimated_cost:+.1f}% latency (estimated)",
            )
        table.add_row(
            "search",
            f"{report.search.tried} candidates, {report.search.seconds:.0f}s, "
            f"{report.search.stopped_because}",
        )
    if report.isa.reduce_range:
        table.add_row("ISA", "no VNNI: 7-bit weights (reduce_range) to avoid U8S8 saturation")
    table.add_row("time", f"{report.seconds:.1f}s")
    console.print(table)
