"""The ``quantkit`` command: one module per subcommand, errors turned into exit codes here.

Subcommands only parse options, call the core, and render results. Whatever goes
wrong ends here as one ``error:`` line and an exit code: a
:class:`~quantkit.errors.QuantkitError` with its own code (2 bad input, 1 failed
gate), a usage error 2, Ctrl-C 130, SIGTERM 143 (after cleaning up), and an OS
error such as a full disk 2. Once Ctrl-C or SIGTERM has arrived, the run ends with
its code whatever exception it became on the way up (a library may wrap it).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import sys

import typer
from rich.markup import escape

from quantkit import __version__
from quantkit.cli import bench, compare, quantize, remove
from quantkit.cli._ui import VERBOSITY, err_console, library_logs_verbose_only
from quantkit.errors import ExitCode, QuantkitError, Terminated
from quantkit.files.scratch import interrupted_by, sigterm_raises

EXIT_CODES = (
    "Exit codes: 0 success; 1 an accuracy gate threshold was missed (compare), or the quantized "
    "model missed its held-out check's target (quantize: nothing written without --keep-failed); "
    "2 bad input or environment (one 'error:' line says what); 130 interrupted (Ctrl-C); "
    "143 terminated (SIGTERM)."
)

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
    if code == ExitCode.BAD_INPUT:  # one line, whatever a file name holds
        message = message.translate(_CONTROL)
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return code


# Control characters (a newline in a file name) shown escaped, so an error stays one line.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127)}


def _click_classes(name: str) -> tuple[type[BaseException], ...]:
    """The exception class ``name`` as the installed typer raises it, through typer's public API only.

    typer < 0.26 re-exports click's classes (``typer.Exit is click.exceptions.Exit``); typer >= 0.26
    vendors click, no longer depends on it, and has classes of its own that are not click's
    (catching only click's let every usage error end in a traceback). Its ``ClickException`` is
    exported by neither: it is reached through the ancestry of ``typer.BadParameter``.
    """
    found: dict[type[BaseException], None] = {}
    candidates = [getattr(typer, name, None), *typer.BadParameter.__mro__]
    for cls in candidates:
        if isinstance(cls, type) and cls.__name__ == name and issubclass(cls, BaseException):
            found[cls] = None
    if not found:  # pragma: no cover - a typer that renamed them: fail at import, not at the first error
        raise ImportError(f"typer {getattr(typer, '__version__', '?')} has no {name} exception")
    return tuple(found)


_USAGE_ERRORS = _click_classes("ClickException")
_ABORTS = _click_classes("Abort")
_EXITS = _click_classes("Exit")


def main(argv: list[str] | None = None) -> None:
    _tolerant_stdout()
    # onnxruntime's Python tools log failures (with tracebacks) that quantkit turns into its
    # one error line; unconfigured, Python would print those records to stderr above it.
    ort_logger = logging.getLogger("onnxruntime")
    if not any(isinstance(h, logging.NullHandler) for h in ort_logger.handlers):
        ort_logger.addHandler(logging.NullHandler())
    with sigterm_raises():
        code = _run(argv)
    sys.exit(int(code))


def _run(argv: list[str] | None) -> int:
    try:
        with library_logs_verbose_only():
            result = app(args=argv, standalone_mode=False)
    except BaseException as exc:
        return _exit_code(exc)
    if interrupted_by() is not None:
        return _signal_code(interrupted_by())
    # typer returns, rather than raises, the code of an Exit - Ctrl-C included (130)
    return result if isinstance(result, int) and not isinstance(result, bool) else int(ExitCode.OK)


def _exit_code(exc: BaseException) -> int:
    """The exit code for what ended the run, after printing its one line (if it has one)."""
    received = interrupted_by()
    if received is not None:  # whatever a signal turned into on its way up (ImportError, Abort...)
        return _signal_code(received)
    if isinstance(exc, Terminated) or (isinstance(exc, _ABORTS) and isinstance(exc.__cause__, Terminated)):
        return int(ExitCode.TERMINATED)
    if isinstance(exc, (KeyboardInterrupt, *_ABORTS)):
        return int(ExitCode.INTERRUPTED)
    if isinstance(exc, _EXITS):
        return int(getattr(exc, "exit_code", 0) or 0)
    if isinstance(exc, QuantkitError):
        return _error(exc.message, exc.exit_code)
    if isinstance(exc, _USAGE_ERRORS):
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare 'quantkit': the help is the message
            exc.show()  # type: ignore[attr-defined]
            return int(getattr(exc, "exit_code", ExitCode.BAD_INPUT))
        return _error(_usage_message(exc), ExitCode.BAD_INPUT)
    if isinstance(exc, OSError):
        return _error(_os_message(exc), ExitCode.BAD_INPUT)
    raise exc  # a bug: the traceback is what is needed to fix it


def _signal_code(received: int | None) -> int:
    return int(ExitCode.TERMINATED if received == signal.SIGTERM else ExitCode.INTERRUPTED)


def _usage_message(exc: BaseException) -> str:
    """A usage error as one line: click's message and where help is."""
    text = " ".join(str(getattr(exc, "format_message", exc.__str__)()).split())
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "quantkit"
    return f"{text} (see '{path} --help')"


def _tolerant_stdout() -> None:
    """A file name that the terminal's encoding cannot show is shown escaped, not a crash."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(Exception):
            reconfigure(errors="backslashreplace")


def _os_message(exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on device{where}"
    return f"{exc.strerror or type(exc).__name__}{where}"
