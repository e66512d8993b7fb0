"""FP16 models in: every command reads them, and quantize works on their FP32 upcast."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import quantkit
from quantkit.graph.precision import upcast
from quantkit.model.family import by_file_name
from quantkit.model.spec import read_spec
from quantkit.ptq.pipeline import bundled_photos
from tests.cli_helpers import quantkit as cli
from tests.conftest import U2NETP
from tests.fp16_models import to_fp16

BUNDLED = bundled_photos()  # real photos: FP32 and FP16 masks agree on a clear subject
SHARED_ISNET = Path(
    os.environ.get("QUANTKIT_ISNET", Path(__file__).parents[2] / "shared/models/isnet-general-use.fp16.onnx")
)


def _run(model: onnx.ModelProto | Path, x: np.ndarray) -> np.ndarray:
    source = str(model) if isinstance(model, Path) else model.SerializeToString()
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    image = session.get_inputs()[0]
    feed = x.astype(np.float16) if image.type == "tensor(float16)" else x
    return np.asarray(session.run(None, {image.name: feed})[0], dtype=np.float32)


def _elem_types(model: onnx.ModelProto) -> set[int]:
    types = {i.data_type for i in model.graph.initializer}
    types |= {v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name == "value" and attr.HasField("t"):
                types.add(attr.t.data_type)
            if attr.name == "to":
                types.add(attr.i)
    return types


@pytest.fixture(scope="module")
def u2netp_fp16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fp16") / "u2netp.fp16.onnx"
    onnx.save(to_fp16(onnx.load(str(U2NETP))), str(path))
    return path


@pytest.mark.parametrize("keep_io_types", [True, False])
def test_upcast_computes_what_the_fp16_file_computes_in_float32(keep_io_types: bool) -> None:
    fp16 = to_fp16(onnx.load(str(U2NETP)), keep_io_types)
    fp32 = upcast(fp16)
    assert onnx.TensorProto.FLOAT16 in _elem_types(fp16)
    assert onnx.TensorProto.FLOAT16 not in _elem_types(fp32)
    assert not [n for n in fp32.graph.node if n.op_type == "Cast"]  # every cast became float32 -> float32
    assert [o.name for o in fp32.graph.output] == [o.name for o in fp16.graph.output]
    assert fp32.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    onnx.checker.check_model(fp32)
    x = np.random.default_rng(0).standard_normal((1, 3, 320, 320)).astype(np.float32)
    # onnxruntime's CPU kernels compute these ops in float32 from float16 weights anyway: the
    # same numbers, up to the float16 rounding of the input when the file takes float16.
    assert np.abs(_run(fp32, x) - _run(fp16, x)).max() <= (0.0 if keep_io_types else 1e-3)
    # ...and the float16 weights are within float16's rounding of the original float32 ones.
    assert np.abs(_run(fp32, x) - _run(onnx.load(str(U2NETP)), x)).max() < 0.05


def test_fp16_names_find_their_family() -> None:
    assert by_file_name(Path("isnet-general-use.fp16.onnx")).name == "isnet-general-use"  # type: ignore[union-attr]
    assert by_file_name(Path("u2netp_fp16.onnx")).name == "u2netp"  # type: ignore[union-attr]
    assert by_file_name(Path("birefnet-general-fp16.onnx")).name == "birefnet-general-fp16"  # type: ignore[union-attr]


def _upcast_file(fp16: Path, folder: Path) -> Path:
    path = folder / "u2netp.upcast.onnx"
    onnx.save(upcast(onnx.load(str(fp16))), str(path))
    return path


def test_compare_and_remove_run_an_fp16_file_as_it_is(
    u2netp_fp16: Path, photos: Path, tmp_path: Path
) -> None:
    assert read_spec(u2netp_fp16).fp16 and not read_spec(U2NETP).fp16
    reference = _upcast_file(u2netp_fp16, tmp_path)
    result = quantkit.compare(reference, u2netp_fp16, images=BUNDLED, limit=6, noise_floor=False)
    (fp16,) = result.candidates
    assert fp16.spec.precision == "fp16" and result.to_dict()["models"][0]["precision"] == "fp16"
    assert result.to_dict()["reference"]["precision"] == "fp32"
    assert fp16.agreement.iou.minimum == 1.0  # the FP16 file ran as it is: its upcast's masks exactly
    out = tmp_path / "cutouts"
    report = quantkit.remove(u2netp_fp16, [BUNDLED / "chelsea.png", BUNDLED / "coffee.png"], output_dir=out)
    assert report.written and all(p.suffix == ".png" for p in out.iterdir())


def test_fp16_input_types_are_fed_float16(tmp_path: Path) -> None:
    path = tmp_path / "u2netp-io16.onnx"
    onnx.save(to_fp16(onnx.load(str(U2NETP)), keep_io_types=False), str(path))
    reference = _upcast_file(path, tmp_path)
    result = quantkit.compare(reference, path, images=BUNDLED, limit=6, noise_floor=False)
    assert result.candidates[0].agreement.iou.mean > 0.995  # only the input's float16 rounding differs


@pytest.mark.slow
def test_quantize_takes_an_fp16_file_and_says_so(u2netp_fp16: Path, tmp_path: Path) -> None:
    out = tmp_path / "u2netp.int8.onnx"
    result = cli("quantize", u2netp_fp16, "-o", out, "--json", tmp_path / "q.json", "--no-cache")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "q.json").read_text())
    assert report["input_precision"] == "fp16"
    assert report["fp32_bytes"] > 1.9 * report["input_bytes"]  # the upcast it was quantized from
    assert report["size_ratio"] == pytest.approx(report["output_bytes"] / report["fp32_bytes"], abs=1e-4)
    assert "FP16" in result.out
    quantized = onnx.load(str(out))
    assert onnx.TensorProto.FLOAT16 not in _elem_types(quantized)
    assert report["held_out"]["iou_final"]["mean"] > 0.9  # checked against the upcast's own masks


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_ISNET.is_file(), reason="real IS-Net FP16 weights not beside the clone")
def test_the_real_isnet_fp16_file_upcasts_to_the_same_function() -> None:
    fp16 = onnx.load(str(SHARED_ISNET))
    fp32 = upcast(fp16)
    assert onnx.TensorProto.FLOAT16 not in _elem_types(fp32)
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (1, 3, 1024, 1024)).astype(np.float32)
    assert np.abs(_run(fp32, x) - _run(SHARED_ISNET, x)).max() < 1e-3
