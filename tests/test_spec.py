from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from quantkit.errors import QuantkitError
from quantkit.spec import Family, guess_family, read_spec

from .conftest import U2NETP


def save(tmp_path: Path, name: str, shape: list[object], elem: int = TensorProto.FLOAT) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", elem, shape)],
        [helper.make_tensor_value_info("y", elem, shape)],
    )
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def test_reads_real_u2netp() -> None:
    spec = read_spec(U2NETP)
    assert (spec.input_name, spec.height, spec.width, spec.opset) == ("input.1", 320, 320, 11)
    assert spec.family is Family.U2NETP
    assert spec.mean == (0.485, 0.456, 0.406)
    assert not spec.dynamic_size


def test_dynamic_size_takes_the_family_default(tmp_path: Path) -> None:
    spec = read_spec(save(tmp_path, "silueta.onnx", [1, 3, "h", "w"]))
    assert (spec.family, spec.height, spec.width, spec.dynamic_size) == (Family.SILUETA, 320, 320, True)


def test_non_320_static_size_is_used_as_is(tmp_path: Path) -> None:
    spec = read_spec(save(tmp_path, "u2net.onnx", [1, 3, 512, 384]))
    assert (spec.height, spec.width, spec.size) == (512, 384, (384, 512))


@pytest.mark.parametrize(
    ("shape", "message"),
    [([1, 1, 320, 320], "1 channels"), ([1, 10], "rank 2"), ([1, 320, 320, 3], "320 channels")],
)
def test_non_image_inputs_are_refused(tmp_path: Path, shape: list[object], message: str) -> None:
    with pytest.raises(QuantkitError, match=message):
        read_spec(save(tmp_path, "odd.onnx", shape))


def test_integer_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(QuantkitError, match="not a float32 tensor"):
        read_spec(save(tmp_path, "int.onnx", [1, 3, 8, 8], TensorProto.INT64))


def test_missing_truncated_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(QuantkitError, match="does not exist"):
        read_spec(tmp_path / "nope.onnx")
    truncated = tmp_path / "cut.onnx"
    truncated.write_bytes(U2NETP.read_bytes()[:100_000])
    with pytest.raises(QuantkitError, match="not a readable ONNX file"):
        read_spec(truncated)
    text = tmp_path / "notes.onnx"
    text.write_text("hello, I am not a model\n")
    with pytest.raises(QuantkitError, match="not a readable ONNX file"):
        read_spec(text)
    with pytest.raises(QuantkitError, match="not a file"):
        read_spec(tmp_path)


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("u2netp.int8.onnx", Family.U2NETP),
        ("u2net.onnx", Family.U2NET),
        ("my_u2net_human_seg_v2.onnx", Family.U2NET_HUMAN_SEG),
        ("silueta.onnx", Family.SILUETA),
        ("model.onnx", Family.U2NET),
    ],
)
def test_family_from_file_name(name: str, family: Family) -> None:
    assert guess_family(Path(name), 320) is family
