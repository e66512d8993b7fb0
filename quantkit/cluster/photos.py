"""One loop over the photos for ``compare`` and ``remove``, here or on a Ray cluster.

Each command describes its per-photo work as a small picklable :class:`PhotoWork`:
``open()`` loads what every photo needs (one inference session per model) and
returns the function that turns one photo's path into a small picklable result.
:func:`map_photos` runs that function in this process, or - given
:class:`RayOptions` - on Ray actors that each open the work once
(:mod:`quantkit.cluster.ray_photos`). Either way the results come back in the
order of the photos, one per photo, so the command aggregates them in one loop
whatever ran them, and a cluster run gives the same figures and bytes as a local
one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from quantkit.errors import QuantkitError
from quantkit.progress import Progress
from quantkit.runtime.base import RuntimeSettings

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

LOCAL = "local"  # a private Ray instance, started for one run and removed after it
AUTO = "auto"  # the cluster RAY_ADDRESS names, or the one `ray start` runs on this machine


class PhotoWork(Protocol[R_co]):
    """A command's per-photo work, picklable: a Ray actor receives it and opens it once."""

    @property
    def settings(self) -> RuntimeSettings:
        """How the work runs its models (the Ray path sets each actor's threads)."""

    def with_settings(self, settings: RuntimeSettings) -> PhotoWork[R_co]: ...

    def open(self) -> Callable[[Path], R_co]:
        """Load the models; the function returned handles one photo and never raises for a bad one."""


@dataclass(frozen=True)
class RayOptions:
    """Run the photos of ``compare`` or ``remove`` on a Ray cluster.

    ``address``: ``"auto"`` (the cluster ``RAY_ADDRESS`` names, else the one ``ray
    start`` runs on this machine), ``"local"`` (a private Ray instance on this machine
    for this run only, stopped and deleted after it, processes and temporary files
    included) or ``"HOST:PORT"`` (a head node's GCS address; Ray Data does not run
    through Ray Client's ``ray://``). ``workers``: Ray actors, each holding one session
    per model (default: the cluster's CPUs divided by the threads each one runs). The
    photos and models must be at the same paths on every node (relative paths: under
    the same current folder); ``connect_timeout`` bounds the wait for an address to
    answer.
    """

    address: str = LOCAL
    workers: int | None = None
    connect_timeout: float = 10.0

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise QuantkitError(f"--ray-workers {self.workers}: expected at least 1")
        if not self.address.strip():
            raise QuantkitError("--ray: expected auto, local or HOST:PORT")
        if self.connect_timeout <= 0:
            raise QuantkitError(f"Ray connect timeout {self.connect_timeout}: expected a positive number")


@contextlib.contextmanager
def map_photos(
    work: PhotoWork[R],
    files: list[Path],
    *,
    label: str,
    progress: Progress,
    ray: RayOptions | None = None,
) -> Iterator[Iterator[R]]:
    """``work`` on every file: yields an iterator of one result per file, in the files' order.

    A context manager, so that a Ray instance started for the run is gone when the
    block ends, however it ends. The progress bar advances with every result.
    """
    if ray is None:
        yield _here(work, files, label=label, progress=progress)
        return
    try:
        from quantkit.cluster import ray_photos
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "ray":
            raise
        raise QuantkitError(
            f"--ray needs Ray, which is not installed here (no module {exc.name}): "
            "pip install 'quantkit[ray]'"
        ) from exc
    with ray_photos.map_photos(work, files, label=label, progress=progress, options=ray) as results:
        yield results


def _here(work: PhotoWork[R], files: list[Path], *, label: str, progress: Progress) -> Iterator[R]:
    photo = work.open()
    progress.start(label, len(files))
    for path in files:
        result = photo(path)
        progress.advance()
        yield result
