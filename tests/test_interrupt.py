"""Ctrl-C or SIGTERM during a real quantization: exit 130 / 143, no model, no temporary files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .cli_helpers import as_foreground
from .conftest import U2NETP

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_quantize_leaves_nothing(tmp_path: Path, signum: int, code: int) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, QUANTKIT_CACHE_DIR=str(tmp_path / "cache"), TMPDIR=str(scratch))
    proc = subprocess.Popen(
        [sys.executable, "-m", "quantkit", "quantize", str(U2NETP), "-o", str(out_dir / "m.onnx")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=as_foreground,
    )
    time.sleep(8)  # well into preparation and the statistics pass over the bundled photos
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err and "error:" not in err
    assert list(out_dir.iterdir()) == []
    cache = tmp_path / "cache"
    assert not [p.name for p in cache.iterdir() if p.name.startswith(".")]  # no half-written cache entry
    # The scratch folder went with it. (onnxruntime itself drops a '.ses' session-id file in TMPDIR.)
    assert [p.name for p in scratch.iterdir() if p.name != ".ses"] == []
