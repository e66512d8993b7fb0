"""Run the real ``quantkit`` command in a subprocess, as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quantkit import __version__


@dataclass
class Result:
    code: int
    out: str
    err: str


def as_foreground() -> None:
    """``preexec_fn`` for a child the test will Ctrl-C: SIGINT back to its default.

    A command started in the background by a non-interactive shell (``cmd &``, as a CI
    runner may start the suite) inherits SIGINT ignored, and Python then never raises
    KeyboardInterrupt - the interrupt tests stand for a user's Ctrl-C on a foreground command.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def quantkit(
    *args: object, cwd: Path | None = None, timeout: float = 600, env: dict[str, str] | None = None
) -> Result:
    """The command in a subprocess; ``env`` is added to the environment."""
    environment = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "quantkit", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environment,
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(result: Result, code: int, fragment: str) -> None:
    """Exit ``code`` and one ``error:`` line (after any one-line warnings) that contains ``fragment``."""
    assert result.code == code, (result.code, result.out, result.err)
    assert "Traceback" not in result.err and "Traceback" not in result.out
    lines = [line for line in result.err.strip().splitlines() if line.strip()]
    assert lines and all(line.startswith("warning:") for line in lines[:-1]), result.err
    assert lines[-1].startswith("error:"), lines[-1]
    assert fragment in lines[-1], lines[-1]


def signed_json(text: str, command: str) -> dict[str, Any]:
    """A ``--json`` payload, checked to start with quantkit's signature for ``command``."""
    data = json.loads(text)
    assert isinstance(data, dict)
    assert next(iter(data)) == "quantkit", list(data)[:3]
    assert data["quantkit"] == {"version": __version__, "command": command, "schema_version": 1}
    return data
