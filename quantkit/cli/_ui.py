"""Terminal output shared by the subcommands: verbosity, progress, tables, JSON.

Tables are plain text with right-aligned numbers: readable at 80 columns, the
same when piped, and no number is ever cut to fit. Progress bars and warnings go
to stderr, results to stdout (to stderr when stdout carries ``--json -``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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

from quantkit.cluster.photos import RayOptions
from quantkit.errors import QuantkitError
from quantkit.files.atomic import write_text
from quantkit.files.guard import OutputGuard
from quantkit.files.ownership import OutputKind, sign_json
from quantkit.model.family import family_names
from quantkit.runtime.base import RuntimeName


@dataclass
class Verbosity:
    quiet: bool = False
    verbose: int = 0


VERBOSITY = Verbosity()

# Options several commands share, declared once.
FamilyOption = Annotated[
    str | None,
    typer.Option(
        "--family",
        metavar="NAME",
        help="rembg family of the model(s), e.g. u2netp, isnet-general-use, birefnet-general "
        "(default: from rembg's file name, else from the input size). "
        f"Known: {', '.join(family_names())}.",
        show_default=False,
    ),
]
ThreadsOption = Annotated[
    int, typer.Option("--threads", metavar="N", min=0, help="Intra-op threads (0: the runtime's default).")
]
NoSpinOption = Annotated[
    bool,
    typer.Option(
        "--no-spin",
        help="Threads sleep instead of spinning between ops: slower on an idle machine, "
        "faster on a busy one.",
    ),
]
RuntimeOption = Annotated[
    RuntimeName,
    typer.Option(
        "--runtime",
        metavar="ort|openvino",
        help="Runtime to run the model(s) on (openvino: pip install quantkit[openvino]).",
    ),
]
JsonOption = Annotated[
    Path | None,
    typer.Option(
        "--json", metavar="FILE", help="Write the results as JSON ('-' for stdout).", show_default=False
    ),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Replace outputs that quantkit wrote before (never anything else).")
]
RayOption = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="ADDRESS",
        help="Run the photos on a Ray cluster (pip install quantkit[ray]): auto (RAY_ADDRESS or the "
        "`ray start` cluster), local (a private instance for this run) or the head's HOST:PORT. "
        "Photos and models must be at the same paths on every node.",
        show_default=False,
    ),
]
RayWorkersOption = Annotated[
    int | None,
    typer.Option(
        "--ray-workers",
        metavar="N",
        min=1,
        help="Ray workers, each holding one session per model and running on --threads threads "
        "(1 when 0). Default: the cluster's CPUs divided by that.",
        show_default=False,
    ),
]


def ray_options(address: str | None, workers: int | None) -> RayOptions | None:
    """``--ray`` and ``--ray-workers`` as the core takes them (None: run here)."""
    if address is None:
        if workers is not None:
            raise QuantkitError("--ray-workers needs --ray ADDRESS")
        return None
    return RayOptions(address=address, workers=workers)


console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


class RichProgress:
    """:class:`quantkit.progress.Progress` on a rich progress bar (stderr); silent with -q."""

    def __init__(self) -> None:
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=VERBOSITY.quiet,
        )
        self._task: Any = None
        self._began = time.perf_counter()

    def __enter__(self) -> RichProgress:
        if not VERBOSITY.quiet:  # rich < 14.3 prints an empty line when a disabled bar stops
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not VERBOSITY.quiet:
            self._bar.stop()

    def start(self, label: str, total: int | None = None) -> None:
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(label, total=total)
        if VERBOSITY.verbose:  # with the time since the command began: where a long run spends it
            elapsed = time.perf_counter() - self._began
            self._bar.console.print(f"[dim]{elapsed:7.1f} s  {escape(label)}[/]")

    def advance(self, steps: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, steps)

    def warn(self, message: str) -> None:
        if not VERBOSITY.quiet:
            self._bar.console.print(f"[yellow]warning:[/] {escape(message)}")


def note(message: str) -> None:
    """A line on stderr that -q silences (e.g. 'wrote FILE')."""
    if not VERBOSITY.quiet:
        err_console.print(escape(message))


def table(header: Sequence[str], rows: Sequence[Sequence[str]], first_left: bool = True) -> str:
    """Plain-text table: columns sized to fit their widest cell, numbers right-aligned."""
    widths = [max(len(str(row[k])) for row in [header, *rows]) for k in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        out = []
        for k, (cell, width) in enumerate(zip(cells, widths, strict=True)):
            out.append(str(cell).ljust(width) if k == 0 and first_left else str(cell).rjust(width))
        return "  ".join(out).rstrip()

    return "\n".join([line(header), *(line(row) for row in rows)])


def pairs(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column 'label  value' block, values aligned."""
    width = max((len(label) for label, _ in rows), default=0)
    return "\n".join(f"{label.ljust(width)}  {value}" for label, value in rows)


def guard_json(guard: OutputGuard, target: Path | None) -> None:
    """Check ``--json FILE`` with every other output, before the long work."""
    if target is not None and str(target) != "-":
        guard.file(target, OutputKind.JSON, "--json")


def emit_json(target: Path | None, payload: dict[str, Any], command: str) -> None:
    if target is None:
        return
    text = json.dumps(sign_json(payload, command), indent=2) + "\n"
    if str(target) == "-":
        sys.stdout.write(text)
    else:
        write_text(target, text)
        note(f"wrote {target}")


def out_console(json_target: Path | None) -> Console:
    """Results go to stdout, unless stdout carries JSON (``--json -``)."""
    return err_console if json_target is not None and str(json_target) == "-" else console


def show(text: str, json_target: Path | None) -> None:
    """A result: printed with -q too ("only results and errors"), unlike progress, warnings and notes."""
    out_console(json_target).print(escape(text), highlight=False)


class _VerboseOnly(logging.Handler):
    """Library log records on stderr as Python would print them ('WARNING:root:...'), with -v only."""

    def emit(self, record: logging.LogRecord) -> None:
        if VERBOSITY.verbose and not VERBOSITY.quiet:
            line = f"{record.levelname}:{record.name}:{record.getMessage()}"
            err_console.print(escape(line), highlight=False, soft_wrap=True)


@contextmanager
def library_logs_verbose_only() -> Iterator[None]:
    """For one command: what libraries log through the root logger reaches stderr with -v only.

    onnxruntime's quantization tools log with ``logging.warning(...)`` on the root logger
    ("Expected bias ... to be an initializer"); unconfigured, the first such call installs a
    stderr handler (``logging.basicConfig``) and the lines land between the progress bar and
    the summary, where they read as quantkit's problems. Here the root logger gets one handler
    of its own instead (so ``basicConfig`` never runs) and its level and handlers are put back
    afterwards; onnxruntime is not touched.
    """
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    handler = _VerboseOnly(logging.WARNING)
    for existing in saved_handlers:
        root.removeHandler(existing)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        for existing in saved_handlers:
            root.addHandler(existing)
        root.setLevel(saved_level)
