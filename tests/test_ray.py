"""``compare`` and ``remove`` on Ray (``--ray``): the same results as here, nothing left behind.

Every run that needs Ray starts a real private local instance (``--ray local``), or joins
a real cluster started with ``ray start --head``; the models are the real u2netp (FP32 and
the INT8 the session quantizes) or the tiny one of ``conftest``. Without Ray installed
(``pip install 'quantkit[ray]'``) the tests that need it skip; what quantkit does without
Ray is tested here either way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import quantkit
from quantkit import QuantkitError, RayOptions, RemoveOptions, RuntimeSettings

from .cli_helpers import Result, as_foreground, assert_one_line_error, signed_json
from .cli_helpers import quantkit as run_cli
from .conftest import CALIB, U2NETP, ecssd_root, write_photos

ACTOR = "ray::MapWorker(MapBatches(PhotoWorker))"  # the process title of quantkit's Ray actors
QUIET_HEAD = ("--include-dashboard=false", "--block")


@pytest.fixture()
def needs_ray() -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'quantkit[ray]')")


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process, from /proc."""
    found: dict[int, tuple[int, str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        found[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), command.strip())
    return found


def _descendants(root: int) -> dict[int, str]:
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    out: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out[pid] = processes[pid][1]
        todo.extend(children.get(pid, []))
    return out


def _actors() -> set[int]:
    """quantkit's Ray actors started from this process (its local instance's workers)."""
    return {pid for pid, command in _descendants(os.getpid()).items() if command.startswith(ACTOR)}


def _running_with(text: str) -> list[str]:
    """Live processes whose command line mentions ``text`` (a run's temporary folder)."""
    return [command for command in (c for _, c in _processes().values()) if text in command]


@pytest.fixture()
def isolated(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for a subprocess run: its own TMPDIR and HOME, both checked empty afterwards,
    and /tmp/ray checked untouched: a local instance leaves no files, processes or tokens.

    TMPDIR is short (Ray's socket paths must fit in 107 bytes; under a longer one quantkit
    puts the instance in /tmp, where this fixture would not see what it left)."""
    scratch = Path(tempfile.mkdtemp(prefix="qk-t-"))
    home = tmp_path / "home"
    home.mkdir()
    shared = Path("/tmp/ray")
    before = shared.exists()
    try:
        yield {"TMPDIR": str(scratch), "HOME": str(home)}
        assert [p.name for p in scratch.iterdir() if p.name != ".ses"] == []  # onnxruntime's own file
        assert list(home.iterdir()) == []  # Ray writes ~/.ray/auth_token unless given a token
        assert shared.exists() == before
        assert _running_with(str(scratch)) == []
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _same_files(left: Path, right: Path) -> None:
    names = sorted(p.name for p in left.iterdir())
    assert names == sorted(p.name for p in right.iterdir())
    assert not [n for n in names if n.startswith(".")]
    for name in names:
        assert (left / name).read_bytes() == (right / name).read_bytes(), name


def _warnings(result: Result) -> list[str]:
    return [line for line in result.err.splitlines() if line.startswith("warning:")]


# --- without Ray, and before Ray ---------------------------------------------------------------


def test_quantkit_never_imports_ray_unless_asked() -> None:
    code = (
        "import sys, quantkit, quantkit.api, quantkit.cli, quantkit.cluster.photos; "
        "quantkit.RayOptions('local'); assert 'ray' not in sys.modules, 'ray imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_without_ray_installed_it_is_one_error_line(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    code = (
        "import sys; sys.modules['ray'] = None; from quantkit.cli import main; "
        f"main(['remove', {str(tiny_model_path)!r}, {str(photos)!r}, '-o', {str(tmp_path / 'out')!r}, "
        "'--ray', 'local'])"
    )
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    result = Result(done.returncode, done.stdout, done.stderr)
    assert_one_line_error(result, 2, "pip install 'quantkit[ray]'")
    assert not (tmp_path / "out").exists()


def test_ray_options_are_checked(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    with pytest.raises(QuantkitError, match="at least 1"):
        RayOptions("local", workers=0)
    with pytest.raises(QuantkitError, match="expected auto, local or HOST:PORT"):
        RayOptions(" ")
    alone = run_cli("remove", tiny_model_path, photos, "-o", tmp_path / "o", "--ray-workers", "2")
    assert_one_line_error(alone, 2, "--ray-workers needs --ray ADDRESS")


def test_outputs_are_checked_before_ray_starts(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo_03.png").write_text("keep")  # a user's file where a cutout would go
    before = set(_descendants(os.getpid()))
    with pytest.raises(QuantkitError, match="was not written by quantkit"):
        quantkit.remove(tiny_model_path, [photos], output_dir=out, force=True, ray=RayOptions("local"))
    assert set(_descendants(os.getpid())) == before  # refused in the plan: no Ray was started
    assert [p.name for p in out.iterdir()] == ["photo_03.png"] and (
        out / "photo_03.png"
    ).read_text() == "keep"


@pytest.mark.usefixtures("needs_ray")
def test_bad_addresses_are_one_line_and_quick(
    tiny_model_path: Path, photos: Path, tmp_path: Path, isolated: dict[str, str]
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        free_port = closed.getsockname()[1]  # nothing listens there once the socket is closed
    chatty = socket.socket()  # answers, but not in HTTP/2: not a Ray cluster
    chatty.bind(("127.0.0.1", 0))
    chatty.listen()

    def answer() -> None:
        with contextlib.suppress(OSError):
            connection, _ = chatty.accept()
            connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            connection.close()

    threading.Thread(target=answer, daemon=True).start()
    cases = [
        (f"127.0.0.1:{free_port}", "cannot reach a Ray cluster at"),
        (f"127.0.0.1:{chatty.getsockname()[1]}", "answers, but not as a Ray cluster does"),
        ("ray://127.0.0.1:10001", "Ray Data does not run through Ray Client"),
        ("http://127.0.0.1:1", "unknown scheme"),
        ("nowhere", "expected auto, local or HOST:PORT"),
        ("auto", "no Ray cluster found"),  # RAY_ADDRESS unset, and no `ray start` recorded in TMPDIR
    ]
    env = {**isolated, "RAY_ADDRESS": ""}
    for address, message in cases:
        started = time.monotonic()
        result = run_cli(
            "remove", tiny_model_path, photos, "-o", tmp_path / "out", "--ray", address, env=env, timeout=60
        )
        assert_one_line_error(result, 2, message)
        assert time.monotonic() - started < 30, address
        assert not (tmp_path / "out").exists()  # the folder made for the run went with it
    chatty.close()


# --- the same results ---------------------------------------------------------------------------


def _truth_for(folder: Path, masks: Path) -> None:
    """Ground truth for synthetic photos: their bright blob."""
    masks.mkdir()
    for path in sorted(folder.iterdir()):
        with Image.open(path) as image:
            gray = np.asarray(image.convert("L"), dtype=np.float64)
        Image.fromarray(((gray > gray.mean() + 25) * 255).astype(np.uint8)).save(masks / f"{path.stem}.png")


class Recorder:
    """A :class:`quantkit.progress.Progress` that keeps what it was told."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int | None]] = []
        self.advanced = 0
        self.warnings: list[str] = []

    def start(self, label: str, total: int | None = None) -> None:
        self.started.append((label, total))

    def advance(self, steps: int = 1) -> None:
        self.advanced += steps

    def warn(self, message: str) -> None:
        self.warnings.append(message)


@pytest.mark.usefixtures("needs_ray")
def test_compare_on_ray_reports_what_a_local_run_reports(
    tiny_model_path: Path, tiny_naive: Path, tmp_path: Path
) -> None:
    """Every figure, ground truth included, and the same warnings and progress, from the Python API."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    write_photos(images, 19, size=(64, 48), seed=3)
    _truth_for(images, masks)
    (masks / "photo_04.png").unlink()  # a photo without ground truth
    (images / "zz_broken.jpg").write_bytes(b"not a photo")  # and one that cannot be read
    here, there = Recorder(), Recorder()
    local = quantkit.compare(tiny_model_path, tiny_naive, images=images, masks=masks, progress=here)
    on_ray = quantkit.compare(
        tiny_model_path, tiny_naive, images=images, masks=masks, progress=there, ray=RayOptions("local")
    )
    assert on_ray.to_dict(worst=30) == local.to_dict(worst=30)
    assert local.images == 19 and local.missing_masks == ["photo_04.png"] and len(local.skipped) == 1
    assert local.reference.truth is not None and local.candidates[0].truth is not None
    assert there.warnings == here.warnings
    assert there.started[-1] == ("comparing 2 models on 2 Ray workers", 20) and there.advanced == 20
    assert here.started == [("comparing 2 models", 20)] and here.advanced == 20
    assert _actors() == set()  # the local instance went with the run


@pytest.mark.usefixtures("needs_ray")
def test_remove_on_ray_writes_the_same_bytes(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    options = RemoveOptions(bg_color=(20, 40, 60, 255), max_size=32)
    local = quantkit.remove(tiny_model_path, [photos], output_dir=tmp_path / "here", options=options)
    on_ray = quantkit.remove(
        tiny_model_path,
        [photos],
        output_dir=tmp_path / "there",
        options=options,
        ray=RayOptions("local", workers=1),
    )
    assert [p.name for p in on_ray.written] == [p.name for p in local.written] and len(local.written) == 8
    _same_files(tmp_path / "here", tmp_path / "there")


@pytest.fixture(scope="module")
def real_photos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path | None]:
    """30 ECSSD photos with their masks but one (the bundled photos, no masks, without ECSSD),
    and a file that is not a photo."""
    base = tmp_path_factory.mktemp("real")
    images = base / "images"
    images.mkdir()
    root = ecssd_root()
    masks = None
    if root is None:
        for path in sorted(CALIB.glob("*.jpg")) + sorted(CALIB.glob("*.png")):
            shutil.copy(path, images / path.name)
    else:
        masks = base / "masks"
        masks.mkdir()
        for k, path in enumerate(sorted((root / "images").iterdir())[:30]):
            shutil.copy(path, images / path.name)
            if k != 2:
                shutil.copy(root / "masks" / f"{path.stem}.png", masks / f"{path.stem}.png")
    (images / "zz_broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    return images, masks


@pytest.mark.slow
@pytest.mark.usefixtures("needs_ray")
def test_compare_json_on_ray_equals_the_local_one(
    u2netp_int8: Path, real_photos: tuple[Path, Path | None], tmp_path: Path, isolated: dict[str, str]
) -> None:
    """u2netp FP32 vs the default INT8: every IoU, MAE, max-F, S/E-measure and floor figure."""
    images, masks = real_photos
    common = ["compare", U2NETP, u2netp_int8, "--images", images, "--no-config", "--worst", "40"]
    common += ["--masks", masks] if masks else []
    local = run_cli(*common, "--json", tmp_path / "local.json")
    on_ray = run_cli(
        *common, "--json", tmp_path / "ray.json", "--ray", "local", "--ray-workers", "2", env=isolated
    )
    assert local.code == on_ray.code == 0, on_ray.err
    here = signed_json((tmp_path / "local.json").read_text(), "compare")
    there = signed_json((tmp_path / "ray.json").read_text(), "compare")
    assert there == here
    assert on_ray.out == local.out and _warnings(on_ray) == _warnings(local)
    assert [s["file"] for s in here["skipped"]] == ["zz_broken.jpg"]
    if masks is not None:
        assert len(here["missing_masks"]) == 1 and here["models"][0]["ground_truth"]["images"] == 29


@pytest.mark.slow
@pytest.mark.usefixtures("needs_ray")
def test_remove_on_ray_through_the_cli(
    real_photos: tuple[Path, Path | None], tmp_path: Path, isolated: dict[str, str]
) -> None:
    """Same PNGs, names, messages and exit codes; --force replaces only quantkit's own PNGs."""
    images, _ = real_photos
    local = run_cli("remove", U2NETP, images, "-o", tmp_path / "here")
    on_ray = run_cli("remove", U2NETP, images, "-o", tmp_path / "there", "--ray", "local", env=isolated)
    assert local.code == on_ray.code == 0, on_ray.err
    assert on_ray.out.replace("there", "here") == local.out and "skipped 1" in local.out
    assert _warnings(on_ray) == _warnings(local) and "zz_broken.jpg" in _warnings(local)[0]
    _same_files(tmp_path / "here", tmp_path / "there")
    again = run_cli("remove", U2NETP, images, "-o", tmp_path / "there", "--ray", "local", env=isolated)
    assert_one_line_error(again, 2, "already exists (use --force")
    first = sorted((tmp_path / "there").iterdir())[0]
    first.write_bytes(b"gone")  # damaged: quantkit's mark is gone too, so --force must refuse it
    forced = run_cli(
        "remove", U2NETP, images, "-o", tmp_path / "there", "--ray", "local", "--force", env=isolated
    )
    assert_one_line_error(forced, 2, "was not written by quantkit")
    first.unlink()
    forced = run_cli(
        "remove", U2NETP, images, "-o", tmp_path / "there", "--ray", "local", "--force", env=isolated
    )
    assert forced.code == 0, forced.err
    _same_files(tmp_path / "here", tmp_path / "there")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"not a png")
    nothing = run_cli("remove", U2NETP, junk, "-o", tmp_path / "x" / "y", "--ray", "local", env=isolated)
    assert_one_line_error(nothing, 2, "no photo could be processed")
    assert not (tmp_path / "x").exists()


# --- faults -------------------------------------------------------------------------------------


class KillOneWorker(Recorder):
    """Kills one of quantkit's Ray actors (SIGKILL, as the OOM killer would) at the first result,
    and notes the actor processes that appear after it."""

    def __init__(self) -> None:
        super().__init__()
        self.killed: int | None = None
        self.before: set[int] = set()
        self.after: set[int] = set()

    def advance(self, steps: int = 1) -> None:
        super().advance(steps)
        actors = _actors()
        if self.killed is None:
            self.before = actors
            self.killed = min(actors)
            os.kill(self.killed, signal.SIGKILL)
        else:
            self.after |= actors - self.before


@pytest.mark.slow
@pytest.mark.usefixtures("needs_ray")
def test_a_killed_worker_costs_a_retry_not_a_photo(
    u2netp_int8: Path, real_photos: tuple[Path, Path | None], capsys: pytest.CaptureFixture[str]
) -> None:
    images, masks = real_photos
    local = quantkit.compare(U2NETP, u2netp_int8, images=images, masks=masks)
    progress = KillOneWorker()
    capsys.readouterr()
    on_ray = quantkit.compare(
        U2NETP, u2netp_int8, images=images, masks=masks, progress=progress, ray=RayOptions("local", workers=2)
    )
    assert capsys.readouterr().out == ""  # Ray's notes on the dead worker: stderr, beside quantkit's
    assert progress.killed is not None and progress.after, "no actor was restarted"
    assert progress.advanced == len(list(images.iterdir()))
    names = [p.name for p in sorted(images.iterdir()) if p.name != "zz_broken.jpg"]
    assert on_ray.candidates[0].agreement.names == names  # each photo once, in order
    assert on_ray.to_dict(worst=40) == local.to_dict(worst=40)


@pytest.mark.slow
@pytest.mark.usefixtures("needs_ray")
def test_sigterm_during_a_ray_run_leaves_nothing(
    real_photos: tuple[Path, Path | None], tmp_path: Path, isolated: dict[str, str]
) -> None:
    images, _ = real_photos
    many = tmp_path / "many"  # long enough a run to be interrupted in the middle
    many.mkdir()
    for path in images.iterdir():
        for copy in range(3):
            shutil.copy(path, many / f"{copy}_{path.name}")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quantkit",
            "remove",
            str(U2NETP),
            str(many),
            "-o",
            str(out),
            "--ray",
            "local",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **isolated, "TERM": "dumb"},
        preexec_fn=as_foreground,
    )
    deadline = time.monotonic() + 300
    while not (out.is_dir() and any(not p.name.startswith(".") for p in out.iterdir())):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    printed, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "error:" not in err
    assert printed == ""  # nor Ray's notes on the actors it stopped
    written = list(out.iterdir())
    assert (
        written and len(written) < len(list(many.iterdir())) and not [p for p in written if p.name[0] == "."]
    )
    for path in written:
        with Image.open(path) as image:
            image.load()  # complete, or it would not be there
    # `isolated` checks, after the test, that no process and no temporary file of the instance is left


