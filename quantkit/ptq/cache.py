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
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# Bumped whenever preprocessing or the way statistics are computed changes, so stale entries die.
CACHE_VERSION = "2"


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
        try:
            folder = root or default_cache_dir()
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except (OSError, RuntimeError) as exc:  # RuntimeError: Path.home() without a home
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            warn(f"cache folder {root or '(default)'} is not usable ({reason}); continuing without a cache")
            return cls(None)
        return cls(folder)

    def load(self, key: str, decode: Callable[[bytes], T]) -> T | None:
        """The entry for ``key`` decoded, or None if absent or unreadable in any way."""
        if self.root is None:
            return None
        try:
            return decode((self.root / key).read_bytes())
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
                handle.write(data)
            os.replace(tmp, self.root / key)
            tmp = None
        except OSError:
            pass
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
