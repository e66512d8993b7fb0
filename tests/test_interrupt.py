"""Ctrl-C during a real quantization: exit 130, no model, no temporary files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import CALIB, U2NETP

pytestmark = pytest.mark.slow


def test_sigint_during_quantize_leaves_nothing(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, QUANTKIT_CACHE_DIR=str(tmp_path / "cache"), TMPDIR=str(scratch))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "quantkit",
            "quantize",
            str(U2NETP),
            "--calib",
            str(CALIB),
            "-o",
            str(out_dir / "m.onnx"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(8)  # well into preparation and calibration
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert list(out_dir.iterdir()) == []
    # The working directory was cleaned up. (onnxruntime itself drops a '.ses' session-id file in TMPDIR.)
    assert [p.name for p in scratch.iterdir() if p.name != ".ses"] == []
