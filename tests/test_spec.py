"""What a model expects, read from the graph; its rembg family, never guessed silently."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from quantkit.errors import QuantkitError
from quantkit.model.family import DetectedBy, by_file_name, get_family
from quantkit.model.spec import read_spec

from .conftest import U2NETP


def save(
    tmp_path: Path,
    name: str,
    shape: list[object],
    elem: int = TensorProto.FLOAT,
    *,
    op: str = "Identity",
    out_shape: list[object] | None = None,
    metadata: dict[str, str] | None = None,
) -> Path:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", elem, shape)],
        [helper.make_tensor_value_info("y", elem, out_shape or shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # what onnxruntime 1.31 (and rembg's exports) read
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def test_reads_real_u2netp() -> None:
    spec = read_spec(U2NETP)
    assert (spec.input_name, spec.height, spec.width, spec.opset) == ("input.1", 320, 320, 11)
    assert spec.family.name == "u2netp" and spec.detection.by is DetectedBy.FILE_NAME
    assert spec.detection.note is None
    assert spec.mean == (0.485, 0.456, 0.406) and spec.std == (0.229, 0.224, 0.225)
    assert not spec.dynamic_size and not spec.quantized


def test_dynamic_size_takes_the_family_default(tmp_path: Path) -> None:
    spec = read_spec(save(tmp_path, "silueta.onnx", [1, 3, "h", "w"]))
    assert (spec.family.name, spec.height, spec.width, spec.dynamic_size) == ("silueta", 320, 320, True)
    isnet = read_spec(save(tmp_path, "isnet-general-use.onnx", ["n", 3, "h", "w"]))
    assert (isnet.height, isnet.width, isnet.mean, isnet.std) == (1024, 1024, (0.5,) * 3, (1.0,) * 3)


def test_non_square_static_size_is_used_as_is(tmp_path: Path) -> None:
    spec = read_spec(save(tmp_path, "u2net.onnx", [1, 3, 512, 384]))
    assert (spec.height, spec.width, spec.size) == (512, 384, (384, 512))


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ([1, 1, 320, 320], "has 1 channels"),
        ([1, 10], "rank 2"),
        ([1, 320, 320, 3], "320 channels"),
        ([2, 3, 320, 320], "fixed batch 2"),
    ],
)
def test_non_image_inputs_are_refused(tmp_path: Path, shape: list[object], message: str) -> None:
    with pytest.raises(QuantkitError, match=message):
        read_spec(save(tmp_path, "u2net.onnx", shape))


def test_integer_input_and_non_mask_output_are_refused(tmp_path: Path) -> None:
    with pytest.raises(QuantkitError, match="not a float32 or float16 tensor"):
        read_spec(save(tmp_path, "int.onnx", [1, 3, 8, 8], TensorProto.INT64))
    vector_out = save(tmp_path, "u2net.onnx", [1, 3, 8, 8], op="Flatten", out_shape=[1, 192])
    with pytest.raises(QuantkitError, match=r"output 0 'y' has shape \[1, 192\]; rembg reads a mask"):
        read_spec(vector_out)


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
    loop = tmp_path / "loop.onnx"
    loop.symlink_to(loop)
    with pytest.raises(QuantkitError, match="symbolic links"):
        read_spec(loop)


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("u2netp.int8.onnx", "u2netp"),  # quantkit's own default output name
        ("u2net.onnx", "u2net"),
        ("U2NETP.ONNX", "u2netp"),
        ("my_u2net_human_seg_v2.onnx", "u2net_human_seg"),
        ("silueta.onnx", "silueta"),
        ("isnet-anime.int8.onnx", "isnet-anime"),
        ("BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx", "birefnet-general-lite"),  # the release name
        ("bria-rmbg-2.0.onnx", "bria-rmbg"),
        ("model.onnx", None),
        ("u2netpx.onnx", None),  # whole words only
    ],
)
def test_family_from_rembg_file_names(name: str, family: str | None) -> None:
    found = by_file_name(Path(name))
    assert (found.name if found else None) == family


def test_detection_order_flag_then_name_then_metadata_then_input_size(tmp_path: Path) -> None:
    recorded = {"quantkit.family": "silueta"}
    anonymous = save(tmp_path, "model.onnx", [1, 3, 320, 320], metadata=recorded)
    named = save(tmp_path, "u2netp.onnx", [1, 3, 320, 320], metadata=recorded)
    plain = save(tmp_path, "plain.onnx", [1, 3, 320, 320])
    cases = [
        (read_spec(named, "isnet-anime"), "isnet-anime", DetectedBy.EXPLICIT),
        (read_spec(named), "u2netp", DetectedBy.FILE_NAME),
        (read_spec(anonymous), "silueta", DetectedBy.METADATA),
        (read_spec(plain), "u2net", DetectedBy.INPUT_SIZE),
    ]
    for spec, family, by in cases:
        assert (spec.family.name, spec.detection.by) == (family, by)
        assert (spec.detection.note is None) == (by is not DetectedBy.INPUT_SIZE)
    note = read_spec(plain).detection.note
    assert note is not None and "assumed family u2net from the model's 320x320 input" in note
    assert "pass --family NAME" in note


@pytest.mark.parametrize(
    ("shape", "seen"), [([1, 3, 32, 32], "32x32"), ([1, 3, "h", "w"], "dynamic or non-square")]
)
def test_the_assumption_names_the_input_it_was_made_from(
    tmp_path: Path, shape: list[object], seen: str
) -> None:
    spec = read_spec(save(tmp_path, "small.onnx", shape))
    assert spec.family.name == "u2net" and spec.family.size == 320
    assert f"assumed family u2net from the model's {seen} input" in (spec.detection.note or "")


def test_input_size_fallback_tells_isnet_from_birefnet(tmp_path: Path) -> None:
    conv = read_spec(save(tmp_path, "a.onnx", [1, 3, 1024, 1024]))
    attention = read_spec(save(tmp_path, "b.onnx", [1, 3, 1024, 1024], op="Softmax"))
    assert conv.family.name == "isnet-general-use"
    assert attention.family.name == "birefnet-general"
    assert attention.activation.value == "sigmoid" and conv.activation.value == "none"


def test_unknown_and_unsupported_families_are_refused(tmp_path: Path) -> None:
    with pytest.raises(QuantkitError, match=r"unknown family 'u3net' \(known: u2net, u2netp"):
        read_spec(save(tmp_path, "m.onnx", [1, 3, 320, 320]), "u3net")
    assert get_family(" U2NetP ").name == "u2netp"
    with pytest.raises(QuantkitError, match="u2net_cloth_seg is not supported"):
        read_spec(save(tmp_path, "u2net_cloth_seg.onnx", [1, 3, 768, 768]))


def test_a_quantized_graph_is_recognised(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
        [
            helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]),
            helper.make_tensor("z", TensorProto.UINT8, [], [0]),
        ],
    )
    path = tmp_path / "u2net.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    assert read_spec(path).quantized
    assert not read_spec(save(tmp_path, "u2netp.onnx", [1, 3, 8, 8])).quantized
