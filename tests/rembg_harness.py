"""rembg's own masks for a model built in ``tests/family_models.py``, with no download possible.

quantkit claims to pre- and post-process every family exactly as rembg does; the only honest reference
is rembg itself. This harness writes a model where rembg 2.0.86 looks for that family's file, inside a
throw-away rembg home (every home variable rembg reads points into it, and checksums are off because a
tiny stand-in never matches the real file's md5), then calls rembg's ``new_session`` and both
``session.predict`` and ``rembg.remove(..., only_mask=True)``. Sockets and pooch are blocked while it
runs, so a misplaced file fails with ``NetworkAttempt`` instead of silently fetching the real model.
onnxruntime's own native telemetry is outside that guard; see ``ORT_DISABLE_TELEMETRY`` below.

Needs rembg >= 2.0.86: older releases keep models in one flat ``~/.u2net`` and lack several sessions.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import onnx
from PIL import Image

from .family_models import FAMILIES

# onnxruntime's Linux wheels (1.31.1 here; 1.23.2 has none) start 1DS telemetry when first imported:
# a native thread resolves mobile.events.data.microsoft.com seconds later, past any Python socket guard.
# Only this variable stops it, and only if it is set before onnxruntime's first import in the process.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

REMBG_MIN = (2, 0, 86)


class NetworkAttempt(RuntimeError):
    """Raised when rembg tries to reach the network; deliberately not an OSError, so no retry swallows it."""


@dataclass(frozen=True)
class RembgOutput:
    """What rembg produced for one photo: the session's masks, and ``remove(only_mask=True)``'s image.

    ``removed`` equals ``predicted[0]`` for single-mask families; for u2net_cloth_seg it is rembg's
    vertical concatenation of the three masks (upper, lower, full) as one RGBA image.
    """

    predicted: list[Image.Image]
    removed: Image.Image


def _rembg_version() -> tuple[int, ...]:
    release = re.match(r"\d+(\.\d+)*", version("rembg"))
    return tuple(int(part) for part in release.group().split(".")) if release else ()


def model_file(family: str, home: Path) -> Path:
    """Where rembg 2.0.86 finds this family's model under rembg home ``home``.

    Named sessions resolve ``<home>/models/<name>/<name>.onnx`` (birefnet-general-fp16 converts
    birefnet-general's file only when its own copy is missing); custom sessions take any
    ``model_path`` inside the home, so the harness uses ``<home>/models/<name>/model.onnx``.
    """
    fam = FAMILIES[family]
    return home / "models" / fam.name / (fam.fname or "model.onnx")


@contextmanager
def offline_rembg_home(root: Path) -> Iterator[Path]:
    """Point rembg at ``root/rembg`` (legacy home ``root/xdg/.u2net``) with the network blocked.

    U2NET_HOME is removed because when set it overrides REMBG_HOME as the root; XDG_DATA_HOME is set so
    the legacy fallback is an empty folder here rather than the user's ``~/.u2net``.
    """
    home = root / "rembg"
    home.mkdir(parents=True, exist_ok=True)
    wanted = {
        "REMBG_HOME": str(home),
        "XDG_DATA_HOME": str(root / "xdg"),
        "MODEL_CHECKSUM_DISABLED": "1",
    }
    saved = {key: os.environ.get(key) for key in [*wanted, "U2NET_HOME"]}
    os.environ.pop("U2NET_HOME", None)
    os.environ.update(wanted)
    try:
        with _no_network():
            yield home
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _no_network() -> Iterator[None]:
    """Make name resolution, connecting and pooch downloads raise, then restore them."""
    import pooch

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NetworkAttempt(f"rembg tried to reach the network: {args[:2]!r}")

    patches: list[tuple[Any, str, Any]] = [
        (socket, "getaddrinfo", refuse),
        (socket, "create_connection", refuse),
        (socket.socket, "connect", refuse),
        (socket.socket, "connect_ex", refuse),
        (pooch, "retrieve", refuse),
    ]
    originals = [(owner, attr, getattr(owner, attr)) for owner, attr, _ in patches]
    for owner, attr, replacement in patches:
        setattr(owner, attr, replacement)
    try:
        yield
    finally:
        for owner, attr, original in originals:
            setattr(owner, attr, original)


def install_model(family: str, model: onnx.ModelProto, home: Path) -> Path:
    """Write ``model`` where rembg looks for ``family`` under ``home``; return the path."""
    path = model_file(family, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    return path


def rembg_masks(
    family: str,
    model: onnx.ModelProto,
    photos: Sequence[Image.Image],
    tmp: Path,
    *,
    sess_opts: Any = None,
    **extras: Any,
) -> list[RembgOutput]:
    """rembg 2.0.86's masks for each photo, from ``model`` installed as ``family`` in a temp rembg home.

    ``extras`` are passed to ``new_session``, ``predict`` and ``remove`` as rembg's ``-x`` JSON would
    be (e.g. ``cc="upper"`` for u2net_cloth_seg); ``model_path`` is filled in for custom sessions.
    ``sess_opts`` is an ``onnxruntime.SessionOptions`` or None for rembg's default.
    """
    if _rembg_version() < REMBG_MIN:
        raise RuntimeError(f"rembg {version('rembg')} found; the harness needs the 2.0.86 layout")
    import rembg

    with offline_rembg_home(tmp) as home:
        path = install_model(family, model, home)
        if FAMILIES[family].custom:
            extras = {**extras, "model_path": str(path)}
        session = rembg.new_session(family, sess_opts=sess_opts, **extras)
        return [
            RembgOutput(
                predicted=session.predict(photo, **extras),
                removed=rembg.remove(photo, session=session, only_mask=True, **extras),
            )
            for photo in photos
        ]
