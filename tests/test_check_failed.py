"""A model that fails its own held-out check does not ship silently.

On real IS-Net the check measured 0.52 against a floor of 0.995, the search gave up, and
``quantize`` wrote the file and exited 0: in a pipeline nobody reads the summary. Now it
ends like a missed gate - exit 1, one line naming the measured IoU and the target, the
summary printed first - and leaves nothing at the output path unless ``--keep-failed``
(which writes it, and still exits 1). From Python: :class:`quantkit.CheckFailed`, carrying
the report. Also here: onnxruntime's own ``WARNING:root:...`` lines reach stderr with -v only.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import helper

import quantkit
from quantkit.errors import ExitCode, GateFailed, QuantkitError
from quantkit.model.metadata import read_metadata
from quantkit.passes.recipes import NAIVE

from .cli_helpers import quantkit as run_cli
from .conftest import U2NETP, build_tiny_model, quantize_tiny


def test_a_failed_check_raises_with_the_report_and_writes_nothing(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "m.onnx"
    with pytest.raises(quantkit.CheckFailed) as caught:
        quantize_tiny(tiny_model_path, photos, out, target_iou=1.0)
    failed = caught.value
    assert isinstance(failed, GateFailed) and isinstance(failed, QuantkitError)
    assert failed.exit_code == ExitCode.GATE_FAILED
    report = failed.report
    assert report.check is not None and not report.check.passed and not report.passed
    assert not report.written and report.output_bytes > 0
    assert f"{report.check.final.mean:.4f} < target 1.0000 (--target-iou)" in failed.message
    assert "wrote nothing" in failed.message and "\n" not in failed.message
    assert list(out_dir.iterdir()) == []
    assert report.to_dict()["passed"] is False and report.to_dict()["held_out"]["passed"] is False

    with pytest.raises(quantkit.CheckFailed) as caught:
        quantkit.quantize(
            tiny_model_path,
            output=out,
            options=quantkit.QuantizeOptions(calib_dir=photos, target_iou=1.0),
            keep_failed=True,
        )
    assert caught.value.report.written and f"kept {out} anyway" in caught.value.message
    assert [p.name for p in out_dir.iterdir()] == ["m.onnx"]
    assert read_metadata(out)["quantkit.check"].startswith("FAILED: held-out IoU vs FP32 ")
    # ...and a check that passes is not an error, and says nothing of failing
    passed = quantize_tiny(tiny_model_path, photos, tmp_path / "ok.onnx", target_iou=0.0)
    assert passed.passed and passed.written and "quantkit.check" not in read_metadata(tmp_path / "ok.onnx")


def _quantize_in(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``quantkit quantize u2netp.onnx ...`` run inside ``folder`` with its own empty TMPDIR."""
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1", TERM="dumb", TMPDIR=str(folder.parent / "tmp"))
    return subprocess.run(
        [sys.executable, "-m", "quantkit", "quantize", "u2netp.onnx", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


@pytest.mark.slow
def test_quantize_exits_1_and_leaves_nothing_when_u2netp_misses_its_target(tmp_path: Path) -> None:
    """--target-iou 0.9999 on u2netp: the check cannot reach it (the search is capped at 0 s here
    to keep the test short; it only ranks the layers)."""
    folder = tmp_path / "work"
    folder.mkdir()
    (tmp_path / "tmp").mkdir()
    shutil.copy(U2NETP, folder / "u2netp.onnx")
    failed = _quantize_in(folder, "--target-iou", "0.9999", "--search-seconds", "0")
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in failed.stderr
    lines = [line for line in failed.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: the quantized model failed its check: held-out IoU vs FP32 0.")
    assert "< target 0.9999 (--target-iou) on 5 photos; wrote nothing" in lines[-1]
    assert "held-out check" in failed.stdout and "FAILED" in failed.stdout  # the summary came first
    assert "NOT WRITTEN" in failed.stdout
    assert sorted(os.listdir(folder)) == ["u2netp.onnx"]
    assert os.listdir(tmp_path / "tmp") == []  # no scratch files either

    kept = _quantize_in(
        folder, "--target-iou", "0.9999", "--search-seconds", "0", "--keep-failed", "--json", "r.json"
    )
    assert kept.returncode == 1, kept.stderr
    assert "kept u2netp.int8.onnx anyway (--keep-failed)" in kept.stderr.splitlines()[-1]
    assert sorted(os.listdir(folder)) == ["r.json", "u2netp.int8.onnx", "u2netp.onnx"]
    assert os.listdir(tmp_path / "tmp") == []
    report = json.loads((folder / "r.json").read_text())
    assert (report["passed"], report["written"], report["held_out"]["target_iou"]) == (False, True, 0.9999)
    assert read_metadata(folder / "u2netp.int8.onnx")["quantkit.check"].startswith("FAILED")


def test_onnxruntimes_root_logger_warnings_show_with_verbose_only(photos: Path, tmp_path: Path) -> None:
    """A convolution whose bias is computed (not an initializer) makes onnxruntime's quantizer
    call ``logging.warning("Expected bias ... to be an initializer")`` on the root logger."""
    model = build_tiny_model()
    conv = next(n for n in model.graph.node if n.name == "Conv_3")  # one output channel
    model.graph.node.insert(
        0, helper.make_node("ReduceMean", ["input.1"], ["bias3"], name="Bias_3", axes=[1, 2, 3], keepdims=0)
    )
    conv.input[2] = "bias3"
    path = tmp_path / "computed_bias.onnx"
    onnx.save(model, str(path))
    common = ("--recipe", "naive", "--calib", photos, "--no-cache", "--family", "u2net")
    quiet = run_cli("quantize", path, "-o", tmp_path / "a.onnx", *common)
    loud = run_cli("-v", "quantize", path, "-o", tmp_path / "b.onnx", *common)
    assert quiet.code == loud.code == 0, (quiet.err, loud.err)
    assert "WARNING:root:Expected bias 'bias3' to be an initializer" in loud.err
    assert "WARNING" not in quiet.err and "bias3" not in quiet.err + quiet.out
    # From Python, the caller's logging is left alone: its own root handler gets the record.
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Collect()
    logging.getLogger().addHandler(handler)
    try:
        quantize_tiny(path, photos, tmp_path / "c.onnx", NAIVE, family="u2net")
    finally:
        logging.getLogger().removeHandler(handler)
    assert "Expected bias 'bias3' to be an initializer" in seen
