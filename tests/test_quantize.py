"""The quantize pipeline on a tiny real model: fast, end to end, with real onnxruntime."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest

import quantkit.calibrate
from quantkit.calibrate import CalibMethod
from quantkit.errors import QuantkitError
from quantkit.masks import HeldOut
from quantkit.quantize import QuantFormat, QuantizeOptions, Recipe, default_output, quantize
from quantkit.session import make_session
from quantkit.spec import read_spec


def options(model: Path, photos: Path, out: Path, **extra: object) -> QuantizeOptions:
    base: dict[str, object] = {"model": model, "output": out, "calib_dir": photos, "search_seconds": 20.0}
    base.update(extra)
    return QuantizeOptions(**base)  # type: ignore[arg-type]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_naive_recipe_writes_a_loadable_int8_model(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tiny.int8.onnx"
    report = quantize(options(tiny_model_path, photos, out, recipe=Recipe.NAIVE))
    model = onnx.load(str(out))
    assert report.opset_in == 11 and report.opset_out >= 13
    assert report.census.int8_weights == 4  # every Conv weight
    assert len(report.census.quantized) > 0
    assert report.calib_used == sorted(p.name for p in photos.iterdir())
    assert any(i.data_type == onnx.TensorProto.INT8 for i in model.graph.initializer)
    session = make_session(out)
    result = session.run(None, {"input.1": np.zeros((1, 3, 32, 32), np.float32)})[0]
    assert result.shape == (1, 1, 32, 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos", "tiny.int8.onnx"]  # no temp files left


def test_default_recipe_fixes_the_offset_channel(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    naive = tmp_path / "naive.onnx"
    good = tmp_path / "good.onnx"
    quantize(options(tiny_model_path, photos, naive, recipe=Recipe.NAIVE))
    report = quantize(options(tiny_model_path, photos, good))
    assert [(o.producer, o.channel) for o in report.offsets] == [("Conv_1", 3)]
    assert report.equalization is not None and report.equalization.groups > 0
    assert report.held_out_before_search is not None
    assert len(report.eval_images) == 2  # every 4th of 8 photos is held out for the check
    assert report.calib_used == sorted(p.name for p in photos.iterdir())  # final refit on all
    held = HeldOut(sorted(photos.iterdir()), read_spec(tiny_model_path), tiny_model_path)
    naive_iou = held.score(naive).iou.mean
    good_iou = held.score(good).iou.mean
    assert good_iou > naive_iou
    assert good_iou > 0.9


def test_same_inputs_give_the_same_bytes(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    first = tmp_path / "a.onnx"
    second = tmp_path / "b.onnx"
    quantize(options(tiny_model_path, photos, first, use_cache=False))
    quantize(options(tiny_model_path, photos, second, use_cache=True))
    third = tmp_path / "c.onnx"
    quantize(options(tiny_model_path, photos, third, use_cache=True))  # from the cache
    assert sha(first) == sha(second) == sha(third)


def test_existing_output_is_refused_then_replaced_with_force(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.onnx"
    out.write_bytes(b"user data")
    with pytest.raises(QuantkitError, match="already exists"):
        quantize(options(tiny_model_path, photos, out, recipe=Recipe.NAIVE))
    assert out.read_bytes() == b"user data"
    quantize(options(tiny_model_path, photos, out, recipe=Recipe.NAIVE, force=True))
    assert onnx.load(str(out)).graph.node


def test_output_may_not_replace_the_input(tiny_model_path: Path, photos: Path) -> None:
    with pytest.raises(QuantkitError, match="overwrite the input"):
        quantize(options(tiny_model_path, photos, tiny_model_path, force=True))


def test_exclude_keeps_a_node_float_and_unknown_names_fail(
    tiny_model_path: Path, photos: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ex.onnx"
    report = quantize(options(tiny_model_path, photos, out, recipe=Recipe.NAIVE, exclude=("Conv_2",)))
    assert ("Conv_2", "Conv") in report.census.float_nodes
    with pytest.raises(QuantkitError, match="no node named Conv_99"):
        quantize(options(tiny_model_path, photos, tmp_path / "x.onnx", exclude=("Conv_99",)))
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("method", [CalibMethod.PERCENTILE, CalibMethod.ENTROPY])
def test_histogram_methods_and_qoperator(
    tiny_model_path: Path, photos: Path, tmp_path: Path, method: CalibMethod
) -> None:
    out = tmp_path / f"{method.value}.onnx"
    report = quantize(
        options(tiny_model_path, photos, out, recipe=Recipe.NAIVE, method=method, fmt=QuantFormat.QOPERATOR)
    )
    types = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QLinearConv" in types
    assert len(report.census.quantized) >= 4


def test_interrupt_leaves_nothing_behind(
    tiny_model_path: Path, photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(quantkit.calibrate, "save_tensors_data", interrupted)
    out = tmp_path / "out" / "m.onnx"
    out.parent.mkdir()
    with pytest.raises(KeyboardInterrupt):
        quantize(options(tiny_model_path, photos, out, use_cache=False))
    assert list(out.parent.iterdir()) == []


def test_default_output_name() -> None:
    assert default_output(Path("models/u2netp.onnx")) == Path("models/u2netp.int8.onnx")
    assert default_output(Path("x/model")) == Path("x/model.int8.onnx")


def test_default_recipe_in_qoperator_format(tiny_model_path: Path, photos: Path, tmp_path: Path) -> None:
    out = tmp_path / "qop.onnx"
    quantize(options(tiny_model_path, photos, out, fmt=QuantFormat.QOPERATOR))
    types = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "QLinearConv" in types and "Pad" in types  # the widened first convolution
    session = make_session(out)
    assert session.run(None, {"input.1": np.zeros((1, 3, 32, 32), np.float32)})[0].shape == (1, 1, 32, 32)
