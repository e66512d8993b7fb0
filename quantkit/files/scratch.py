"""Scratch space that disappears with the run, whatever ends it.

Quantization stages model copies (a u2net-sized model is 176 MB a copy) in a
temporary folder. It is removed on success, on any error, on Ctrl-C and - with
:func:`sigterm_raises` installed by the CLI - on SIGTERM, which otherwise kills
Python without running a single ``finally``. A full ``$TMPDIR`` becomes one line
that says where the space ran out and how to move it.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from quantkit.errors import QuantkitError, Terminated


@contextlib.contextmanager
def scratch_dir(prefix: str = "quantkit-") -> Iterator[Path]:
    try:
        path = Path(tempfile.mkdtemp(prefix=prefix))
    except OSError as exc:
        raise QuantkitError(
            f"cannot create a temporary folder in {tempfile.gettempdir()} ({exc.strerror}); set TMPDIR"
        ) from exc
    try:
        yield path
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise QuantkitError(
                f"no space left on device for temporary files in {path.parent} (set TMPDIR to a larger disk)"
            ) from exc
        raise
    finally:
        shutil.rmtree(path, ignore_errors=True)


class _Signals:
    """The first SIGINT or SIGTERM of the run, once one has arrived; one held back, if any."""

    received: int | None = None
    holding: int = 0  # depth of held_signals() blocks
    held: BaseException | None = None


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Raise the Ctrl-C or SIGTERM that arrives inside this block only when it ends.

    For a few statements that must not be cut in two: starting a child process and
    recording it, so that cleanup can end it. Blocking the signal in the main thread is
    not enough - the kernel hands it to any thread (rich's refresh thread), and Python
    runs the handler in the main thread at its next chance, inside ``Popen`` too: a
    child nobody had a handle on outlived ``bench`` (tests/test_safety.py).
    """
    _Signals.holding += 1
    try:
        yield
    finally:
        _Signals.holding -= 1
        if not _Signals.holding and _Signals.held is not None:
            held, _Signals.held = _Signals.held, None
            raise held


def interrupted_by() -> int | None:
    """The signal (SIGINT or SIGTERM) that interrupted this run, if any.

    Once one has arrived, whatever exception ends the run is its consequence - also
    when a library wrapped it into something else (onnxruntime turns an interrupted
    import into ``ImportError``) - so the CLI reports the signal, not that exception.
    """
    return _Signals.received


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Turn the first SIGTERM into :class:`Terminated` (and Ctrl-C into KeyboardInterrupt) so
    cleanup runs, remembering which arrived; repeats are ignored while it does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _raise(signum, Terminated())

    def on_int(signum: int, frame: FrameType | None) -> None:
        _raise(signum, KeyboardInterrupt())

    _Signals.received = None
    previous_term = signal.signal(signal.SIGTERM, on_term)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:  # not SIG_IGN: a background job stays deaf to Ctrl-C
        signal.signal(signal.SIGINT, on_int)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)


def _raise(signum: int, exc: BaseException) -> None:
    _Signals.received = _Signals.received or signum
    if _Signals.holding:
        _Signals.held = _Signals.held or exc
        return
    raise exc
