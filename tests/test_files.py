"""What quantkit writes: atomically, only where the guard allows, replacing only its own files.

The command-level consequences (every command refuses before any work) are checked once
each in test_cli.py and the command's own tests; here are the rules themselves.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import stat
from pathlib import Path

import onnx
import pytest
from PIL import Image

from quantkit.errors import QuantkitError, Terminated
from quantkit.files.atomic import atomic_file, write_text
from quantkit.files.guard import OutputGuard
from quantkit.files.ownership import (
    MARKDOWN_HEADER,
    MODEL_KEY,
    REPORT_MARKER,
    OutputKind,
    sign_json,
    written_by_quantkit,
)
from quantkit.files.scratch import held_signals, scratch_dir, sigterm_raises
from quantkit.removal.compose import png_info

from .conftest import build_tiny_model


def test_atomic_file_replaces_on_success_and_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_bytes(b"half a model")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    target.write_bytes(b"old")
    with atomic_file(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.onnx.")
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # not before the block completes
    assert target.read_bytes() == b"new" and list(tmp_path.iterdir()) == [target]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644 & ~umask  # not mkstemp's 0600


def test_a_full_disk_is_one_line_naming_the_file(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with (
        pytest.raises(QuantkitError, match=f"no space left on device while writing {target}$"),
        atomic_file(target),
    ):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []
    write_text(target, "ünïcode\n")
    assert target.read_text(encoding="utf-8") == "ünïcode\n"


def test_scratch_space_goes_on_error_and_on_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    with pytest.raises(ValueError), scratch_dir() as work:
        (work / "big.onnx").write_bytes(b"x" * 1000)
        raise ValueError
    assert list(tmp_path.iterdir()) == []
    with (
        pytest.raises(QuantkitError, match=r"no space left on device for temporary files.*set TMPDIR"),
        scratch_dir(),
    ):
        raise OSError(errno.ENOSPC, "No space left on device")
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), sigterm_raises(), scratch_dir() as work:
        (work / "x").write_text("x")
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0.1)  # let the handler run
    assert list(tmp_path.iterdir()) == [] and not isinstance(Terminated(), Exception)
    assert signal.getsignal(signal.SIGTERM) == previous


# --- ownership -------------------------------------------------------------------------------


def signed_model(path: Path, signed: bool) -> Path:
    model = build_tiny_model()
    if signed:
        model.metadata_props.add(key=MODEL_KEY, value="0.2.0")
    onnx.save(model, str(path))
    return path


def png(path: Path, signed: bool) -> Path:
    Image.new("RGBA", (4, 4)).save(path, pnginfo=png_info() if signed else None)
    return path


def report_folder(path: Path, signed: bool) -> Path:
    path.mkdir()
    (path / "index.html").write_text("<html></html>")
    if signed:
        (path / REPORT_MARKER).write_text("written by quantkit\n")
    return path


OWNED = {
    OutputKind.MODEL: lambda p, s: signed_model(p / "m.onnx", s),
    OutputKind.JSON: lambda p, s: _write(
        p / "r.json", json.dumps(sign_json({"a": 1}, "bench") if s else {"a": 1})
    ),
    OutputKind.MARKDOWN: lambda p, s: _write(p / "t.md", (MARKDOWN_HEADER + "\n" if s else "") + "| a |\n"),
    OutputKind.PNG: lambda p, s: png(p / "c.png", s),
    OutputKind.REPORT: lambda p, s: report_folder(p / "report", s),
}


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("kind", list(OutputKind))
def test_force_replaces_only_files_quantkit_signed(tmp_path: Path, kind: OutputKind) -> None:
    (tmp_path / "ours").mkdir()
    (tmp_path / "theirs").mkdir()
    ours = OWNED[kind](tmp_path / "ours", True)
    theirs = OWNED[kind](tmp_path / "theirs", False)
    assert written_by_quantkit(ours, kind) and not written_by_quantkit(theirs, kind)
    check = OutputGuard.folder if kind is OutputKind.REPORT else OutputGuard.file
    for path in (ours, theirs):
        with pytest.raises(QuantkitError, match=r"already exists \(use --force to replace it\)"):
            check(OutputGuard(force=False), path, kind, "--out")
    assert check(OutputGuard(force=True), ours, kind, "--out") == ours
    with pytest.raises(
        QuantkitError, match=r"--out .* was not written by quantkit; refusing to replace it even"
    ):
        check(OutputGuard(force=True), theirs, kind, "--out")


def test_signature_checks_never_raise_on_foreign_or_broken_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\xff" * 100)
    for kind in OutputKind:
        assert not written_by_quantkit(junk, kind)
        assert not written_by_quantkit(tmp_path / "missing", kind)
    (tmp_path / "list.json").write_text('[{"quantkit": {}}]')
    assert not written_by_quantkit(tmp_path / "list.json", OutputKind.JSON)
    payload = sign_json({"models": []}, "compare")
    assert list(payload) == ["quantkit", "models"] and payload["quantkit"]["command"] == "compare"


# --- the guard -------------------------------------------------------------------------------


def test_outputs_may_not_be_inputs_links_or_each_other(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.png").write_bytes(b"x")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    guard = OutputGuard(force=True)
    guard.add_inputs([model, photos])
    with pytest.raises(QuantkitError, match=r"-o .*m.onnx is an input of this command"):
        guard.file(model, OutputKind.MODEL, "-o")
    with pytest.raises(QuantkitError, match="is an input of this command"):
        guard.file(photos / "a.png", OutputKind.PNG, "-o")  # a folder's files are inputs too
    with pytest.raises(QuantkitError, match=r"--report .* contains inputs of this command"):
        guard.folder(tmp_path, OutputKind.REPORT, "--report")
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(QuantkitError, match="is a symbolic link; quantkit does not write through links"):
        guard.file(link, OutputKind.JSON, "--json")
    guard.file(tmp_path / "out.json", OutputKind.JSON, "--json")
    with pytest.raises(QuantkitError, match=r"--markdown and --json .*out.json both name"):
        guard.file(tmp_path / "sub" / ".." / "out.json", OutputKind.MARKDOWN, "--markdown")


def test_unwritable_missing_and_odd_destinations(tmp_path: Path) -> None:
    guard = OutputGuard(force=True)
    with pytest.raises(QuantkitError, match=r"folder .*missing does not exist"):
        guard.file(tmp_path / "missing" / "x.onnx", OutputKind.MODEL, "-o")
    with pytest.raises(QuantkitError, match="not writable"):
        guard.file(Path("/sys/quantkit-test.onnx"), OutputKind.MODEL, "-o")  # even root cannot create here
    with pytest.raises(QuantkitError, match="is a folder, not a file"):
        guard.file(tmp_path, OutputKind.MODEL, "-o")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(QuantkitError, match="not writable"):
            guard.file(locked / "x.onnx", OutputKind.MODEL, "-o")
    finally:
        locked.chmod(0o700)


def test_per_photo_outputs_in_a_folder(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    assert OutputGuard(force=False).files_in(out, [out / "x.png"], OutputKind.PNG, "-o") is True
    assert not out.exists()  # checking creates nothing
    out.mkdir(parents=True)
    png(out / "x.png", signed=True)
    png(out / "y.png", signed=False)
    with pytest.raises(QuantkitError, match="already exists"):
        OutputGuard(force=False).files_in(out, [out / "x.png"], OutputKind.PNG, "-o")
    assert (
        OutputGuard(force=True).files_in(out, [out / "x.png", out / "z.png"], OutputKind.PNG, "-o") is False
    )
    with pytest.raises(QuantkitError, match=r"y.png exists and was not written by quantkit"):
        OutputGuard(force=True).files_in(out, [out / "x.png", out / "y.png"], OutputKind.PNG, "-o")
    (tmp_path / "file").write_text("x")
    with pytest.raises(QuantkitError, match="exists and is not a folder"):
        OutputGuard(force=True).files_in(tmp_path / "file", [], OutputKind.PNG, "-o")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (
        OutputGuard(force=False).folder(empty, OutputKind.REPORT, "--report") == empty
    )  # nothing to replace


def test_a_signal_inside_held_signals_is_raised_when_the_block_ends() -> None:
    done = []
    with pytest.raises(Terminated), sigterm_raises():
        with held_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("after the signal")  # the block is not cut in two
        done.append("never: raised as the block ends")
    assert done == ["after the signal"]
