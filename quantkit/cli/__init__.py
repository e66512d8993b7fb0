"""The ``quantkit`` command: one module per subcommand, errors turned into exit codes here.

Subcommands only parse options, call the core, and render results. Whatever goes
wrong ends here as one ``error:`` line and an exit code: a
:class:`~quantkit.errors.QuantkitError` with its own code (2 bad input, 1 failed
gate), a usage error 2, Ctrl-C 130, SIGTERM 143 (after cleaning up), and an OS
error such as a full disk 2.
"""

from __future__ import annotations

import errno
import sys

import click
import typer
import typer.core
from rich.markup import escape

from quantkit import __version__
from quantkit.cli import bench, compare, quantize, remove
from quantkit.cli._ui import VERBOSITY, err_console
from quantkit.errors import ExitCode, QuantkitError, Terminated
from quantkit.files.scratch import sigterm_raises

EXIT_CODES = (
    "Exit codes: 0 success; 1 an accuracy gate threshold was missed (compare); "
    "2 bad input or environment (one 'error:' line says what); 130 interrupted (Ctrl-C); "
    "143 terminated (SIGTERM)."
)

# typer >= 0.20 prints the Python type after every argument's metavar ("MODEL... <list[Path]>");
# the metavars already say what goes there.
typer.core.TyperArgument.display_type = lambda self, ctx: ""  # type: ignore[method-assign]

app = typer.Typer(
    name="quantkit",
    help="Post-training INT8 quantization for rembg's background-removal models, and the tools to prove it.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"quantkit {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Only results and errors: no progress or warnings."
    ),
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, show_default=False, help="Say what each step is doing."
    ),
) -> None:
    VERBOSITY.quiet = quiet
    VERBOSITY.verbose = verbose


for command in (quantize, compare, bench, remove):
    app.command(command.NAME, short_help=command.SHORT, epilog=EXIT_CODES)(command.run)


def _error(message: str, code: int) -> int:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return code


def main(argv: list[str] | None = None) -> None:
    code = int(ExitCode.OK)
    with sigterm_raises():
        try:
            app(args=argv, standalone_mode=False)
        except click.exceptions.Exit as exc:
            code = exc.exit_code
        except click.exceptions.Abort as exc:
            code = ExitCode.TERMINATED if isinstance(exc.__cause__, Terminated) else ExitCode.INTERRUPTED
        except click.ClickException as exc:  # usage errors: click's own message, exit 2
            exc.show()
            code = exc.exit_code
        except QuantkitError as exc:
            code = _error(exc.message, exc.exit_code)
        except KeyboardInterrupt:
            code = ExitCode.INTERRUPTED
        except Terminated:
            code = ExitCode.TERMINATED
        except OSError as exc:
            code = _error(_os_message(exc), ExitCode.BAD_INPUT)
    sys.exit(int(code))


def _os_message(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on device{where}"
    return f"{exc.strerror or type(exc).__name__}{where}"
