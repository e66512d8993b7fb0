"""The safety rules, case by case: the reports of issue 9, and what an adversarial new user tries.

The rules, on every command: nothing quantkit did not create is deleted or overwritten
(``--force`` included); no output is ever written over an input; bad input is one
``error:`` line and exit 2, never a traceback or a hang; no partial or temporary file
survives an error, Ctrl-C (130), SIGTERM (143) or a full disk; memory does not grow with
the number of photos.

Most cases run the real CLI in this process (:func:`cli`, fast); the ones about signals,
environment variables read at start-up and what onnxruntime writes to the file
descriptors themselves run it in a subprocess (:func:`tests.cli_helpers.quantkit`,
:func:`spawn`). The models are the tiny ones of ``conftest`` and ``family_models``, named
like rembg's files so no family is guessed; only the ``slow`` test quantizes the real u2netp.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from quantkit.errors import QuantkitError, Terminated
from quantkit.files.ownership import REPORT_MARKER, sign_json
from quantkit.model.family import get_family
from quantkit.model.images import open_image
from quantkit.model.preprocess import postprocess, preprocess
from quantkit.model.spec import read_spec
from quantkit.passes.recipes import get_recipe
from quantkit.ptq.options import QuantFormat, QuantizeOptions
from quantkit.removal.compose import png_info

from .cli_helpers import Result, as_foreground, assert_one_line_error, quantkit
from .conftest import U2NETP, build_tiny_model, dynamic, write_photos
from .family_models import u2net_like

# --- helpers -----------------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: object) -> Result:
    """The real ``quantkit`` entry point, in this process: argv in, exit code and output out."""
    from quantkit.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as ended:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    code = ended.value.code
    return Result(code if isinstance(code, int) else 0, captured.out, captured.err)


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.err and "Traceback" not in result.out, result.err


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    return {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", **(extra or {})}


def spawn(*args: object, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``quantkit`` in a subprocess, left running (to be interrupted)."""
    return subprocess.Popen(
        [sys.executable, "-m", "quantkit", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(env),
        preexec_fn=as_foreground,
    )


def sub(*args: object, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
    """``quantkit`` in a subprocess, as :func:`tests.cli_helpers.quantkit`, with extra environment."""
    if env is None:
        return quantkit(*args, timeout=timeout)
    proc = subprocess.run(
        [sys.executable, "-m", "quantkit", *map(str, args)],
        capture_output=True,
        text=True,
        env=_env(env),
        timeout=timeout,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def signal_when(
    proc: subprocess.Popen[str], ready: Callable[[], bool], sig: int, timeout: float = 120
) -> Result:
    """Send ``sig`` as soon as ``ready()`` holds (the run is mid-way), then collect the result."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, ("finished before it could be interrupted", proc.communicate())
        assert time.monotonic() < deadline, "never got to the interesting point"
        time.sleep(0.005)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=timeout)
    return Result(proc.returncode, out, err)


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run where no pyproject.toml holds a gate (the repository's own would fail the tiny model)."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny FP32 model, under a rembg file name (so its family is known, not guessed)."""
    return save(build_tiny_model(), tmp_path_factory.mktemp("fp32") / "u2netp.onnx")


@pytest.fixture(scope="module")
def int8(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model quantized with plain quantize_static (QDQ)."""
    import quantkit

    photos = tmp_path_factory.mktemp("int8_photos")
    write_photos(photos, 6)
    out = tmp_path_factory.mktemp("int8") / "u2netp.int8.onnx"
    quantkit.quantize(
        model, output=out, options=QuantizeOptions(calib_dir=photos, recipe=get_recipe("naive"))
    )
    return out


@pytest.fixture(scope="module")
def slow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A U²-Net stand-in at rembg's 320 px: a few seconds for a quantization, time to interrupt it."""
    return save(u2net_like(), tmp_path_factory.mktemp("slow") / "u2net.onnx")


@pytest.fixture(scope="module")
def big_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("big_photos")
    write_photos(folder, 24, size=(320, 320))
    return folder


def mask_free_model(declared: bool) -> onnx.ModelProto:
    """The tiny model with a classifier head: output [1, 8], not a mask (shape declared or not)."""
    model = build_tiny_model()
    graph = model.graph
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "flat_shape"),
            numpy_helper.from_array(np.ones((1, 8), dtype=np.float32), "head"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("GlobalAveragePool", ["mask"], ["pooled"]),
            helper.make_node("Reshape", ["pooled", "flat_shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "head"], ["classes"]),
        ]
    )
    del graph.output[:]
    shape = [1, 8] if declared else None
    graph.output.append(helper.make_tensor_value_info("classes", TensorProto.FLOAT, shape))
    return model


@contextlib.contextmanager
def tmpfs(folder: Path, size: str, *, readonly: bool = False) -> Iterator[Path]:
    """A real tiny filesystem at ``folder``; the test is skipped where mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs needs root; test_full_disk_simulated covers the logic")
    options = f"size={size}" + (",ro" if readonly else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); see test_full_disk_simulated")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


def fill(folder: Path) -> None:
    """Write until the filesystem under ``folder`` is full."""
    with (folder / "filler").open("wb", buffering=0) as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 4096)
            handle.flush()


# --- issue 9: outputs that are inputs, or not quantkit's ------------------------------------------


def test_report_into_the_photo_folder_is_refused_and_deletes_nothing(
    capsys: pytest.CaptureFixture[str], model: Path, int8: Path, photos: Path
) -> None:
    before = tree(photos)
    result = cli(capsys, "compare", model, int8, "--images", photos, "--report", photos, "--force")
    assert_one_line_error(result, 2, "contains inputs of this command")
    assert tree(photos) == before


def test_report_at_the_current_folder_is_refused_even_when_it_is_a_quantkit_report(
    capsys: pytest.CaptureFixture[str],
    model: Path,
    int8: Path,
    photos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    report = tmp_path / "report"
    assert cli(capsys, "compare", model, int8, "--images", photos, "--report", report).code == 0
    before = tree(report)
    monkeypatch.chdir(report)  # the worst case: '.' really is a report quantkit wrote
    for target in (".", "", "..", "/"):
        result = cli(capsys, "compare", model, int8, "--images", photos, "--report", target, "--force")
        assert_one_line_error(result, 2, "is the current folder or one of its parents")
    assert tree(report) == before


def test_a_report_folder_quantkit_did_not_write_is_refused_even_with_force(
    capsys: pytest.CaptureFixture[str], model: Path, int8: Path, photos: Path, tmp_path: Path
) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("three years of work")
    result = cli(capsys, "compare", model, int8, "--images", photos, "--report", theirs, "--force")
    assert_one_line_error(result, 2, "was not written by quantkit")
    assert tree(theirs) == {"thesis.tex": b"three years of work"}


def test_a_report_folder_quantkit_wrote_is_replaced_with_force(
    capsys: pytest.CaptureFixture[str], model: Path, int8: Path, photos: Path, tmp_path: Path
) -> None:
    report = tmp_path / "report"
    assert cli(capsys, "compare", model, int8, "--images", photos, "--report", report).code == 0
    (report / "index.html").write_text("stale")
    again = cli(capsys, "compare", model, int8, "--images", photos, "--report", report)
    assert_one_line_error(again, 2, "already exists (use --force")
    replaced = cli(capsys, "compare", model, int8, "--images", photos, "--report", report, "--force")
    assert replaced.code == 0, replaced.err
    assert (report / REPORT_MARKER).is_file() and (report / "index.html").read_text() != "stale"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left


def test_a_quantkit_report_holding_a_users_file_is_not_deleted(
    capsys: pytest.CaptureFixture[str], model: Path, int8: Path, photos: Path, tmp_path: Path
) -> None:
    """A report is replaced whole: notes saved into it later must not go with it."""
    report = tmp_path / "report"
    assert cli(capsys, "compare", model, int8, "--images", photos, "--report", report).code == 0
    (report / "my-notes.txt").write_text("why photo 3 fails")
    result = cli(capsys, "compare", model, int8, "--images", photos, "--report", report, "--force")
    assert_one_line_error(result, 2, "was not written by quantkit")
    assert (report / "my-notes.txt").read_text() == "why photo 3 fails"


def test_no_output_option_may_name_an_input(
    capsys: pytest.CaptureFixture[str], model: Path, int8: Path, photos: Path, tmp_path: Path
) -> None:
    protected = {p: p.read_bytes() for p in (model, int8, *photos.iterdir())}
    photo = sorted(photos.glob("*.png"))[0]
    config = tmp_path / "gate.toml"
    config.write_text("[tool.quantkit.gate]\nmin-iou = 0.5\n")
    cases = [
        ("compare", model, int8, "--images", photos, "--json", model, "--force"),
        ("compare", model, int8, "--images", photos, "--json", photo, "--force"),
        ("compare", model, int8, "--images", photos, "--json", config, "--config", config, "--force"),
        ("bench", model, "--markdown", model, "--force"),
        ("bench", model, int8, "--json", int8, "--force"),
        ("quantize", model, "--calib", photos, "-o", model, "--force"),
        ("quantize", model, "--calib", photos, "-o", photo, "--force"),
        ("quantize", model, "--calib", photos, "--json", model, "--force"),
    ]
    for args in cases:
        assert_one_line_error(cli(capsys, *args), 2, "is an input of this command")
    assert {p: p.read_bytes() for p in protected} == protected


def test_two_outputs_may_not_name_the_same_file(
    capsys: pytest.CaptureFixture[str], model: Path, photos: Path, tmp_path: Path
) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    same = real / "x.onnx"
    for json_path in (same, tmp_path / "alias" / "x.onnx", real / "sub" / ".." / "x.onnx"):
        result = cli(capsys, "quantize", model, "--calib", photos, "-o", same, "--json", json_path)
        assert_one_line_error(result, 2, "both name")
    result = cli(capsys, "bench", model, "--json", real / "t", "--markdown", real / "t")
    assert_one_line_error(result, 2, "both name")
    assert list(real.iterdir()) == []


def test_remove_into_the_photo_folder_never_replaces_a_photo(
    capsys: pytest.CaptureFixture[str], model: Path, photos: Path
) -> None:
    before = tree(photos)
    result = cli(capsys, "remove", model, photos, "-o", photos, "--force")
    assert_one_line_error(result, 2, "is an input of this command")
    assert tree(photos) == before
    # Even a PNG quantkit wrote is an original once it is given as input.
    cut = photos / "photo_00.png"
    Image.open(cut).save(cut, pnginfo=png_info())
    before = tree(photos)
    result = cli(capsys, "remove", model, photos, "-o", photos, "--force")
    assert_one_line_error(result, 2, "is an input of this command")
    assert tree(photos) == before


def test_an_input_reached_by_another_path_is_still_an_input(
    capsys: pytest.CaptureFixture[str], model: Path, photos: Path, tmp_path: Path
) -> None:
    """A hard link (and, with root, a bind mount) of an input is the input: never replaced."""
    cut = photos / "cut.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(cut, pnginfo=png_info())  # quantkit's own PNG
    out = tmp_path / "out"
    out.mkdir()
    os.link(cut, out / "cut.png")
    before = cut.read_bytes()
    result = cli(capsys, "remove", model, cut, "-o", out, "--force")
    assert_one_line_error(result, 2, "is an input of this command")
    assert cut.read_bytes() == before and os.path.samefile(cut, out / "cut.png")
    if os.geteuid() != 0:
        return
    view = tmp_path / "view"
    view.mkdir()
    if subprocess.run(["mount", "--bind", str(photos), str(view)], capture_output=True).returncode != 0:
        return
    try:
        result = cli(capsys, "remove", model, cut, "--mask-only", "-o", view, "--force")
        assert result.code == 0  # cut.mask.png is new: writing beside the input is fine
        result = cli(capsys, "remove", model, photos / "cut.mask.png", "-o", view, "--mask-only", "--force")
        assert result.code == 0  # cut.mask.mask.png
        before = (photos / "cut.mask.png").read_bytes()
        result = cli(capsys, "remove", model, photos, "--mask-only", "-o", view, "--force")
        assert_one_line_error(result, 2, "is an input of this command")
        assert (photos / "cut.mask.png").read_bytes() == before
    finally:
        subprocess.run(["umount", str(view)], check=False)


def test_report_at_a_symbolic_link_is_refused(
    capsys: pytest.CaptureFixture[str], model: Path, int8: Path, photos: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "link").symlink_to(elsewhere)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for link in ("link", "dangling"):
        result = cli(
            capsys, "compare", model, int8, "--images", photos, "--report", tmp_path / link, "--force"
        )
        assert_one_line_error(result, 2, "is a symbolic link")
    assert list(elsewhere.iterdir()) == [] and not (tmp_path / "nowhere").exists()
    result = cli(capsys, "remove", model, photos, "-o", tmp_path / "link")
    assert_one_line_error(result, 2, "is a symbolic link")


def test_a_users_json_that_mentions_quantkit_is_not_replaced(
    capsys: pytest.CaptureFixture[str], model: Path, tmp_path: Path
) -> None:
    """Only quantkit's own signature (version and command) marks a JSON file as replaceable."""
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"quantkit": {"min-iou": 0.98}}))
    result = cli(capsys, "bench", model, "--runs", "1", "--warmup", "0", "--json", settings, "--force")
    assert_one_line_error(result, 2, "was not written by quantkit")
    assert json.loads(settings.read_text()) == {"quantkit": {"min-iou": 0.98}}
    settings.write_text(json.dumps(sign_json({}, "bench")))
    assert (
        cli(capsys, "bench", model, "--runs", "1", "--warmup", "0", "--json", settings, "--force").code == 0
    )


# --- issue 9: bad input is one line, quickly ------------------------------------------------------


def test_quantize_refuses_an_already_quantized_model_quickly(
    capsys: pytest.CaptureFixture[str], model: Path, int8: Path, photos: Path, tmp_path: Path
) -> None:
    import quantkit

    qoperator = tmp_path / "u2netp.qop.onnx"
    quantkit.quantize(
        model,
        output=qoperator,
        options=QuantizeOptions(calib_dir=photos, recipe=get_recipe("naive"), fmt=QuantFormat.QOPERATOR),
    )
    integer = build_tiny_model()  # int8 weights behind a Cast, no quantization op at all
    weight = next(i for i in integer.graph.initializer if i.name == "Conv_0.w")
    values = numpy_helper.to_array(weight)
    weight.CopyFrom(numpy_helper.from_array(np.round(values * 100).astype(np.int8), "Conv_0.w8"))
    integer.graph.node.insert(0, helper.make_node("Cast", ["Conv_0.w8"], ["Conv_0.w"], to=TensorProto.FLOAT))
    integer_path = save(integer, tmp_path / "u2netp.w8.onnx")
    for path, why in (
        (int8, "QuantizeLinear"),
        (qoperator, "QLinear"),
        (integer_path, "integer weights"),
    ):
        started = time.monotonic()
        result = cli(capsys, "quantize", path, "--calib", photos, "-o", tmp_path / "again.onnx")
        assert_one_line_error(result, 2, "already quantized")
        assert why in result.err and time.monotonic() - started < 15
    assert not (tmp_path / "again.onnx").exists()


def test_remove_skips_a_fifo_instead_of_blocking(model: Path, photos: Path, tmp_path: Path) -> None:
    fifo = photos / "pipe.png"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    result = quantkit("remove", model, fifo, photos, "-o", out, timeout=60)  # a hang fails here
    assert result.code == 0, result.err
    no_traceback(result)
    assert "pipe.png: not a regular file" in result.err
    assert not (out / "pipe.png").exists() and len(list(out.iterdir())) == 8
    alone = quantkit("remove", model, fifo, "-o", tmp_path / "out2", timeout=60)
    assert_one_line_error(alone, 2, "not a regular file")


def test_a_model_whose_output_is_not_a_mask(
    capsys: pytest.CaptureFixture[str], photos: Path, tmp_path: Path
) -> None:
    for declared in (True, False):  # undeclared: shape inference (or the output itself) tells
        path = save(mask_free_model(declared), tmp_path / f"declared_{declared}" / "u2netp.onnx")
        for args in (
            ("quantize", path, "--calib", photos, "-o", tmp_path / "q.onnx"),
            ("remove", path, photos, "-o", tmp_path / "cut"),
            ("compare", path, path, "--images", photos),
        ):
            assert_one_line_error(cli(capsys, *args), 2, "rembg reads a mask [1, 1, H, W]")
    assert not (tmp_path / "q.onnx").exists() and not (tmp_path / "cut").exists()
    with pytest.raises(QuantkitError, match=r"mask output has shape \[1, 8\]"):  # the last line of defence
        postprocess(np.zeros((1, 8), dtype=np.float32), (4, 4), get_family("u2netp").activation)


def test_a_model_producing_nan_is_refused_by_quantize(
    capsys: pytest.CaptureFixture[str], photos: Path, tmp_path: Path
) -> None:
    model = build_tiny_model()
    model.graph.initializer.append(numpy_helper.from_array(np.array(np.nan, dtype=np.float32), "nan"))
    first = next(n for n in model.graph.node if n.name == "Conv_0")
    first.output[0] = "c0_raw"
    model.graph.node.insert(1, helper.make_node("Mul", ["c0_raw", "nan"], ["c0"], name="Poison"))
    path = save(model, tmp_path / "u2netp.onnx")
    result = cli(capsys, "quantize", path, "--calib", photos, "-o", tmp_path / "q.onnx", "--no-cache")
    assert_one_line_error(result, 2, "NaN")
    assert not (tmp_path / "q.onnx").exists()


def test_a_symlink_loop_as_model_is_one_line(
    capsys: pytest.CaptureFixture[str], photos: Path, tmp_path: Path
) -> None:
    (tmp_path / "a.onnx").symlink_to(tmp_path / "b.onnx")
    (tmp_path / "b.onnx").symlink_to(tmp_path / "a.onnx")
    loop = tmp_path / "a.onnx"
    for args in (
        ("quantize", loop, "--calib", photos),
        ("remove", loop, photos, "-o", tmp_path / "out"),
        ("compare", loop, loop, "--images", photos),
        ("bench", loop),
    ):
        assert_one_line_error(cli(capsys, *args), 2, "too many levels of symbolic links")


def test_a_model_too_new_for_onnxruntime_is_one_line_before_any_runtime_log(
    photos: Path, tmp_path: Path
) -> None:
    too_new_ir = build_tiny_model()
    too_new_ir.ir_version = 99
    too_new_opset = build_tiny_model()
    too_new_opset.opset_import[0].version = 99
    ir = save(too_new_ir, tmp_path / "ir" / "u2netp.onnx")
    opset = save(too_new_opset, tmp_path / "opset" / "u2netp.onnx")
    for args, why in (
        (("quantize", ir, "--calib", photos, "-o", tmp_path / "q.onnx"), "max supported IR version"),
        (("remove", ir, photos, "-o", tmp_path / "out"), "IR version 99"),
        (("bench", opset), "opset 99"),
    ):
        result = quantkit(*args)  # a subprocess: onnxruntime writes to the descriptor itself
        assert_one_line_error(result, 2, "cannot load")
        assert why in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ir", "opset", "photos"]


def test_gate_config_of_the_wrong_shape_or_encoding_is_one_line(
    capsys: pytest.CaptureFixture[str], model: Path, int8: Path, photos: Path, tmp_path: Path
) -> None:
    cases = {
        b"tool = 5\n": "is not a table",
        b"[tool]\nquantkit = 5\n": "is not a table",
        b"[tool.quantkit]\ngate = [1]\n": "must be a table",
        b"[tool.quantkit.gate]\nmin-iou = 0.9 # caf\xe9\n": "not valid UTF-8",
        b"\xff\xfe[\x00t\x00": "not valid UTF-8",
        b"[tool.quantkit.gate]\nmin-iou = true\n": "must be a number",
        b"[tool.quantkit.gate]\nmin_iou = 0.9\n": "unknown [tool.quantkit.gate] keys",
    }
    for k, (content, fragment) in enumerate(cases.items()):
        config = tmp_path / f"pyproject{k}.toml"
        config.write_bytes(content)
        result = cli(capsys, "compare", model, int8, "--images", photos, "--config", config)
        assert_one_line_error(result, 2, fragment)
    bom = tmp_path / "bom.toml"  # what Notepad saves: a BOM is not an error
    bom.write_bytes(b"\xef\xbb\xbf[tool.quantkit.gate]\nmin-iou = 0.5\n")
    result = cli(capsys, "compare", model, int8, "--images", photos, "--config", bom, "--no-noise-floor")
    assert result.code == 0 and "gate passed (min-iou=0.5)" in result.out, result.err


def test_gate_thresholds_outside_0_1_or_nan_are_one_line(
    capsys: pytest.CaptureFixture[str], model: Path, int8: Path, photos: Path, tmp_path: Path
) -> None:
    for option, value in (
        ("--min-iou", "1.5"),
        ("--min-iou", "nan"),
        ("--min-iou-p05", "inf"),
        ("--max-mae", "-0.1"),
        ("--within-noise", "2"),
    ):
        result = cli(capsys, "compare", model, int8, "--images", photos, option, value, "--no-config")
        assert_one_line_error(result, 2, "must be a number in [0, 1]")
    for value in ("2.0", "nan", "-inf"):
        config = tmp_path / "pyproject.toml"
        config.write_text(f"[tool.quantkit.gate]\nmax-mae = {value}\n")
        result = cli(capsys, "compare", model, int8, "--images", photos, "--config", config)
        assert_one_line_error(result, 2, "must be a number in [0, 1]")


def test_a_float_tiff_of_nans_prints_no_numpy_warning(model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "tiffs"
    folder.mkdir()
    for name, value in (("nan", np.nan), ("inf", np.inf), ("ninf", -np.inf), ("zero", 0.0)):
        Image.fromarray(np.full((30, 40), value, dtype=np.float32), mode="F").save(folder / f"{name}.tif")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any RuntimeWarning fails here
        for path in folder.iterdir():
            preprocess(open_image(path), read_spec(model))
    result = quantkit("remove", model, folder, "-o", tmp_path / "out")
    assert result.code == 0 and "Warning" not in result.err, result.err
    assert len(list((tmp_path / "out").iterdir())) == 4


# --- issue 9: interruptions, scratch space and temporary files ------------------------------------


@pytest.mark.parametrize(
    ("sig", "code", "when"),
    [
        (signal.SIGTERM, 143, "quantkit-*"),  # as soon as the scratch folder exists
        (signal.SIGINT, 130, "quantkit-*/float.onnx"),  # mid-way; typer once returned, not raised, its 130
    ],
)
def test_an_interrupted_quantize_exits_with_the_signal_and_leaves_no_temporary_file(
    slow_model: Path, big_photos: Path, tmp_path: Path, sig: signal.Signals, code: int, when: str
) -> None:
    """--no-cache keeps the ranges in the scratch folder: no quantkit-* or tmp*.json left in $TMPDIR."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    proc = spawn(
        "quantize", slow_model, "--calib", big_photos, "-o", out / "q.onnx", "--no-cache",
        env={"TMPDIR": str(scratch)},
    )  # fmt: skip
    result = signal_when(proc, lambda: any(scratch.glob(when)), sig)
    assert result.code == code, (result.code, result.err)
    no_traceback(result)
    assert list(scratch.iterdir()) == [] and list(out.iterdir()) == []


def test_no_cache_error_leaves_no_temporary_file(
    capsys: pytest.CaptureFixture[str], photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", None)
    model = build_tiny_model()
    model.graph.initializer.append(numpy_helper.from_array(np.array(np.inf, dtype=np.float32), "inf"))
    nodes = model.graph.node
    index = next(k for k, n in enumerate(nodes) if n.name == "Relu_2")
    nodes[index].output[0] = "r2_raw"
    nodes.insert(index + 1, helper.make_node("Mul", ["r2_raw", "inf"], ["r2"], name="Blowup"))
    path = save(model, tmp_path / "m" / "u2netp.onnx")
    result = cli(capsys, "quantize", path, "--calib", photos, "-o", tmp_path / "q.onnx", "--no-cache")
    assert_one_line_error(result, 2, "NaN or infinite")
    assert list(scratch.iterdir()) == []


def _finished(out: Path) -> list[Path]:
    """PNGs that are in place (not the hidden temporary file of one being written)."""
    with contextlib.suppress(OSError):
        return [p for p in out.iterdir() if p.suffix == ".png" and not p.name.startswith(".")]
    return []


def test_sigterm_during_remove_leaves_no_partial_png(
    slow_model: Path, big_photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = spawn("remove", slow_model, big_photos, "-o", out)
    result = signal_when(proc, lambda: len(_finished(out)) >= 1, signal.SIGTERM)
    assert result.code == 143, result.err
    no_traceback(result)
    written = list(out.iterdir())
    assert written and all(not p.name.startswith(".") for p in written)
    for path in written:
        with Image.open(path) as image:
            image.load()  # complete, or it would not be there


def test_sigterm_that_a_library_wraps_still_exits_143(
    capsys: pytest.CaptureFixture[str], model: Path, photos: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime turns a SIGTERM during its import into ImportError: that was exit 1 and a traceback."""

    def interrupted_import(*args: object, **kwargs: object) -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.05)  # let the handler run
        except Terminated as exc:
            raise ImportError("initialization failed") from exc

    monkeypatch.setattr("quantkit.cli.quantize.run_quantize", interrupted_import)
    result = cli(capsys, "quantize", model, "--calib", photos, "--no-cache")
    assert result.code == 143 and result.err.strip() == "", result.err


def test_a_failed_remove_leaves_no_folder_it_created(
    capsys: pytest.CaptureFixture[str], model: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"not a png")
    result = cli(capsys, "remove", model, junk, "-o", tmp_path / "a" / "b" / "c")
    assert result.code == 2 and "no photo could be processed" in result.err
    assert not (tmp_path / "a").exists()  # was: a/ and a/b/ left behind
    broken = tmp_path / "u2netp_broken.onnx"
    broken.write_bytes(b"\x08\x07junk")
    assert_one_line_error(cli(capsys, "remove", broken, junk, "-o", tmp_path / "x" / "y"), 2, "ONNX")
    assert not (tmp_path / "x").exists()


# --- issue 9: full disks -----------------------------------------------------------------------


def test_full_disk_on_a_real_tiny_filesystem(
    capsys: pytest.CaptureFixture[str], model: Path, photos: Path, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "full", "200k") as full:
        fill(full)
        for args in (
            ("quantize", model, "--calib", photos, "-o", full / "q.onnx", "--recipe", "naive"),
            ("bench", model, "--runs", "1", "--warmup", "0", "--json", full / "r.json"),
            ("remove", model, photos, "-o", full / "cutouts"),
        ):
            assert_one_line_error(cli(capsys, *args), 2, "no space left on device")
        assert [p.name for p in full.iterdir()] == ["filler"]  # no partial file, no empty folder
    with tmpfs(tmp_path / "tiny_tmp", "60k") as tiny_tmp:
        result = sub(
            "quantize", u2netp_sized(tmp_path), "--calib", photos, "-o", tmp_path / "q.onnx", "--no-cache",
            env={"TMPDIR": str(tiny_tmp)},
        )  # fmt: skip
        assert_one_line_error(result, 2, "no space left on device for temporary files")
        assert list(tiny_tmp.iterdir()) == [] and not (tmp_path / "q.onnx").exists()


def u2netp_sized(tmp_path: Path) -> Path:
    """The 320 px stand-in under u2net's name: scratch copies larger than a 60 kB $TMPDIR."""
    return save(u2net_like(), tmp_path / "standin" / "u2net.onnx")


def test_full_disk_simulated(
    capsys: pytest.CaptureFixture[str],
    model: Path,
    photos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ENOSPC at the last step of every atomic write, and while staging scratch copies."""

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr("quantkit.files.atomic.os.chmod", full)
        for args in (
            ("quantize", model, "--calib", photos, "-o", tmp_path / "q.onnx", "--recipe", "naive"),
            ("bench", model, "--runs", "1", "--warmup", "0", "--json", tmp_path / "r.json"),
            ("remove", model, photos, "-o", tmp_path / "cutouts"),
        ):
            assert_one_line_error(cli(capsys, *args), 2, "no space left on device while writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]
    with monkeypatch.context() as patch:
        patch.setattr("onnx.save", full)
        result = cli(capsys, "quantize", model, "--calib", photos, "-o", tmp_path / "q.onnx")
        assert_one_line_error(result, 2, "no space left on device for temporary files")


# --- issue 9: the cache can never break a run ------------------------------------------------------


def test_an_unusable_cache_folder_is_a_warning(
    capsys: pytest.CaptureFixture[str],
    model: Path,
    photos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a_file = tmp_path / "cache-file"
    a_file.write_text("x")
    for cache in (a_file, Path("/proc/quantkit-cache"), Path("/proc/self"), a_file / "sub"):
        monkeypatch.setenv("QUANTKIT_CACHE_DIR", str(cache))
        result = cli(capsys, "quantize", model, "--calib", photos, "-o", tmp_path / "q.onnx", "--force")
        assert result.code == 0, result.err
        no_traceback(result)
        assert f"warning: cache folder {cache} is not usable" in result.err
    monkeypatch.delenv("QUANTKIT_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "/etc/passwd")
    result = cli(capsys, "quantize", model, "--calib", photos, "-o", tmp_path / "q.onnx", "--force")
    assert result.code == 0 and "is not usable" in result.err, result.err
    no_traceback(result)


def test_a_read_only_cache_folder_is_a_warning(
    capsys: pytest.CaptureFixture[str],
    model: Path,
    photos: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with tmpfs(tmp_path / "ro", "100k", readonly=True) as readonly:
        monkeypatch.setenv("QUANTKIT_CACHE_DIR", str(readonly))
        result = cli(capsys, "quantize", model, "--calib", photos, "-o", tmp_path / "q.onnx")
        assert result.code == 0 and "Read-only file system" in result.err, result.err


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.iterdir())


def _foreign(entry: bytes) -> bytes:
    """A valid .npz or JSON of the wrong shape, as another tool (or an edit) leaves it."""
    payload = entry.split(b"\n", 2)[2] if entry.startswith(b"quantkit-cache") else entry
    if payload.startswith(b"PK"):
        with np.load(io.BytesIO(payload)) as archive:
            arrays = {k: archive[k] if k == "index" else np.zeros((3, 5)) for k in archive.files}
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()
    data = json.loads(payload)
    if isinstance(data, list):  # the photos a pass skipped: pairs become a bare number
        return json.dumps([[1]] * len(data) or {"skipped": 0}).encode()
    for table in (data["chosen"], data["exact"]):  # the ranges: both tables, of the wrong shape
        for value in table["data"].values():
            value["lowest"]["data"] = [[1.0, 2.0], [3.0, 4.0]]
    return json.dumps(data).encode()


def test_damaged_cache_entries_are_misses(
    model: Path, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import quantkit

    cache = tmp_path / "cache"
    monkeypatch.setenv("QUANTKIT_CACHE_DIR", str(cache))
    options = QuantizeOptions(calib_dir=photos)

    def run() -> int:
        report = quantkit.quantize(model, output=tmp_path / "q.onnx", options=options, force=True)
        return report.calibration.passes

    assert run() == 3 and run() == 0  # measured, then from the cache
    entries = _entries(cache)
    assert len(entries) == 4  # three passes, and the list of photos they skipped
    for entry in entries:
        entry.write_bytes(_foreign(entry.read_bytes()))
    assert run() == 3  # wrong shape: a miss (was a traceback from equalize)
    assert run() == 0  # ...and the entries were stored again
    for entry in entries:
        entry.unlink()
        entry.mkdir()
    assert run() == 3  # a folder where an entry should be: a miss, every time
    assert _entries(cache) == entries and all(e.is_dir() for e in entries)  # nothing else left


def test_a_cache_entry_that_is_a_fifo_does_not_hang(model: Path, photos: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ("quantize", model, "--calib", photos, "-o", tmp_path / "q.onnx", "--force")
    env = {"QUANTKIT_CACHE_DIR": str(cache)}
    assert sub(*args, env=env).code == 0
    for entry in _entries(cache):
        entry.unlink()
        os.mkfifo(entry)
    result = sub(*args, env=env, timeout=60)  # a blocking read fails the test here
    assert result.code == 0, result.err
    assert all(e.is_file() for e in _entries(cache))  # replaced by real entries


# --- issue 9: memory and held-out photos --------------------------------------------------------


def test_calibration_and_held_out_photos_stream(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--calib-limit 2000 over 24 photos: never more than a couple decoded at once; --eval-limit holds."""
    import quantkit
    import quantkit.model.images as images

    photos = tmp_path / "photos"
    write_photos(photos, 24)
    alive: list[weakref.ref[Image.Image]] = []
    peak = 0
    real_open = images.open_image

    def counting_open(path: Path) -> Image.Image:
        nonlocal peak
        image = real_open(path)
        alive[:] = [ref for ref in alive if ref() is not None]
        alive.append(weakref.ref(image))
        peak = max(peak, len(alive))
        return image

    monkeypatch.setattr(images, "open_image", counting_open)
    options = QuantizeOptions(calib_dir=photos, calib_limit=2000, eval_limit=3, use_cache=False)
    report = quantkit.quantize(model, output=tmp_path / "q.onnx", options=options)
    assert report.check is not None and len(report.check.photos) == 3
    assert len(report.calibration.used) == 21
    assert peak <= 3, peak


# --- issue 9: dynamic shapes --------------------------------------------------------------------


def _runs_at(path: Path, sizes: list[tuple[int, int, int]]) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for batch, height, width in sizes:
        x = np.random.default_rng(0).random((batch, 3, height, width), dtype=np.float32)
        (mask,) = session.run(None, {name: x})[:1]
        assert mask.shape == (batch, 1, height, width)


def test_a_model_with_dynamic_batch_and_size_quantizes_and_still_runs_at_other_sizes(
    capsys: pytest.CaptureFixture[str], photos: Path, tmp_path: Path
) -> None:
    path = save(dynamic(build_tiny_model()), tmp_path / "u2netp.onnx")
    result = cli(capsys, "quantize", path, "--calib", photos, "-o", tmp_path / "q.onnx")
    assert result.code == 0, result.err
    out = onnx.load(str(tmp_path / "q.onnx"))
    assert [d.dim_param for d in out.graph.input[0].type.tensor_type.shape.dim] == [
        "batch",
        "",
        "height",
        "width",
    ]
    _runs_at(tmp_path / "q.onnx", [(1, 32, 32), (1, 64, 48), (2, 16, 16)])


@pytest.mark.slow
def test_real_u2netp_with_dynamic_batch_and_size(tmp_path: Path) -> None:
    """Prepared at 320 its Resizes' sizes fold to constants: the INT8 model keeps 320, and says so."""
    path = save(dynamic(onnx.load(str(U2NETP))), tmp_path / "u2netp.onnx")
    result = quantkit("quantize", path, "-o", tmp_path / "q.onnx")
    assert result.code == 0, result.err
    assert "keeps the fixed input 1x3x320x320" in result.err
    out = onnx.load(str(tmp_path / "q.onnx"))
    assert [d.dim_value for d in out.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 320, 320]
    _runs_at(tmp_path / "q.onnx", [(1, 320, 320)])


# --- beyond the issue: what else a new user does ----------------------------------------------------


def test_usage_errors_are_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str], model: Path) -> None:
    """typer now vendors click: its usage errors are not click's classes and ended as tracebacks."""
    for args, fragment in (
        (("quantize",), "Missing argument 'MODEL'"),
        (("quantize", model, "-q"), "-q"),  # "No such option: -q" or, from click 8.2, "...option '-q'."
        (("quantize", model, "--calib-limit", "0"), "--calib-limit"),
        (("quantize", model, "--method", "magic"), "--method"),
        (("compare", model, model, "--images", ".", "--min-iou", "abc"), "--min-iou"),
        (("remove", model, ".", "-o", "x", "--png-compression", "10"), "--png-compression"),
        (("bogus",), "No such command 'bogus'"),
    ):
        result = cli(capsys, *args)
        assert_one_line_error(result, 2, fragment)
        assert "--help" in result.err
    bare = cli(capsys)
    assert bare.code == 2 and "Usage:" in bare.err + bare.out
    no_traceback(bare)
    assert cli(capsys, "--version").code == 0


