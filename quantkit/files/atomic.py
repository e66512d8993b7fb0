"""Writing a file so that it is either complete or absent, never half-written.

The bytes land in a hidden temporary file beside the target and are renamed over
it only once complete, so an interrupted run leaves the old file or the new one.
A full disk (or any other OS error) while writing becomes one line naming the
target, and the temporary file is removed. Folders an output needs are created
the same way: a run that ends up writing nothing into them takes them away again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from quantkit.errors import QuantkitError


def os_error(exc: OSError, what: str) -> QuantkitError:
    """An OS error as the one line a user needs: which file, and why."""
    if exc.errno == errno.ENOSPC:
        return QuantkitError(f"no space left on device while writing {what}")
    if exc.errno == errno.EDQUOT:
        return QuantkitError(f"disk quota exceeded while writing {what}")
    reason = exc.strerror or type(exc).__name__
    return QuantkitError(f"cannot write {what}: {reason}")


@contextlib.contextmanager
def atomic_file(target: Path, *, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target``.

    The caller has already decided that ``target`` may be written (see
    :mod:`quantkit.files.guard`); this only makes the write all-or-nothing.
    """
    parent = target.parent if str(target.parent) else Path(".")
    try:
        fd, name = tempfile.mkstemp(prefix=temp_prefix(target), suffix=suffix, dir=parent)
    except OSError as exc:
        raise os_error(exc, str(target)) from exc
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, target)
    except OSError as exc:
        raise os_error(exc, str(target)) from exc
    finally:
        tmp.unlink(missing_ok=True)


def temp_prefix(target: Path) -> str:
    """A hidden name beside ``target`` for its temporary file: short enough that a target
    near the 255-byte name limit still has room for the random part and the suffix."""
    return f".{target.name[:48]}."


def make_folders(folder: Path) -> list[Path]:
    """``mkdir -p folder``; returns the folders it created, outermost first."""
    missing: list[Path] = []
    for candidate in [folder, *folder.parents]:
        if candidate.exists() or candidate.is_symlink():
            break
        missing.append(candidate)
    missing.reverse()
    created: list[Path] = []
    try:
        for candidate in missing:
            candidate.mkdir()
            created.append(candidate)
    except OSError as exc:
        remove_if_empty(created)
        reason = "no space left on device" if exc.errno == errno.ENOSPC else exc.strerror
        raise QuantkitError(f"cannot create output folder {folder}: {reason}") from exc
    return created


def remove_if_empty(created: list[Path]) -> None:
    """Remove folders :func:`make_folders` created, innermost first, as long as they are empty."""
    for folder in reversed(created):
        try:
            folder.rmdir()
        except OSError:
            return


def probe_writable(folder: Path) -> None:
    """Create and remove a file in ``folder``; OSError if that cannot be done.

    A real probe: ``os.access`` says yes to root even where nothing can be created
    (a read-only mount). The probe file is removed even if a SIGTERM lands in between.
    """
    fd, probe = tempfile.mkstemp(prefix=".quantkit-probe-", dir=folder)
    try:
        os.close(fd)
    finally:
        os.unlink(probe)


def write_text(target: Path, text: str) -> None:
    with atomic_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
