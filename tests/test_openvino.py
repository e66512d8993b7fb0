"""OpenVinoRunner: the same masks as onnxruntime, f32 forced, one-line errors, a lazy import.

The tests that run a model skip when ``openvino`` is not installed; the two that
check the import path and the install hint run either way.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from quantkit.accuracy.agreement import agreement
from quantkit.errors import QuantkitError
from quantkit.model.preprocess import mask_array, postprocess, preprocess
from quantkit.model.spec import read_spec
from quantkit.runtime.base import RuntimeSettings
from quantkit.runtime.openvino import OpenVinoRunner

from .conftest import CALIB, U2NETP

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino") is None, reason="openvino is not installed"
)

PHOTOS = ("astronaut.png", "camera.png", "ascent.png")


@pytest.fixture(scope="module")
def fp32_runner() -> OpenVinoRunner:
    return OpenVinoRunner(U2NETP, RuntimeSettings(threads=2))


def _ort_outputs(path: Path, tensor: np.ndarray) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [np.asarray(out) for out in session.run(None, {session.get_inputs()[0].name: tensor})]


@needs_openvino
def test_fp32_masks_match_onnxruntime_on_photos(fp32_runner: OpenVinoRunner) -> None:
    spec = read_spec(U2NETP)
    assert fp32_runner.input_name == spec.input_name == "input.1"
    for name in PHOTOS:
        image = Image.open(CALIB / name)
        tensor = preprocess(image, spec)
        reference = _ort_outputs(U2NETP, tensor)[0]
        output = fp32_runner.run(tensor)
        assert output.shape == reference.shape == (1, 1, 320, 320)
        assert float(np.abs(output - reference).max()) < 1e-3, name
        masks = (mask_array(postprocess(out, image.size, spec.activation)) for out in (reference, output))
        assert agreement(*masks).iou > 0.999, name


@needs_openvino
def test_compiled_with_f32_and_the_requested_threads(fp32_runner: OpenVinoRunner) -> None:
    assert fp32_runner.precision_hint == "f32"
    assert fp32_runner.threads == 2 and fp32_runner.pinned
    assert fp32_runner.conv_precisions() == {"f32": 119}


@needs_openvino
def test_run_returns_arrays_the_next_run_does_not_overwrite(fp32_runner: OpenVinoRunner) -> None:
    rng = np.random.default_rng(0)
    first_input, second_input = (rng.random((1, 3, 320, 320), dtype=np.float32) for _ in range(2))
    first = fp32_runner.run(first_input)
    kept = first.copy()
    second = fp32_runner.run(second_input)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, kept)


@needs_openvino
def test_mask_output_threads_and_spinning_reach_the_compiled_model() -> None:
    tensor = np.random.default_rng(1).random((1, 3, 320, 320), dtype=np.float32)
    runner = OpenVinoRunner(U2NETP, RuntimeSettings(threads=1, spinning=False), mask_output=3)
    assert runner.threads == 1 and not runner.pinned  # spinning off (a busy machine) unpins
    np.testing.assert_allclose(runner.run(tensor), _ort_outputs(U2NETP, tensor)[3], atol=1e-3)
    with pytest.raises(QuantkitError, match="has 7 outputs; there is no output 7"):
        OpenVinoRunner(U2NETP, RuntimeSettings(), mask_output=7)


# OpenVINO's own words: 2025.0 says "Error during import of ONNX model ...", later releases this.
PARSE_ERROR = "Model can't be parsed|Error during import of ONNX model"


@needs_openvino
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "Could not open the file"),
        (b"not a model\n", PARSE_ERROR),
        (U2NETP.read_bytes()[:100_000], PARSE_ERROR),
    ],
    ids=["missing", "text", "truncated"],
)
def test_unloadable_model_is_one_line_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], content: bytes | None, reason: str
) -> None:
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(QuantkitError) as caught:
        OpenVinoRunner(path, RuntimeSettings())
    message = str(caught.value)
    assert message.startswith(f"openvino cannot load {path}: ")
    assert any(r in message for r in reason.split("|")), message
    assert "\n" not in message
    assert capfd.readouterr().err == ""  # no other frontend's parser noise


@needs_openvino
@pytest.mark.slow
def test_int8_convolutions_run_in_integers(u2netp_int8: Path) -> None:
    runner = OpenVinoRunner(u2netp_int8, RuntimeSettings(threads=2))
    assert runner.precision_hint == "f32"  # float parts stay f32; the QDQ convs still run in u8
    counts = runner.conv_precisions()
    assert counts.get("u8", 0) + counts.get("i8", 0) >= 118  # of 119; a float island may keep one


def test_missing_openvino_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` raise ImportError
    with pytest.raises(QuantkitError, match=r'pip install "quantkit\[openvino\]"'):
        OpenVinoRunner(U2NETP, RuntimeSettings())


def test_importing_the_module_does_not_import_openvino() -> None:
    code = "import sys, quantkit.runtime.openvino; print('openvino' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