@pytest.mark.usefixtures("needs_ray")
def test_a_photo_that_kills_every_worker_ends_the_run_in_one_line(tmp_path: Path) -> None:
    """Ray restarts dead actors and retries their work without end: a photo that kills every
    worker reading it (or models that kill every worker loading them) would hold the run forever.
    After WORKER_DEATHS deaths it is the run's error instead, the photos before it delivered."""
    from quantkit.cluster import ray_photos
    from quantkit.cluster.photos import map_photos

    @dataclass(frozen=True)
    class Lethal:  # defined here, so that Ray pickles it by value for the actors
        settings: RuntimeSettings = field(default_factory=RuntimeSettings)
        poison: str = ""  # the photo whose reading kills the process, as the OOM killer would
        at_load: bool = False

        def with_settings(self, settings: RuntimeSettings) -> Lethal:
            return replace(self, settings=settings)

        def open(self) -> Callable[[Path], str]:
            if self.at_load:
                os.kill(os.getpid(), signal.SIGKILL)

            def one(path: Path) -> str:
                if path.name == self.poison:
                    os.kill(os.getpid(), signal.SIGKILL)
                return path.name

            return one

    files = [tmp_path / f"p{k:02}" for k in range(12)]
    progress = Recorder()
    with ray_photos.connected(RayOptions("local")):  # one instance for both runs ("auto" joins it)
        delivered: list[str] = []
        started = time.monotonic()
        with (
            map_photos(
                Lethal(poison="p05"), files, label="x", progress=progress, ray=RayOptions("auto", 1)
            ) as results,
            pytest.raises(QuantkitError, match=r"p05: 3 Ray workers died on this photo \(out of memory\?\)"),
        ):
            delivered.extend(results)
        assert delivered == [f"p{k:02}" for k in range(5)] and progress.advanced == 5
        with (
            map_photos(
                Lethal(at_load=True), files, label="x", progress=progress, ray=RayOptions("auto", 1)
            ) as results,
            pytest.raises(QuantkitError, match="a Ray worker died 3 times loading the models"),
        ):
            next(iter(results))
        assert time.monotonic() - started < 120
    assert _actors() == set()


