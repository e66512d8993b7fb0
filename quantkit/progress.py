"""How the core reports progress and warnings without knowing about terminals.

Long steps (calibration, evaluation) call :class:`Progress` methods; the CLI passes
a rich-backed implementation, library users and tests get :class:`NullProgress`.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, label: str, total: int | None = None) -> None:
        """A new step begins; ``total`` units of work if known."""

    def advance(self, steps: int = 1) -> None:
        """``steps`` more units of the current step are done."""

    def warn(self, message: str) -> None:
        """Something the user should know, that does not stop the run."""


class NullProgress:
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def start(self, label: str, total: int | None = None) -> None:
        pass

    def advance(self, steps: int = 1) -> None:
        pass

    def warn(self, message: str) -> None:
        self.warnings.append(message)
