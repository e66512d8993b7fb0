"""The one error type the core raises, and the exit codes the CLI maps it to.

Everything a user can get wrong (a missing model, a folder without photos, an
output that already exists, a full disk) is a :class:`QuantkitError` with a
one-line message; the CLI prints that line and exits with its code. Anything else
that escapes is a bug and is allowed to show a traceback.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    GATE_FAILED = 1  # the command ran, and the model missed an accuracy threshold
    BAD_INPUT = 2  # the command could not run on what it was given
    INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
    TERMINATED = 143  # SIGTERM, as shells report it


class QuantkitError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code: ExitCode = ExitCode.BAD_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class GateFailed(QuantkitError):
    """The model ran, and missed at least one accuracy threshold."""

    exit_code = ExitCode.GATE_FAILED


class Terminated(BaseException):
    """SIGTERM arrived. A BaseException like KeyboardInterrupt, so every ``finally``
    and ``with`` on the way out cleans up, and no ``except Exception`` swallows it."""