def test_a_long_tmpdir_puts_the_local_instance_in_tmp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Ray's socket paths must fit in 107 bytes; macOS's TMPDIR alone takes ~50."""
    ray_photos = pytest.importorskip("quantkit.cluster.ray_photos", reason="Ray is not installed")
    deep = tmp_path / ("d" * 60)
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    folder = Path(ray_photos._short_folder())
    try:
        assert folder.parent == Path("/tmp") and folder.name.startswith("qk-ray-")
    finally:
        folder.rmdir()
    monkeypatch.setattr(tempfile, "tempdir", "/tmp")
    folder = Path(ray_photos._short_folder())
    folder.rmdir()
    assert folder.parent == Path("/tmp")


# --- a cluster started with `ray start` ----------------------------------------------------------


@pytest.fixture()
def head(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A one-node Ray cluster, as ``ray start --head`` makes one: its temporary folder (holding the
    address file `auto` reads) and the environment to reach it, with its own HOME."""
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'quantkit[ray]')")
    base = Path(tempfile.mkdtemp(prefix="qk-head-"))  # short: Ray's socket paths must fit 107 bytes
    home = tmp_path / "head_home"
    home.mkdir()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "HOME": str(home),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",  # a token cluster needs RAY_AUTH_MODE=token on the driver too
        "TMPDIR": str(base),
    }
    ray = Path(sys.executable).with_name("ray")
    proc = subprocess.Popen(
        [ray, "start", "--head", f"--port={port}", f"--temp-dir={base / 'ray'}", "--num-cpus=2", *QUIET_HEAD],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (base / "ray" / "ray_current_cluster").is_file():
            assert proc.poll() is None and time.monotonic() < deadline, "ray start failed"
            time.sleep(0.2)
        yield base, {"TMPDIR": str(base), "HOME": str(home), "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": ""}
    finally:
        for pid in _descendants(proc.pid):  # its processes first: `ray start --block` then exits
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
def test_joining_a_running_cluster_with_auto(
    head: tuple[Path, dict[str, str]], photos: Path, tiny_model_path: Path, tmp_path: Path
) -> None:
    """`--ray auto` finds the cluster `ray start` recorded; relative paths work, as they do here."""
    _, env = head
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(tiny_model_path, work / "tiny.onnx")
    shutil.copytree(photos, work / "photos")
    local = run_cli("remove", "tiny.onnx", "photos", "-o", "here", cwd=work)
    joined = run_cli("remove", "tiny.onnx", "photos", "-o", "there", "--ray", "auto", cwd=work, env=env)
    assert local.code == joined.code == 0, joined.err
    assert _warnings(joined) == _warnings(local)
    _same_files(work / "here", work / "there")
    too_many = run_cli(
        "remove",
        "tiny.onnx",
        "photos",
        "-o",
        "more",
        "--ray",
        "auto",
        "--ray-workers",
        "3",
        cwd=work,
        env=env,
    )
    assert_one_line_error(too_many, 2, "3 Ray workers of 1 thread(s) need 3 CPUs")
    assert not (work / "more").exists()
