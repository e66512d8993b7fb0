"""Photos on Ray actors: paths out, small results back, in photo order, each exactly once.

Imported only when ``--ray`` is given (``import quantkit`` never imports Ray), by
:func:`quantkit.cluster.photos.map_photos`. A run, and why it is built so:

* **Connect** (:func:`connected`). ``local`` starts a private instance in a
  temporary folder of quantkit's (under ``$TMPDIR``, or ``/tmp`` when that path is too
  long for Ray's sockets; never ``/tmp/ray``) and removes it after ``ray.shutdown()``,
  which ends every process the instance started. An address is probed first - a TCP
  connection and an HTTP/2 preface, answered by any gRPC server such as Ray's GCS,
  within ``connect_timeout`` - because ``ray.init``
  on an address where nothing answers waits for minutes (measured: still waiting
  after 204 s). ``ray.init`` installs a SIGTERM handler of its own (``sys.exit``):
  quantkit's is put back, so SIGTERM still cleans up and exits 143.
* **Rows**: one per photo, its index and path. The driver sends paths, never
  pixels: the actors read the photos, so every node must see them at the same path.
  Blocks of at most 8 photos (and at least 4 blocks per worker): a block is what a
  killed worker costs, and what one progress step reports.
* **Actors**: ``map_batches`` with a class and ``ActorPoolStrategy(size=workers)``.
  Each actor opens the work once - one inference session per model - and handles
  block after block. Its models run on ``--threads`` threads, 1 when that is 0
  (the runtime's default, one thread per core of the node, in every actor would
  oversubscribe the node), and it reserves as many of Ray's CPUs. Masks do not
  depend on the thread count (u2netp FP32 and INT8, 0/1/2 threads: equal bits).
* **Order and exactness**: ``preserve_order``. Ray Data hands blocks back in photo
  order, holding those that finish early in its object store under its own
  backpressure budget - not in this process, whose memory stays flat. The driver
  still checks the indices (a repeat is dropped, a gap is an error) and yields
  the results in photo order, which the caller aggregates exactly as a local run
  does: the same floating-point additions, in the same order.
* **Fault tolerance**: Ray Data's own defaults for actor pools, ``max_restarts=-1``
  and ``max_task_retries=-1``: a dead actor is restarted (and opens the work again)
  and the tasks it held run again. A block's results leave an actor only when its
  task is done, so a killed worker costs a retry of that block, never a lost or
  repeated photo (``tests/test_ray.py`` kills one mid-run). quantkit passes no
  settings of its own for this (``map_batches``' ``**ray_remote_args`` are
  deprecated in Ray 2.60); instead a ledger (:class:`_Ledger`) counts the workers
  that died on each photo, so that a photo that kills every worker that reads it
  (out of memory) ends the run with one error line after :data:`WORKER_DEATHS`
  of them, rather than being retried without end.
* **Quiet**: Ray Data's progress bars, its INFO and WARNING logs and Ray's Python
  warnings are off for the run, and the actors' output stays in Ray's log files
  (``log_to_driver=False``); what Ray prints about a worker that died reaches
  stderr, not stdout (:class:`_RayNotes`). What Ray's C++ core writes to stderr
  while connecting is captured (:func:`_init`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import pickle
import re
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, TextIO, TypeVar

import numpy as np

# Ray starts a local instance of its own when something calls into it unconnected; a quantkit
# run must never start one it did not plan (nor write ~/.ray and /tmp/ray for it). Ray reads
# this once, when it is first imported.
os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")

import ray
import ray.data
from ray.data import ActorPoolStrategy, DataContext

from quantkit.cluster.photos import AUTO, LOCAL, PhotoWork, RayOptions
from quantkit.errors import QuantkitError, Terminated
from quantkit.progress import Progress

R = TypeVar("R")

MAX_BLOCK = 8  # photos per block at most: what a killed worker costs, and one progress step
BLOCKS_PER_WORKER = 4  # at least, so every worker gets work and a slow block does not hold back the rest
# A local instance's object store: Ray Data keeps the blocks in flight there, a few MB each
# (a block of 8 u2netp results is 33 KB; of 8 ECSSD cutouts, ~2 MB).
LOCAL_OBJECT_STORE = 512 * 2**20
_RAY_LOGGERS = ("ray", "ray.data")
# Workers that may die on one photo (or loading the models) before it is not tried again.
WORKER_DEATHS = 3


@dataclass(frozen=True)
class _Failed:
    """A QuantkitError raised on an actor (a model it cannot open), carried back to the driver."""

    error: QuantkitError


@contextlib.contextmanager
def map_photos(
    work: PhotoWork[R], files: list[Path], *, label: str, progress: Progress, options: RayOptions
) -> Iterator[Iterator[R]]:
    """``work`` on every file on Ray actors: yields an iterator of one result per file, in order."""
    threads = work.settings.threads or 1
    work = work.with_settings(replace(work.settings, threads=threads))
    progress.start(f"{label}: connecting to Ray ({options.address})")
    notes = _RayNotes(sys.stderr)
    with (
        contextlib.redirect_stdout(notes),
        connected(options, cpus=threads * (options.workers or 0)),
        _quiet_data_context(),
    ):
        workers = min(_workers(options, threads), len(files))  # no idle actor loading the models
        progress.start(f"{label} on {workers} Ray worker{'s' if workers > 1 else ''}", len(files))
        ledger_name = f"quantkit-ledger-{secrets.token_hex(8)}"
        ledger: Any = ray.remote(num_cpus=0)(_Ledger).options(name=ledger_name).remote()
        dataset = _dataset(files, workers).map_batches(
            _actor_class(work, ledger_name),
            batch_size=None,  # the whole block in one call, whose results leave together
            batch_format="numpy",
            compute=ActorPoolStrategy(size=workers),
            num_cpus=threads,
        )
        results = _in_order(_rows(dataset), len(files), progress)
        try:
            yield results
        finally:
            notes.muted = True
            results.close()  # stops Ray Data's executor before Ray shuts down
            ray.kill(ledger)


_ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


class _RayNotes(io.TextIOBase):
    """``sys.stdout`` while Ray runs: what Ray prints there goes to stderr, or nowhere at the end.

    Ray prints its notes about workers ("the actor died", "the task will be
    retried") to the driver's stdout, which may be carrying ``compare --json -``;
    they belong with quantkit's warnings, on stderr (without colours, unless stderr
    is a terminal and NO_COLOR is unset). Once the run ends (done, failed
    or interrupted) they are dropped: stopping the actors makes Ray note every task
    it cancels.
    """

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target
        self.muted = False
        self.colour = target.isatty() and "NO_COLOR" not in os.environ

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if not self.muted:
            self.target.write(text if self.colour else _ANSI_COLOUR.sub("", text))
        return len(text)

    def flush(self) -> None:
        if not self.muted:
            self.target.flush()


def _dataset(files: list[Path], workers: int) -> Any:
    rows = max(1, min(MAX_BLOCK, math.ceil(len(files) / (BLOCKS_PER_WORKER * workers))))
    items = [{"index": k, "path": str(path)} for k, path in enumerate(files)]
    return ray.data.from_items(items, override_num_blocks=math.ceil(len(files) / rows))


class _Ledger:
    """What quantkit's actors started and never finished, because the process died on it.

    One per run, a named actor that needs no CPU. An actor tells it when it starts
    and ends a photo (key: the photo's index) and loading the models (key: the
    actor's id, which a restarted actor keeps). Ray restarts a dead actor and runs
    its tasks again without end, so a photo that kills every worker that reads it
    (out of memory, say) would hold the run forever: the ledger counts those deaths,
    and after :data:`WORKER_DEATHS` the photo is not tried again - it comes back as
    the run's one error line. A photo is worked on by one actor at a time, and an
    actor's calls run in the order it sent them, so a start without its end is a death.
    """

    def __init__(self) -> None:
        self.unfinished: dict[int | str, int] = {}

    def begin(self, key: int | str) -> int:
        """Note a start of ``key``; returns how many earlier starts of it never ended."""
        deaths = self.unfinished.get(key, 0)
        self.unfinished[key] = deaths + 1
        return deaths

    def end(self, key: int | str) -> None:
        left = self.unfinished.pop(key) - 1  # only what is unfinished stays: memory flat in photos
        if left:
            self.unfinished[key] = left


def _begin(ledger: Any, key: int | str) -> int:
    """:meth:`_Ledger.begin` from an actor: how many earlier starts of ``key`` never ended."""
    deaths: Any = ray.get(ledger.begin.remote(key))
    return int(deaths)


def _actor_class(work: PhotoWork[Any], ledger_name: str) -> type:
    """A Ray Data actor class for ``work``: opens it once, then turns path rows into result rows.

    Defined per run so that ``work`` travels inside the class (pickled with it by
    value) instead of as a constructor argument. The actor works in the driver's
    current folder, so that relative paths name the same files as on the driver
    (a cluster's workers start elsewhere) and every message names them as a local
    run does. A QuantkitError - the model cannot be opened on this node, or workers
    kept dying on a photo (:class:`_Ledger`) - is sent back as the result of the
    photos concerned, for the driver to raise as its one error line.
    """

    folder = os.getcwd()

    class PhotoWorker:
        def __init__(self) -> None:
            self.photo: Callable[[Path], Any] | None = None
            self.error: _Failed | None = None
            self.ledger: Any = ray.get_actor(ledger_name)
            with contextlib.suppress(OSError):  # a node without it: relative paths will say so
                os.chdir(folder)
            key = f"loading {ray.get_runtime_context().get_actor_id()}"
            deaths = _begin(self.ledger, key)
            if deaths >= WORKER_DEATHS:
                message = f"a Ray worker died {deaths} times loading the models (out of memory?)"
                self.error = _Failed(QuantkitError(message))
                return
            try:
                self.photo = work.open()
            except QuantkitError as exc:
                self.error = _Failed(exc)
            self.ledger.end.remote(key)

        def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            results = [
                pickle.dumps(self._one(int(index), Path(str(path))))
                for index, path in zip(batch["index"], batch["path"], strict=True)
            ]
            return {"index": batch["index"], "result": np.array(results, dtype=object)}

        def _one(self, index: int, path: Path) -> Any:
            if self.photo is None:
                return self.error
            deaths = _begin(self.ledger, index)
            if deaths >= WORKER_DEATHS:
                message = f"{path}: {deaths} Ray workers died on this photo (out of memory?); not tried again"
                return _Failed(QuantkitError(message))
            try:
                return self.photo(path)
            except QuantkitError as exc:
                return _Failed(exc)
            finally:
                self.ledger.end.remote(index)

    return PhotoWorker


def _rows(dataset: Any) -> Generator[tuple[int, Any]]:
    """(index, result) as Ray Data streams them; a cluster failure becomes one error line.

    Ray Data's iterator is closed here however the loop ends, so that its executor
    has stopped before Ray shuts down (left to the garbage collector, it outlived
    ``ray.shutdown()``, called into a Ray that was gone, and Ray started a new local
    instance to answer it).
    """
    try:
        with contextlib.closing(iter(dataset.iter_rows())) as rows:  # iter(): the generator
            for row in rows:
                yield int(row["index"]), pickle.loads(row["result"])
    except ray.exceptions.RayTaskError:
        raise  # an exception in quantkit's own code on an actor: a bug, its traceback is wanted
    except ray.exceptions.RayError as exc:
        raise QuantkitError(f"the Ray run failed: {_first_line(exc)}") from exc


def _in_order(rows: Generator[tuple[int, Any]], count: int, progress: Progress) -> Generator[Any]:
    """Results by index 0, 1, 2...: a repeated index is dropped, a missing one is an error."""
    waiting: dict[int, Any] = {}
    expected = 0
    with contextlib.closing(rows):
        for index, result in rows:
            if index < expected or index in waiting:
                continue  # a block that ran twice: the same photo, the same result
            waiting[index] = result
            while expected in waiting:
                result = waiting.pop(expected)
                if isinstance(result, _Failed):
                    raise result.error
                progress.advance()
                yield result
                expected += 1
    if expected != count:
        raise QuantkitError(f"Ray returned {expected} of {count} photos in order; the run is incomplete")


def _workers(options: RayOptions, threads: int) -> int:
    resources: Callable[[], dict[str, float]] = ray.cluster_resources  # untyped in Ray
    cpus = int(resources().get("CPU", 0))
    workers = options.workers or max(1, cpus // threads)
    if workers * threads > cpus:
        raise QuantkitError(
            f"{workers} Ray workers of {threads} thread(s) need {workers * threads} CPUs; "
            f"the cluster at {options.address} has {cpus}"
        )
    return workers


@contextlib.contextmanager
def _quiet_data_context() -> Iterator[None]:
    """Ray Data without its progress bars, logs and warnings, in order; the caller's settings put back
    after."""
    context = DataContext.get_current()
    saved = (
        context.enable_progress_bars,
        context.print_on_execution_start,
        context.execution_options.preserve_order,
    )
    levels = {name: logging.getLogger(name).level for name in _RAY_LOGGERS}
    context.enable_progress_bars = False
    context.print_on_execution_start = False
    context.execution_options.preserve_order = True
    for name in _RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        # Ray's Python warnings (advice on its own settings, deprecations) are not the user's
        # business. catch_warnings swaps the process's filters (up to Python 3.13, and in 3.14
        # unless context-aware warnings are on), so they hold in Ray Data's executor thread too.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"ray(\.|$)")
            yield
    finally:
        (
            context.enable_progress_bars,
            context.print_on_execution_start,
            context.execution_options.preserve_order,
        ) = saved
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def connected(options: RayOptions, cpus: int = 0) -> Iterator[None]:
    """Ray initialised for the block: connected to ``options.address``, or a private local instance.

    A local instance gets this machine's CPUs (or ``cpus``, if more were asked for)
    and is shut down and deleted afterwards. A connection this process already had
    is used as it is, and left open, for ``auto``.
    """
    if ray.is_initialized():
        if options.address != AUTO:
            raise QuantkitError(
                f"--ray {options.address}: this process is already connected to Ray; use 'auto' to run there"
            )
        yield
        return
    if options.address == LOCAL:
        with _local_instance(cpus) as arguments:
            _init(options.address, arguments)
            try:
                yield
            finally:
                ray.shutdown()
        return
    address = _resolve(options.address)
    _probe(options.address, address, options.connect_timeout)
    _init(options.address, {"address": address})
    try:
        yield
    finally:
        ray.shutdown()


# A local instance's token: Ray >= 2.5x starts local instances with token authentication
# and, given no token, writes one to ~/.ray/auth_token, where it would outlive the run. This
# one lives in the environment of the instance's processes only. One per process: Ray's C++
# side keeps the first token it reads.
_LOCAL_TOKEN = secrets.token_hex(32)


# Ray's Unix sockets live at FOLDER/session_<date>_<time>_<microseconds>_<pid>/sockets/plasma_store
# and their paths must fit in 107 bytes: 43 for FOLDER (with a 7-digit pid), 15 of them for the
# "qk-ray-XXXXXXXX" that mkdtemp adds.
_SOCKET_PATH_MAX = 107
_SOCKET_TAIL = len("/session_2026-12-06_04-09-20_390930_4194304/sockets/plasma_store")
_FOLDER_NAME = len("/qk-ray-XXXXXXXX")


def _short_folder() -> str:
    """A new folder for a local instance: under ``$TMPDIR``, or ``/tmp`` when that path is too long.

    Ray refuses socket paths over 107 bytes (its own ``/tmp/ray`` default exists for that
    reason): a long ``$TMPDIR`` - macOS gives every user one of ~50 characters, and test
    runners nest them deep - would stop the instance before it starts.
    """
    bases = [tempfile.gettempdir(), "/tmp"]
    fitting = [b for b in bases if len(os.fsencode(b)) + _FOLDER_NAME + _SOCKET_TAIL <= _SOCKET_PATH_MAX]
    if not fitting:
        raise QuantkitError(
            f"cannot start a local Ray instance: the temporary folder {bases[0]} is too long a path "
            "for Ray's sockets (107 bytes); set TMPDIR to a short folder"
        )
    failure: OSError | None = None
    for base in dict.fromkeys(fitting):  # in order, once each
        try:
            return tempfile.mkdtemp(prefix="qk-ray-", dir=base)
        except OSError as exc:
            failure = failure or exc
    reason = failure.strerror if failure else "no folder"
    raise QuantkitError(f"cannot create a folder for a local Ray instance ({reason}); set TMPDIR")


@contextlib.contextmanager
def _local_instance(cpus: int) -> Iterator[dict[str, Any]]:
    """``ray.init`` arguments for a private instance in a temporary folder, removed afterwards.

    The folder's name is short: Ray puts Unix sockets in it, whose paths must fit in
    107 bytes. Usage statistics stay off (quantkit does not touch the network), and
    the instance's token is a random one that is never written to disk.
    """
    folder = _short_folder()
    environment = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_TOKEN": _LOCAL_TOKEN}
    # RAY_AUTH_MODE too: ray.init sets it to "token" for a local instance, and leaves it set.
    saved = {name: os.environ.get(name) for name in [*environment, "RAY_AUTH_MODE"]}
    os.environ.update(environment)
    try:
        yield {
            "address": "local",
            "num_cpus": max(os.cpu_count() or 1, cpus),
            "object_store_memory": LOCAL_OBJECT_STORE,
            "include_dashboard": False,
            "_temp_dir": folder,
        }
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(folder, ignore_errors=True)


def _init(option: str, arguments: dict[str, Any]) -> None:
    """``ray.init``, its chatter kept off the terminal, its failure as one line with Ray's reason.

    While it connects, Ray's C++ core writes warnings straight to file descriptor 2
    - one a second for 20 s when a cluster refuses the driver's token, say - so
    descriptor 2 goes to a temporary file for that time, and the last of those
    warnings joins the error line if the connection fails. A progress bar's
    refreshes in that window are lost with it. ``ray.init`` also installs a SIGTERM
    handler of its own (``sys.exit``): quantkit's handlers are put back.
    """
    term, interrupt = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    try:
        with tempfile.TemporaryFile() as captured:
            with _stderr_to(captured):
                try:
                    ray.init(log_to_driver=False, logging_level=logging.ERROR, **arguments)
                    _spend_constructor_warning()
                    return
                except SystemExit as exc:  # Ray's own SIGTERM handler, while ray.init ran
                    raise Terminated() from exc
                except (OSError, RuntimeError, ValueError) as exc:  # OSError: connections, sockets
                    failure = exc
            reason = _last_ray_warning(captured.read())
        why = f" ({reason})" if reason and reason not in str(failure) else ""
        raise QuantkitError(f"--ray {option}: {_first_line(failure)}{why}") from failure
    finally:
        if signal.getsignal(signal.SIGTERM) is not term:
            signal.signal(signal.SIGTERM, term)
        if signal.getsignal(signal.SIGINT) is not interrupt:
            signal.signal(signal.SIGINT, interrupt)


def _spend_constructor_warning() -> None:
    """Have Ray's C++ core log its once-per-process actor warning while stderr is captured.

    Every run would otherwise start with a red ``E ... core_worker.cc`` line about
    Ray Data's own actors, whose constructor arguments Ray Data puts in the object
    store (ray-project/ray#53727; with ``max_restarts`` set, not avoidable from
    outside). The core logs it once per process, synchronously, in the call that
    submits such an actor: one submission of an actor that needs no CPU, killed at
    once, spends it (0.13 s).
    """
    handle: Any = ray.remote(num_cpus=0, max_restarts=1)(_Nothing).remote(ray.put(None))
    ray.kill(handle)


class _Nothing:
    def __init__(self, _argument: object) -> None:
        pass


@contextlib.contextmanager
def _stderr_to(captured: BinaryIO) -> Iterator[None]:
    """File descriptor 2 into ``captured`` for the block; ``captured`` rewound afterwards."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(captured.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        captured.seek(0)


# A line of Ray's C++ log: "[2026-12-06 03:24:28,828 W 30700 30700] gcs_client.cc:210: message".
_RAY_LOG_LINE = re.compile(rb"^\[[^\]]* [WEF] \d+ \d+\] [\w.]+:\d+: (.*)$", re.MULTILINE)


def _last_ray_warning(text: bytes) -> str:
    found = _RAY_LOG_LINE.findall(text)
    return found[-1].decode("utf-8", "replace").strip()[:200] if found else ""


def _resolve(option: str) -> str:
    """What ``auto`` stands for (RAY_ADDRESS, else the cluster ``ray start`` recorded), or ``option``."""
    if option != AUTO:
        return option
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if address in (AUTO, LOCAL):
        raise QuantkitError(f"--ray auto: RAY_ADDRESS={address} does not name a cluster")
    if address:
        return address
    # Where `ray start` records its cluster: Ray's temporary folder ($RAY_TMPDIR, $TMPDIR or /tmp)/ray.
    base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    with contextlib.suppress(OSError):
        recorded = (Path(base) / "ray" / "ray_current_cluster").read_text().strip()
        if recorded:
            return recorded
    raise QuantkitError(
        "--ray auto: no Ray cluster found (RAY_ADDRESS is not set and no `ray start` cluster runs here); "
        "use --ray local for a private one"
    )


# The client connection preface of HTTP/2 and an empty SETTINGS frame; a gRPC server answers
# with a SETTINGS frame of its own (frame type 4, the fourth byte of its 9-byte header).
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS = 4


def _probe(option: str, address: str, timeout: float) -> None:
    """Refuse, within ``timeout``, an address where no gRPC server (such as Ray's GCS) answers."""
    scheme, _, rest = address.rpartition("://")
    if scheme == "ray":
        raise QuantkitError(
            f"--ray {option}: Ray Data does not run through Ray Client (ray://); run quantkit on a node "
            "of the cluster, with --ray auto or the head's HOST:PORT (6379 unless set otherwise)"
        )
    if scheme:
        raise QuantkitError(f"--ray {option}: unknown scheme {scheme}://; expected auto, local or HOST:PORT")
    host, _, port_text = rest.rpartition(":")
    if not host or not port_text.isdigit():
        raise QuantkitError(f"--ray {option}: expected auto, local or HOST:PORT")
    host = host.strip("[]")  # an IPv6 literal
    try:
        with socket.create_connection((host, int(port_text)), timeout=timeout) as sock:
            sock.sendall(_PREFACE)
            header = sock.recv(9)
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or type(exc).__name__
        raise QuantkitError(f"--ray {option}: cannot reach a Ray cluster at {rest} ({reason})") from exc
    if len(header) < 4 or header[3] != _SETTINGS:
        raise QuantkitError(f"--ray {option}: {rest} answers, but not as a Ray cluster does (gRPC)")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
