"""A cache of measured statistics and calibration ranges, that can never break a run.

Quantizing the same model with the same photos again (a CI job, a recipe
comparison, the accuracy search) should not repeat the passes over the photos,
which are most of the time on a large model. Entries are keyed by the digest of
the exact model file, of every photo's bytes and of what was measured, so a
stale entry is simply never found.

The cache is an optimisation, so nothing about it may stop the work: a folder
that cannot be used (``QUANTKIT_CACHE_DIR`` pointing at a file, a read-only
folder, ``HOME`` that is not a folder) is reported once as a warning and the run
continues without a cache; an entry that cannot be read or has the wrong shape
is a miss and is overwritten.

Each entry starts with a header naming its key and the digest of its payload, and
is used only if both match: a file that is valid JSON or ``.npz`` but was not
stored by quantkit under that key (copied, truncated, edited, left by an older
format) is a miss, never data the passes trust. Only regular files are read, so
an entry that is a FIFO or a device cannot hang or flood the run.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from quantkit.files.atomic import probe_writable

T = TypeVar("T")

# Bumped whenever preprocessing or the way statistics are computed changes, so stale entries die.
CACHE_VERSION = "3"
_MAGIC = b"quantkit-cache 1\n"
_MAX_ENTRY = 1 << 30  # a statistics entry of u2net is a few MB; anything this large is not one


def default_cache_dir() -> Path:
    """``$QUANTKIT_CACHE_DIR``, else the platform's cache folder."""
    root = os.environ.get("QUANTKIT_CACHE_DIR")
    if root:
        return Path(root)
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else Path.home() / "AppData" / "Local") / "quantkit" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "quantkit"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "quantkit"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def photos_digest(files: Iterable[Path]) -> str:
    """One digest for a list of photos: their names and their bytes, in order."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        try:
            digest.update(file_digest(path).encode())
        except OSError:
            digest.update(b"unreadable")
    return digest.hexdigest()


def cache_key(*parts: str) -> str:
    digest = hashlib.sha256(CACHE_VERSION.encode())
    for part in parts:
        digest.update(b"\0" + part.encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class Cache:
    root: Path | None  # None: caching off

    @classmethod
    def open(cls, root: Path | None, enabled: bool, warn: Callable[[str], None]) -> Cache:
        """The cache at ``root`` (default folder if None), or a disabled one if it cannot be used."""
        if not enabled:
            return cls(None)
        folder: Path | str = root or "(default)"
        try:
            folder = root or default_cache_dir()
            if folder.exists() and not folder.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "not a folder")
            folder.mkdir(parents=True, exist_ok=True)
            probe_writable(folder)
        except (OSError, RuntimeError) as exc:  # RuntimeError: Path.home() without a home
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            warn(f"cache folder {folder} is not usable ({reason}); continuing without a cache")
            return cls(None)
        return cls(folder)

    def load(self, key: str, decode: Callable[[bytes], T]) -> T | None:
        """The entry for ``key`` decoded, or None if absent or unreadable in any way."""
        if self.root is None:
            return None
        try:
            payload = _unwrap(key, _read_regular(self.root / key))
            return None if payload is None else decode(payload)
        except Exception:  # a damaged or foreign entry is a miss, never a crash
            return None

    def save(self, key: str, data: bytes) -> None:
        """Store an entry atomically; a failure to store only costs the next run its time."""
        if self.root is None:
            return
        tmp: str | None = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=self.root)
            with os.fdopen(fd, "wb") as handle:
                handle.write(_wrap(key, data))
            os.replace(tmp, self.root / key)
            tmp = None
        except OSError:
            pass
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)


def _wrap(key: str, data: bytes) -> bytes:
    return _MAGIC + f"{key} {hashlib.sha256(data).hexdigest()}\n".encode() + data


def _unwrap(key: str, entry: bytes) -> bytes | None:
    """The payload :func:`_wrap` stored under ``key``, or None if this is not exactly that."""
    if not entry.startswith(_MAGIC):
        return None
    header, sep, payload = entry[len(_MAGIC) :].partition(b"\n")
    if not sep or header != f"{key} {hashlib.sha256(payload).hexdigest()}".encode():
        return None
    return payload


def _read_regular(path: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file of sane size; raises otherwise (never blocks)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_ENTRY:
            raise OSError(f"{path} is not a cache entry")
        return handle.read()
