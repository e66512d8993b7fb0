"""``quantkit quantize``: FP32 ONNX in, INT8 ONNX out, with a summary of what changed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from quantkit.cli._ui import (
    FamilyOption,
    ForceOption,
    JsonOption,
    RichProgress,
    emit_json,
    guard_json,
    pairs,
    show,
)
from quantkit.isa import TargetCpu
from quantkit.passes.recipes import RECIPES, get_recipe
from quantkit.ptq.options import MAX_CLIP_TAIL, CalibMethod, QuantFormat, QuantizeOptions
from quantkit.ptq.pipeline import plan_quantize, run_quantize
from quantkit.ptq.report import CheckFailed, QuantizeReport

SHORT = "FP32 model in, INT8 model out, masks kept."
NAME = "quantize"


def run(
    model: Annotated[
        Path,
        typer.Argument(metavar="MODEL", help="FP32 ONNX model of a U²-Net or IS-Net family (rembg's file)."),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            metavar="FILE",
            help="INT8 model to write. Default: MODEL.int8.onnx.",
            show_default=False,
        ),
    ] = None,
    calib: Annotated[
        Path | None,
        typer.Option(
            "--calib",
            metavar="DIR",
            help="Folder of calibration photos. Default: the 22 photos bundled with quantkit.",
            show_default=False,
        ),
    ] = None,
    calib_limit: Annotated[
        int | None,
        typer.Option(
            "--calib-limit", metavar="N", min=1, help="Use at most N calibration photos (sorted by name)."
        ),
    ] = None,
    recipe: Annotated[
        str,
        typer.Option(
            "--recipe",
            metavar="NAME",
            help="default: keeps the masks (absorb, equalize, widen, check); "
            "naive: plain onnxruntime quantize_static. "
            f"One of: {', '.join(RECIPES)}.",
        ),
    ] = "default",
    family: FamilyOption = None,
    fmt: Annotated[
        QuantFormat, typer.Option("--format", metavar="qdq|qoperator", help="QDQ or QOperator graph.")
    ] = QuantFormat.QDQ,
    per_channel: Annotated[
        bool, typer.Option("--per-channel/--no-per-channel", help="Per-output-channel weight scales.")
    ] = True,
    method: Annotated[
        CalibMethod,
        typer.Option(
            "--method",
            metavar="minmax|entropy|percentile|distribution",
            help="Activation range calibration (histogram methods take one pass per chunk).",
        ),
    ] = CalibMethod.MINMAX,
    clip_tail: Annotated[
        float | None,
        typer.Option(
            "--clip-tail",
            metavar="SHARE",
            min=0.0,
            max=MAX_CLIP_TAIL,
            help="minmax: the share of each activation's values its range may leave outside "
            "(0: exact min and max). Default: the recipe's (5e-5 for default, 0 for naive).",
            show_default=False,
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude", metavar="NODE", help="Keep this node in float (repeatable).", show_default=False
        ),
    ] = None,
    eval_dir: Annotated[
        Path | None,
        typer.Option(
            "--eval",
            metavar="DIR",
            help="Photos to check the masks on. Default: every 4th calibration photo, held out.",
            show_default=False,
        ),
    ] = None,
    eval_limit: Annotated[
        int, typer.Option("--eval-limit", metavar="N", min=1, help="Check on at most N photos.")
    ] = 64,
    target_iou: Annotated[
        float | None,
        typer.Option(
            "--target-iou",
            metavar="IOU",
            min=0.0,
            max=1.0,
            help="Mean IoU vs FP32 the check must reach. Default: the FP32 model's own JPEG-95 stability "
            "on the same photos, less --noise-margin.",
            show_default=False,
        ),
    ] = None,
    noise_margin: Annotated[
        float,
        typer.Option(
            "--noise-margin",
            metavar="MARGIN",
            min=0.0,
            max=1.0,
            help="How far below the noise floor still passes.",
        ),
    ] = 0.005,
    search_seconds: Annotated[
        float,
        typer.Option(
            "--search-seconds",
            metavar="SECONDS",
            min=0.0,
            help="Time cap of the mixed-precision search (a safety net).",
        ),
    ] = 120.0,
    max_slowdown: Annotated[
        float,
        typer.Option(
            "--max-slowdown",
            metavar="FRACTION",
            min=0.0,
            help="Latency the search may add (estimated), e.g. 0.06 = 6%.",
        ),
    ] = 0.06,
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            metavar="DIR",
            help="Where measured statistics are cached. "
            "Default: $QUANTKIT_CACHE_DIR or the platform's cache folder.",
            show_default=False,
        ),
    ] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Do not reuse or store measured statistics.")
    ] = False,
    target_cpu: Annotated[
        TargetCpu,
        typer.Option(
            "--target-cpu",
            metavar="any|vnni",
            help="any: 7-bit weights, right on every CPU. vnni: 8-bit weights, for CPUs with "
            "AVX-512 VNNI, AVX-VNNI or ARM dot product only (quantkit refuses the file elsewhere).",
        ),
    ] = TargetCpu.ANY,
    keep_failed: Annotated[
        bool,
        typer.Option(
            "--keep-failed",
            help="Write the model even if it misses the held-out check's target (still exit 1).",
        ),
    ] = False,
    force: ForceOption = False,
    json_out: JsonOption = None,
) -> None:
    """Quantize an FP32 background-removal model to INT8, keeping its masks."""
    options = QuantizeOptions(
        calib_dir=calib,
        calib_limit=calib_limit,
        recipe=get_recipe(recipe),
        family=family,
        fmt=fmt,
        per_channel=per_channel,
        method=method,
        clip_tail=clip_tail,
        exclude=tuple(exclude or ()),
        eval_dir=eval_dir,
        eval_limit=eval_limit,
        target_iou=target_iou,
        noise_margin=noise_margin,
        search_seconds=search_seconds,
        max_slowdown=max_slowdown,
        target_cpu=target_cpu,
        use_cache=not no_cache,
        cache_dir=cache_dir,
    )
    failed: CheckFailed | None = None
    with RichProgress() as progress:
        job = plan_quantize(
            model, output=output, options=options, force=force, keep_failed=keep_failed, progress=progress
        )
        guard_json(job.guard, json_out)
        try:
            report = run_quantize(job, progress)
        except CheckFailed as exc:  # the summary and the JSON say why; then the error line, exit 1
            failed, report = exc, exc.report
    show(render(report), json_out)
    emit_json(json_out, report.to_dict(), NAME)
    if failed is not None:
        raise failed


def render(report: QuantizeReport) -> str:
    mib = 2**20
    fp16 = f", FP16: quantized from its FP32 upcast, {report.float_bytes / 1e6:.2f} MB" if report.fp16 else ""
    rows = [
        ("input", f"{report.model}  {report.input_bytes / 1e6:.2f} MB  (opset {report.opset_in}{fp16})"),
        (
            "output",
            f"{report.output}  {report.output_bytes / 1e6:.2f} MB  (opset {report.opset_out})"
            + ("" if report.written else "  NOT WRITTEN: failed the check (--keep-failed keeps it)"),
        ),
        ("size ratio", f"{report.ratio:.3f}x of FP32"),
        ("family", f"{report.detection.family.name} (from the {report.detection.by.value})"),
        ("recipe", report.recipe),
        (report.calibration.label, report.calibration.summary(report.options.method.value)),
    ]
    census = report.census
    moves = f" (+{len(census.float_moves)} float Slice/Pad-type data moves)" if census.float_moves else ""
    rows.append(
        ("nodes", f"{len(census.quantized)} quantized, {len(census.float_nodes)} float compute{moves}")
    )
    rows.append(("stayed float", ", ".join(f"{name} ({op})" for name, op in census.float_nodes) or "none"))
    rows += [(r.label, r.summary()) for _, r in report.passes if r.summary()]
    if report.check is not None:
        failed = "" if report.check.passed else f"; FAILED: {report.check.verdict()}"
        rows.append((report.check.label, report.check.summary() + failed))
        if report.check.search is not None:
            for choice in report.check.search.chosen:
                gain = f"IoU {choice.iou_before:.4f} -> {choice.iou_after:.4f}"
                if choice.exact:
                    rows.append(("exact range", f"{', '.join(choice.exact)}: {gain}"))
                if choice.nodes:
                    cost = f"~{100 * choice.estimated_cost:+.1f}% latency (estimated)"
                    rows.append(("kept float", f"{', '.join(choice.nodes)}: {gain}, {cost}"))
            search = report.check.search
            rows.append(
                (
                    "search",
                    f"{search.tried} candidates, {search.seconds:.0f}s, {search.stopped_because.value}",
                )
            )
    rows.append(("ISA", _isa_row(report)))
    peak = f", peak memory {report.peak_rss_bytes / mib:,.0f} MiB" if report.peak_rss_bytes else ""
    rows.append(("time", f"{report.seconds:.1f} s{peak}"))
    return f"quantkit quantize\n{pairs(rows)}"


def _isa_row(report: QuantizeReport) -> str:
    target = report.options.target_cpu
    if target is TargetCpu.VNNI:
        made = "for VNNI / ARM dot-product CPUs only: 8-bit weights (refused elsewhere)"
    else:
        made = "for any CPU: 7-bit weights (|w| <= 64, exact without VNNI too)"
    how = "" if report.isa.runs(target) else "; checked as its QDQ graph in float"
    return f"{made}; quantized on {report.isa.describe()}{how}"
