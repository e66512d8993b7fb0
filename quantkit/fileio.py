"""Writing results without ever leaving a half-written file or losing one.

Every output quantkit writes (models, JSON, reports, cutouts) goes through
:func:`atomic_output`: the bytes land in a temporary file beside the target and
are renamed over it only once complete, so an interrupted run leaves either the
old file or the new one. An existing target is refused unless the user said
``--force``.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from quantkit.errors import QuantkitError


def check_writable(target: Path, *, force: bool) -> None:
    """Fail early, before any long work, if ``target`` cannot or must not be written."""
    if target.exists() and target.is_dir():
        raise QuantkitError(f"output {target} is a directory, not a file")
    if target.exists() and not force:
        raise QuantkitError(f"output {target} already exists (use --force to overwrite)")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        raise QuantkitError(f"output folder {parent} does not exist")
    if not parent.is_dir():
        raise QuantkitError(f"output folder {parent} is not a folder")
    try:  # a real probe: os.access says yes to root even where nothing can be created
        fd, probe = tempfile.mkstemp(prefix=".quantkit-probe-", dir=parent)
    except OSError as exc:
        raise QuantkitError(f"output folder {parent} is not writable ({exc.strerror})") from exc
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def atomic_output(target: Path, *, force: bool, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; move it onto ``target`` only on success."""
    check_writable(target, force=force)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # Re-check: another process may have created the target meanwhile.
        if target.exists() and not force:
            raise QuantkitError(f"output {target} appeared while working (use --force)")
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(target: Path, payload: Any, *, force: bool) -> None:
    with atomic_output(target, force=force, suffix=".json") as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_text(target: Path, text: str, *, force: bool) -> None:
    with atomic_output(target, force=force) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
