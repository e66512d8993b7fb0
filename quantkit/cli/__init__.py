"""The ``quantkit`` command: one module per subcommand, errors turned into exit codes here.

Subcommands only parse options, call the core, and render results. Any
:class:`~quantkit.errors.QuantkitError` they let through becomes one line on
stderr and its exit code (2 for bad input, 1 for a failed accuracy gate);
usage errors exit 2 and Ctrl-C exits 130, as typer does.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from quantkit.cli import bench, compare, quantize, remove
from quantkit.cli._ui import err_console
from quantkit.errors import QuantkitError

app = typer.Typer(
    name="quantkit",
    help="Post-training INT8 quantization for U²-Net background-removal models (rembg's u2net family).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("quantize")(quantize.quantize)
app.command("compare")(compare.compare)
app.command("bench")(bench.bench)
app.command("remove")(remove.remove)


def main() -> None:
    try:
        app()
    except QuantkitError as exc:
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        sys.exit(int(exc.exit_code))
