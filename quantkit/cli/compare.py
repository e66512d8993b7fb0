"""``quantkit compare``: do the models cut out the same thing? And the accuracy gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from quantkit.cli._ui import (
    ForceOption,
    JsonOption,
    RichProgress,
    ThreadsOption,
    check_json_target,
    emit_json,
    err_console,
    out_console,
)
from quantkit.compare import CompareReport, compare_models
from quantkit.errors import GateFailed, QuantkitError
from quantkit.gate import Thresholds, failures, from_pyproject
from quantkit.report import check_report_target, write_report
from quantkit.session import SessionSettings


def compare(
    models: Annotated[
        list[Path], typer.Argument(help="Reference (FP32) model first, then the models to check.")
    ],
    images: Annotated[Path, typer.Option("--images", help="Folder of photos to run every model on.")],
    masks: Annotated[
        Path | None,
        typer.Option("--masks", help="Ground-truth masks (same stem, .png) for max-F, MAE, S, E."),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Use the first N photos (sorted).")
    ] = None,
    min_iou: Annotated[
        float | None, typer.Option("--min-iou", help="Gate: mean IoU vs reference at least this.")
    ] = None,
    min_iou_p05: Annotated[
        float | None, typer.Option("--min-iou-p05", help="Gate: 5th-percentile IoU at least this.")
    ] = None,
    max_mae: Annotated[
        float | None, typer.Option("--max-mae", help="Gate: mean absolute difference at most this.")
    ] = None,
    max_maxf_drop: Annotated[
        float | None, typer.Option("--max-maxf-drop", help="Gate: ground-truth max-F drop at most this.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="pyproject.toml with [tool.quantkit.gate] [default: ./pyproject.toml if present].",
        ),
    ] = None,
    no_config: Annotated[
        bool, typer.Option("--no-config", help="Ignore [tool.quantkit.gate] thresholds.")
    ] = False,
    json_out: JsonOption = None,
    report_dir: Annotated[
        Path | None, typer.Option("--report", help="Write an HTML page of the worst photos here.")
    ] = None,
    worst: Annotated[int, typer.Option("--worst", min=1, help="How many worst photos to list and show.")] = 8,
    threads: ThreadsOption = 0,
    force: ForceOption = False,
) -> None:
    """Compare masks of a reference model and quantized models; exit 1 if a threshold is missed."""
    cli = Thresholds(min_iou, min_iou_p05, max_mae, max_maxf_drop)
    source = config if config is not None else Path("pyproject.toml")
    thresholds = cli
    if not no_config and (config is not None or source.is_file()):
        thresholds = cli.merged_over(from_pyproject(source))
    if thresholds.max_maxf_drop is not None and masks is None:
        if cli.max_maxf_drop is None:  # came from pyproject: only checkable with masks
            thresholds = Thresholds(thresholds.min_iou, thresholds.min_iou_p05, thresholds.max_mae, None)
        else:
            raise QuantkitError("--max-maxf-drop needs ground-truth masks (--masks DIR)")
    check_json_target(json_out, force)
    if report_dir is not None:
        check_report_target(report_dir, force)
    settings = SessionSettings(intra_threads=threads)
    with RichProgress() as progress:
        result = compare_models(
            models, images, masks_dir=masks, limit=limit, settings=settings, progress=progress
        )
    console = out_console(json_out)
    render(result, console, worst)
    failed = failures(result, thresholds)
    payload = result.to_dict(worst)
    payload["gate"] = {"thresholds": thresholds.to_dict(), "failures": failed, "passed": not failed}
    if report_dir is not None:
        page = write_report(result, report_dir, worst=worst, force=force, settings=settings)
        err_console.print(f"wrote {escape(str(page))}")
    emit_json(json_out, payload, force)
    if thresholds.any:
        if failed:
            raise GateFailed("accuracy gate failed:\n  " + "\n  ".join(failed))
        met = ", ".join(f"{k}={v}" for k, v in thresholds.to_dict().items() if v is not None)
        console.print(f"[green]gate passed[/] ({met})")


def render(result: CompareReport, console: Console, worst: int) -> None:
    ref = result.reference
    table = Table(
        title=f"mask agreement with {escape(ref.path.name)} on {result.images} photos", title_justify="left"
    )
    for column in ("model", "IoU mean", "IoU p05", "IoU min", "MAE", "max |diff|"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model in result.candidates:
        iou = model.agreement.iou
        table.add_row(
            escape(model.path.name),
            f"{iou.mean:.4f}",
            f"{iou.p05:.4f}",
            f"{iou.minimum:.4f}",
            f"{model.agreement.mae:.5f}",
            f"{model.agreement.max_abs:.3f}",
        )
    console.print(table)
    if ref.truth is not None:
        gt = Table(title=f"ground truth ({escape(str(result.masks_dir))})", title_justify="left")
        for column in ("model", "max-F", "MAE", "S-measure", "E-measure", "Δ max-F"):
            gt.add_column(column, justify="left" if column == "model" else "right")
        for model in result.models:
            if model.truth is None:
                continue
            delta = "" if model is ref else f"{model.truth.max_f - ref.truth.max_f:+.4f}"
            gt.add_row(
                escape(model.path.name),
                f"{model.truth.max_f:.4f}",
                f"{model.truth.mae:.4f}",
                f"{model.truth.s_measure:.4f}",
                f"{model.truth.e_measure:.4f}",
                delta,
            )
        console.print(gt)
    for model in result.candidates:
        names = ", ".join(f"{escape(name)} ({a.iou:.3f})" for name, a in model.agreement.worst(worst))
        console.print(f"worst for {escape(model.path.name)}: {names}")
