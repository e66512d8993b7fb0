"""``quantkit compare``: do the models cut out the same thing? And the accuracy gate."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from quantkit.accuracy.compare import CompareReport, plan_compare, run_compare
from quantkit.accuracy.gate import Thresholds, failures
from quantkit.accuracy.html import Verdict, write_report
from quantkit.cli._ui import (
    FamilyOption,
    ForceOption,
    JsonOption,
    NoSpinOption,
    RayOption,
    RayWorkersOption,
    RichProgress,
    RuntimeOption,
    ThreadsOption,
    emit_json,
    guard_json,
    note,
    ray_options,
    show,
    table,
)
from quantkit.cli.compare_config import thresholds_from
from quantkit.errors import GateFailed, QuantkitError
from quantkit.files.ownership import OutputKind
from quantkit.runtime.base import RuntimeName, RuntimeSettings

SHORT = "Mask agreement, ground truth, noise floor; the accuracy gate."
NAME = "compare"


def run(
    models: Annotated[
        list[Path],
        typer.Argument(
            metavar="REF MODEL...", help="Reference (FP32) model first, then the models to check."
        ),
    ],
    images: Annotated[
        Path, typer.Option("--images", metavar="DIR", help="Folder of photos to run every model on.")
    ],
    masks: Annotated[
        Path | None,
        typer.Option(
            "--masks",
            metavar="DIR",
            help="Ground-truth masks (same stem, .png) for max-F, MAE, S, E.",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", metavar="N", min=1, help="Use the first N photos (sorted).")
    ] = None,
    family: FamilyOption = None,
    min_iou: Annotated[
        float | None,
        typer.Option("--min-iou", metavar="IOU", help="Gate: mean IoU vs the reference at least this."),
    ] = None,
    min_iou_p05: Annotated[
        float | None,
        typer.Option("--min-iou-p05", metavar="IOU", help="Gate: 5th-percentile IoU at least this."),
    ] = None,
    max_mae: Annotated[
        float | None,
        typer.Option("--max-mae", metavar="MAE", help="Gate: mean absolute difference at most this."),
    ] = None,
    max_maxf_drop: Annotated[
        float | None,
        typer.Option(
            "--max-maxf-drop",
            metavar="DROP",
            help="Gate: ground-truth max-F drop at most this (needs --masks).",
        ),
    ] = None,
    within_noise: Annotated[
        float | None,
        typer.Option(
            "--within-noise",
            metavar="MARGIN",
            help="Gate: IoU mean and p05 at least the reference's own JPEG-95 stability "
            "less this margin (e.g. 0.005).",
        ),
    ] = None,
    no_noise_floor: Annotated[
        bool,
        typer.Option("--no-noise-floor", help="Skip the JPEG-95 noise floor (one inference less per photo)."),
    ] = False,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE",
            help="pyproject.toml holding a [tool.quantkit.gate] table. Default: ./pyproject.toml if present.",
            show_default=False,
        ),
    ] = None,
    no_config: Annotated[
        bool, typer.Option("--no-config", help="Ignore the thresholds of [tool.quantkit.gate].")
    ] = False,
    json_out: JsonOption = None,
    report_dir: Annotated[
        Path | None,
        typer.Option(
            "--report",
            metavar="DIR",
            help="Write an HTML page of the worst photos into this folder.",
            show_default=False,
        ),
    ] = None,
    worst: Annotated[
        int, typer.Option("--worst", metavar="N", min=1, help="How many worst photos to list and show.")
    ] = 8,
    runtime: RuntimeOption = RuntimeName.ORT,
    threads: ThreadsOption = 0,
    no_spin: NoSpinOption = False,
    force: ForceOption = False,
    ray: RayOption = None,
    ray_workers: RayWorkersOption = None,
) -> None:
    """Compare masks of a reference model and quantized models; exit 1 if a threshold is missed."""
    cluster = ray_options(ray, ray_workers)
    cli = Thresholds(min_iou, min_iou_p05, max_mae, max_maxf_drop, within_noise)
    thresholds = thresholds_from(cli, config, no_config, has_masks=masks is not None)
    if thresholds.within_noise is not None and no_noise_floor:
        raise QuantkitError("--within-noise needs the noise floor; drop --no-noise-floor")
    settings = RuntimeSettings(runtime=runtime, threads=threads, spinning=not no_spin, mem_pattern=False)
    with RichProgress() as progress:
        job = plan_compare(
            models,
            images=images,
            masks=masks,
            limit=limit,
            family=family,
            noise_floor=not no_noise_floor,
            settings=settings,
            force=force,
            progress=progress,
        )
        if config is not None:
            job.guard.add_inputs([config])
        guard_json(job.guard, json_out)
        if report_dir is not None:
            job.guard.folder(report_dir, OutputKind.REPORT, "--report")
        result = run_compare(job, progress, cluster)
        failed = failures(result, thresholds)
        if report_dir is not None:
            progress.start("writing the HTML report")
            page = write_report(result, report_dir, worst=worst, verdict=Verdict(thresholds, failed))
    show(render(result, worst), json_out)
    if report_dir is not None:
        note(f"wrote {page}")
    payload = result.to_dict(worst)
    payload["gate"] = {"thresholds": thresholds.to_dict(), "failures": failed, "passed": not failed}
    emit_json(json_out, payload, NAME)
    if thresholds.any:
        if failed:
            raise GateFailed("accuracy gate failed:\n  " + "\n  ".join(failed))
        met = ", ".join(
            f"{k.replace('_', '-')}={v}" for k, v in thresholds.to_dict().items() if v is not None
        )
        show(f"gate passed ({met})", json_out)


def render(result: CompareReport, worst: int) -> str:
    ref = result.reference
    header = ("model", "IoU mean", "IoU p05", "IoU min", "MAE", "max |diff|", "beyond floor")
    rows = []
    for model in result.candidates:
        iou, within = model.agreement.iou, result.within(model)
        rows.append(
            (
                model.path.name,
                f"{iou.mean:.4f}",
                f"{iou.p05:.4f}",
                f"{iou.minimum:.4f}",
                f"{model.agreement.mae:.5f}",
                f"{model.agreement.max_abs:.3f}",
                f"{100 * within.beyond_floor:.0f}%" if within else "-",
            )
        )
    if result.floor is not None:
        f = result.floor.iou
        rows.append(
            (
                "noise floor (JPEG-95)",
                f"{f.mean:.4f}",
                f"{f.p05:.4f}",
                f"{f.minimum:.4f}",
                f"{result.floor.mae:.5f}",
                f"{result.floor.max_abs:.3f}",
                "",
            )
        )
    parts = [
        f"mask agreement with {ref.path.name} on {result.images} photos",
        table(header, rows),
        f"CPU: {result.isa.describe()}; runtime {result.settings.runtime.value}",
    ]
    if ref.truth is not None:
        gt_rows = []
        for model in result.models:
            if model.truth is None:
                continue
            t = model.truth
            delta = "" if model is ref else f"{t.max_f - ref.truth.max_f:+.4f}"
            gt_rows.append(
                (
                    model.path.name,
                    f"{t.max_f:.4f}",
                    f"{t.mae:.4f}",
                    f"{t.s_measure:.4f}",
                    f"{t.e_measure:.4f}",
                    delta,
                )
            )
        parts += [
            "",
            f"ground truth ({result.masks_dir})",
            table(("model", "max-F", "MAE", "S", "E", "Δ max-F"), gt_rows),
        ]
    for model in result.candidates:
        names = ", ".join(f"{name} ({a.iou:.3f})" for name, a in model.agreement.worst(worst))
        parts += ["", f"worst for {model.path.name}: {names}"]
    return "\n".join(parts)
