"""``quantkit remove``: cut out the foreground of photos with a (quantized) model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from quantkit.cli._ui import (
    FamilyOption,
    NoSpinOption,
    RayOption,
    RayWorkersOption,
    RichProgress,
    RuntimeOption,
    ThreadsOption,
    ray_options,
    show,
)
from quantkit.errors import QuantkitError
from quantkit.removal.compose import parse_color
from quantkit.removal.remove import RemoveOptions, plan_remove, run_remove
from quantkit.removal.session import SERVING
from quantkit.runtime.base import RuntimeName

SHORT = "Cutouts or masks for photos and folders."
NAME = "remove"


def run(
    model: Annotated[Path, typer.Argument(metavar="MODEL", help="ONNX model (FP32 or INT8).")],
    inputs: Annotated[
        list[Path], typer.Argument(metavar="PHOTO...", help="Photos and/or folders of photos.")
    ],
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", metavar="DIR", help="Folder for the PNG results (created if missing)."
        ),
    ],
    mask_only: Annotated[bool, typer.Option("--mask-only", help="Write the mask, not the cutout.")] = False,
    max_size: Annotated[
        int | None,
        typer.Option(
            "--max-size", metavar="PX", min=32, help="Shrink photos larger than this (px) before inference."
        ),
    ] = None,
    bg_color: Annotated[
        str | None,
        typer.Option(
            "--bg-color",
            metavar="COLOR",
            help="Composite onto this colour: #rrggbb, #rrggbbaa or r,g,b,a.",
            show_default=False,
        ),
    ] = None,
    family: FamilyOption = None,
    runtime: RuntimeOption = RuntimeName.ORT,
    threads: ThreadsOption = 0,
    no_spin: NoSpinOption = False,
    compression: Annotated[
        int,
        typer.Option(
            "--png-compression", metavar="0-9", min=0, max=9, help="zlib level of the PNGs (rembg uses 6)."
        ),
    ] = 1,
    force: Annotated[
        bool, typer.Option("--force", help="Replace PNGs that quantkit wrote before (never anything else).")
    ] = False,
    ray: RayOption = None,
    ray_workers: RayWorkersOption = None,
) -> None:
    """Write NAME.png (RGBA cutout) or NAME.mask.png per photo into the output folder."""
    cluster = ray_options(ray, ray_workers)
    options = RemoveOptions(
        mask_only=mask_only,
        max_size=max_size,
        bg_color=parse_color(bg_color) if bg_color is not None else None,
        family=family,
        png_compression=compression,
        settings=replace(SERVING, runtime=runtime, threads=threads, spinning=not no_spin),
    )
    job = plan_remove(model, inputs, output_dir=output, options=options, force=force)
    with RichProgress() as progress:
        report = run_remove(job, progress, cluster)
    skipped = f", skipped {len(report.skipped)}" if report.skipped else ""
    show(f"wrote {len(report.written)} file(s) to {output}{skipped}", None)
    if not report.written:
        raise QuantkitError("no photo could be processed")