def test_paths_with_spaces_unicode_markup_and_newlines(
    capsys: pytest.CaptureFixture[str], model: Path, photos: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "fötös [bold]mine[red] 📷"
    folder.mkdir()
    source = sorted(photos.iterdir())[0]
    (folder / "a b [red]c.png").write_bytes(source.read_bytes())
    (folder / "line\nbreak.png").write_bytes(source.read_bytes())
    (folder / "not [i]an image.png").write_bytes(b"junk")
    out = tmp_path / "ütput [x]"
    result = cli(capsys, "remove", model, folder, "-o", out)
    assert result.code == 0, result.err
    assert "not [i]an image.png" in result.err  # markup shown as text, not swallowed
    assert sorted(p.name for p in out.iterdir()) == ["a b [red]c.png", "line\nbreak.png"]
    again = cli(capsys, "remove", model, folder / "line\nbreak.png", "-o", out)
    lines = [line for line in again.err.splitlines() if line.startswith("error:")]
    assert again.code == 2 and len(lines) == 1 and "line\\x0abreak.png" in lines[0], again.err


def test_file_names_the_terminal_cannot_encode(model: Path, photos: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ünï"
    folder.mkdir()
    (folder / "fötö.png").write_bytes(sorted(photos.glob("*.png"))[0].read_bytes())
    (folder / os.fsdecode(b"raw\xff.png")).write_bytes(b"junk")  # not even UTF-8
    result = sub("remove", model, folder, "-o", tmp_path / "öut", env={"PYTHONIOENCODING": "ascii"})
    assert result.code == 0, result.err  # was UnicodeEncodeError printing 'wrote ... to öut'
    no_traceback(result)
    assert "\\xf6ut" in result.out


def test_file_names_near_the_length_limit(
    capsys: pytest.CaptureFixture[str], model: Path, tmp_path: Path
) -> None:
    photos = tmp_path / "photos"
    write_photos(photos, 1)
    long = photos / ("x" * 240 + ".png")
    next(photos.iterdir()).rename(long)
    out = tmp_path / "out"
    result = cli(capsys, "remove", model, photos, "-o", out)  # was "File name too long" (temp name)
    assert result.code == 0, result.err
    assert [p.name for p in out.iterdir()] == [long.name]


def test_odd_paths_for_models_and_outputs(
    capsys: pytest.CaptureFixture[str], model: Path, photos: Path, tmp_path: Path
) -> None:
    folder_named_like_a_model = tmp_path / "u2netp.onnx"
    folder_named_like_a_model.mkdir()
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    text = tmp_path / "u2netp_text.onnx"
    text.write_text("hello")
    fifo = tmp_path / "u2netp_fifo.onnx"
    os.mkfifo(fifo)
    for args, fragment in (
        (("quantize", "-"), "does not exist"),
        (("remove", model, "-", "-o", tmp_path / "o"), "does not exist"),
        (("quantize", folder_named_like_a_model), "is not a file"),
        (("quantize", fifo), "is not a file"),
        (("quantize", empty), "not a readable ONNX file"),
        (("bench", text), "not a readable ONNX file"),
        (("quantize", model, "--calib", photos, "-o", ""), "is a folder, not a file"),
        (("quantize", model, "--calib", photos, "-o", photos), "is a folder, not a file"),
        (("quantize", model, "--calib", photos, "-o", tmp_path / "no" / "q.onnx"), "does not exist"),
        (("quantize", model, "--calib", photos, "-o", "/sys/q.onnx"), "not writable"),
        (("quantize", model, "--calib", model), "is not a folder"),
        (("quantize", model, "--calib", tmp_path / "nothing-here"), "does not exist"),
        (("remove", model, photos, "-o", model), "exists and is not a folder"),
        (("compare", model, "--images", photos), "at least two models"),
        (("compare", model, model, "--images", photos, "--masks", model), "does not exist"),
    ):
        assert_one_line_error(cli(capsys, *args), 2, fragment)


def png_header(width: int, height: int) -> bytes:
    """A PNG that announces ``width`` x ``height`` pixels and holds none."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def test_photos_of_every_odd_kind_are_used_or_skipped(
    capsys: pytest.CaptureFixture[str], model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    Image.new("RGB", (1, 1), (200, 10, 10)).save(folder / "one_pixel.png")
    Image.new("RGB", (20000, 1)).save(folder / "wide.png")
    Image.new("RGBA", (30, 30), (0, 0, 0, 0)).save(folder / "transparent.png")
    Image.new("P", (30, 30)).save(folder / "palette.gif")
    Image.new("CMYK", (30, 30)).save(folder / "cmyk.jpg")
    Image.new("I;16", (30, 30)).save(folder / "sixteen.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 100)
    (folder / "folder.png").mkdir()  # a folder named like a photo
    (folder / "zero.png").symlink_to("/dev/zero")  # a device behind a photo's name
    (folder / "bomb.png").write_bytes(png_header(100_000, 100_000))  # 10 Gpx announced in 60 bytes
    out = tmp_path / "out"
    result = cli(capsys, "remove", model, folder, "-o", out, "--max-size", "32")
    assert result.code == 0, result.err
    assert sorted(p.stem for p in out.iterdir()) == [
        "cmyk", "one_pixel", "palette", "sixteen", "transparent", "wide",
    ]  # fmt: skip
    assert "bomb.png" in result.err and "empty.png" in result.err and "truncated.jpg" in result.err
    quantized = cli(capsys, "quantize", model, "--calib", folder, "-o", tmp_path / "q.onnx")
    assert quantized.code == 0, quantized.err


def test_report_inside_the_images_folder_and_json_in_the_report(
    capsys: pytest.CaptureFixture[str], model: Path, int8: Path, photos: Path
) -> None:
    """A report may live inside the photo folder (a subfolder is not read), never replace it."""
    before = tree(photos)
    report = photos / "report"
    result = cli(capsys, "compare", model, int8, "--images", photos, "--report", report, "--json", report)
    assert_one_line_error(result, 2, "both name")
    result = cli(capsys, "compare", model, int8, "--images", photos, "--report", report)
    assert result.code == 0, result.err
    again = cli(capsys, "compare", model, int8, "--images", photos, "--report", report, "--force")
    assert again.code == 0, again.err
    assert {k: v for k, v in tree(photos).items() if not k.startswith("report")} == before


def test_report_on_photos_with_long_clashing_or_hostile_names(
    capsys: pytest.CaptureFixture[str], model: Path, int8: Path, tmp_path: Path
) -> None:
    """Thumbnails were named after the photo: a 250-character name broke the report, a.jpg and
    a.png shared thumbnails, and a quote in a name ended the img src attribute."""
    import re

    photos = tmp_path / "photos"
    write_photos(photos, 3)
    sources = sorted(photos.iterdir())
    sources[0].rename(photos / ("p" * 250 + ".png"))
    sources[1].rename(photos / 'x" onerror="alert(1).jpg')
    sources[2].rename(photos / ("p" * 250 + ".jpg"))
    report = tmp_path / "report"
    result = cli(capsys, "compare", model, int8, "--images", photos, "--report", report)
    assert result.code == 0, result.err
    page = (report / "index.html").read_text()
    sources_in_page = re.findall(r'src="([^"]+)"', page)
    assert len(sources_in_page) == len(set(sources_in_page)) == 15
    assert all((report / src).is_file() for src in sources_in_page)
    assert 'onerror="alert' not in page
    again = cli(capsys, "compare", model, int8, "--images", photos, "--report", report, "--force")
    assert again.code == 0, again.err  # still recognised as quantkit's own


def test_output_folder_and_cache_on_a_read_only_filesystem(
    capsys: pytest.CaptureFixture[str], model: Path, photos: Path, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "ro", "100k", readonly=True) as readonly:
        for args in (
            ("quantize", model, "--calib", photos, "-o", readonly / "q.onnx"),
            ("remove", model, photos, "-o", readonly / "cut"),
            ("bench", model, "--json", readonly / "r.json"),
        ):
            assert_one_line_error(cli(capsys, *args), 2, "not writable (Read-only file system)")


def test_ctrl_c_in_the_middle_of_remove_exits_130_with_whole_files(
    slow_model: Path, big_photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = spawn("remove", slow_model, big_photos, "-o", out)
    result = signal_when(proc, lambda: len(_finished(out)) >= 2, signal.SIGINT)
    assert result.code == 130, (result.code, result.err)
    no_traceback(result)
    assert all(not p.name.startswith(".") for p in out.iterdir())


def test_sigterm_during_bench_leaves_no_child_or_scratch(model: Path, tmp_path: Path) -> None:
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        pytest.skip("needs Linux's /proc/PID/task/PID/children to see the benchmark's child processes")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = spawn("bench", model, model, "--runs", "100000", env={"TMPDIR": str(scratch)})
    children: list[int] = []

    def both_children_running() -> bool:
        listing = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        with contextlib.suppress(OSError):
            children[:] = [int(pid) for pid in listing.read_text().split()]
        return len(children) >= 2

    result = signal_when(proc, both_children_running, signal.SIGTERM)
    assert result.code == 143, result.err
    no_traceback(result)
    assert list(scratch.iterdir()) == []
    assert [pid for pid in children if Path(f"/proc/{pid}").exists()] == []  # reaped, not orphaned


def test_the_guard_leaves_no_probe_file_and_checks_before_any_work(
    capsys: pytest.CaptureFixture[str], model: Path, photos: Path, tmp_path: Path
) -> None:
    existing = tmp_path / "q.onnx"
    existing.write_bytes(b"someone's model")
    started = time.monotonic()
    result = cli(capsys, "quantize", model, "--calib", photos, "-o", existing, "--force")
    assert_one_line_error(result, 2, "was not written by quantkit")
    assert time.monotonic() - started < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "q.onnx"]
    assert existing.read_bytes() == b"someone's model"


def test_api_refuses_like_the_cli(model: Path, photos: Path, tmp_path: Path) -> None:
    import quantkit

    with pytest.raises(QuantkitError, match="is an input"):
        quantkit.remove(model, [photos], output_dir=photos, force=True)
    with pytest.raises(QuantkitError, match="is an input"):
        quantkit.quantize(model, output=model, force=True, options=QuantizeOptions(calib_dir=photos))
    assert not any(p.name.startswith(".") for p in photos.iterdir())
