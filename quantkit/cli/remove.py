"""``quantkit remove``: cut out the foreground of photos with a (quantized) model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from quantkit.cli._ui import ForceOption, RichProgress, ThreadsOption, console
from quantkit.errors import QuantkitError
from quantkit.images import expand_inputs
from quantkit.remove import REMOVE_SESSION, RemoveOptions, parse_color
from quantkit.remove import remove as run


def remove(
    model: Annotated[Path, typer.Argument(help="ONNX model (FP32 or INT8).")],
    inputs: Annotated[list[Path], typer.Argument(help="Photos and/or folders of photos.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the PNG results.")],
    mask_only: Annotated[bool, typer.Option("--mask-only", help="Write the mask, not the cutout.")] = False,
    max_size: Annotated[
        int | None,
        typer.Option("--max-size", min=32, help="Shrink photos larger than this (px) before inference."),
    ] = None,
    bg_color: Annotated[
        str | None, typer.Option("--bg-color", help="Composite onto this colour (#rrggbb[aa] or r,g,b[,a]).")
    ] = None,
    threads: ThreadsOption = 0,
    compression: Annotated[
        int, typer.Option("--png-compression", min=0, max=9, help="zlib level of the PNGs (rembg uses 6).")
    ] = 1,
    force: ForceOption = False,
) -> None:
    """Write <name>.png (RGBA cutout) or <name>.mask.png per photo into the output folder."""
    color = parse_color(bg_color) if bg_color is not None else None
    if color is not None and mask_only:
        raise QuantkitError("--bg-color and --mask-only do not go together")
    files = expand_inputs(inputs)
    if not files:
        raise QuantkitError("no input photos")
    options = RemoveOptions(
        model=model,
        output_dir=output,
        mask_only=mask_only,
        max_size=max_size,
        bg_color=color,
        force=force,
        png_compression=compression,
        settings=replace(REMOVE_SESSION, intra_threads=threads),
    )
    with RichProgress() as progress:
        report = run(options, files, progress)
    skipped = f", skipped {len(report.skipped)}" if report.skipped else ""
    console.print(f"wrote {len(report.written)} file(s) to {escape(str(output))}{skipped}")
    if not report.written:
        raise QuantkitError("no photo could be processed")
