from __future__ import annotations

import os
from pathlib import Path

import pytest

from quantkit.errors import QuantkitError
from quantkit.fileio import atomic_output, check_writable, write_json


def test_existing_file_is_never_overwritten_without_force(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("precious")
    with pytest.raises(QuantkitError, match="already exists"):
        write_json(target, {"a": 1}, force=False)
    assert target.read_text() == "precious"
    write_json(target, {"a": 1}, force=True)
    assert '"a": 1' in target.read_text()


def test_failure_leaves_no_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError), atomic_output(target, force=False) as tmp:
        tmp.write_bytes(b"half a model")
        raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_unwritable_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(QuantkitError, match="does not exist"):
        check_writable(tmp_path / "missing" / "x.onnx", force=False)
    with pytest.raises(QuantkitError, match="not writable"):
        check_writable(Path("/sys/quantkit-test.onnx"), force=False)  # even root cannot create files here
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(QuantkitError, match="not writable"):
            check_writable(locked / "x.onnx", force=False)
    finally:
        locked.chmod(0o700)


def test_output_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(QuantkitError, match="is a directory"):
        check_writable(tmp_path, force=True)
