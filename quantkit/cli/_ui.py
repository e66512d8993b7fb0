"""Terminal rendering shared by the subcommands: consoles, progress bars, JSON output."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from quantkit.fileio import check_writable, write_json

# Options several commands share, declared once.
ThreadsOption = Annotated[
    int, typer.Option("--threads", min=0, help="Intra-op threads (0: onnxruntime default).")
]
JsonOption = Annotated[Path | None, typer.Option("--json", help="Write results as JSON ('-' for stdout).")]
ForceOption = Annotated[bool, typer.Option("--force", help="Overwrite existing output files.")]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class RichProgress:
    """:class:`quantkit.progress.Progress` on a rich progress bar (stderr)."""

    def __init__(self) -> None:
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        )
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()

    def start(self, label: str, total: int | None = None) -> None:
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(label, total=total)

    def advance(self, steps: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, steps)

    def warn(self, message: str) -> None:
        self._bar.console.print(f"[yellow]warning:[/] {escape(message)}")


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(count) < 1024 or unit == "GB":
            return f"{count:,.0f} {unit}" if unit == "B" else f"{count:,.2f} {unit}"
        count /= 1024
    return f"{count:.2f} GB"


def check_json_target(target: Path | None, force: bool) -> None:
    """Fail before the long work if ``--json FILE`` could not be written at the end."""
    if target is not None and str(target) != "-":
        check_writable(target, force=force)


def emit_json(target: Path | None, payload: dict[str, Any], force: bool) -> None:
    if target is None:
        return
    if str(target) == "-":
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        write_json(target, payload, force=force)
        err_console.print(f"wrote {escape(str(target))}")


def out_console(json_target: Path | None) -> Console:
    """Tables go to stdout, unless stdout carries JSON (``--json -``)."""
    return err_console if json_target is not None and str(json_target) == "-" else console
