"""The stand-in models of ``benchmarks/standins.py``: exact widening, U2NET's widths, sizes that follow."""

from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from quantkit.model.images import list_images, open_image
from quantkit.model.preprocess import preprocess
from quantkit.model.spec import read_spec

from .conftest import CALIB, ROOT, U2NETP, build_tiny_model


@pytest.fixture(scope="module")
def standins() -> ModuleType:
    """The script imported as it runs, with ``benchmarks/`` on sys.path (for its ``_common``)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "benchmarks"))
        return importlib.import_module("standins")


@pytest.fixture(scope="module")
def u2netp() -> onnx.ModelProto:
    return onnx.load(str(U2NETP))


def run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [np.asarray(o) for o in session.run(None, {session.get_inputs()[0].name: x})]


def photo_tensors(count: int) -> list[np.ndarray]:
    spec = read_spec(U2NETP)
    return [preprocess(open_image(p), spec) for p in list_images(CALIB, limit=count)]


def widths_of(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    return {i.name: tuple(i.dims) for i in model.graph.initializer}


def test_source_widths_give_u2netp_and_u2net_parameter_counts(
    standins: ModuleType, u2netp: onnx.ModelProto
) -> None:
    def params(shapes: list[tuple[int, int]]) -> int:  # 3×3 convolutions, then the 1×1 outconv
        return sum(o * i * 9 + o for i, o in shapes[:-1]) + shapes[-1][0] * shapes[-1][1] + 1

    assert params(standins.conv_shapes(standins.U2NETP_WIDTHS, standins.U2NETP_SIDES)) == 1_125_485
    assert standins.param_count(u2netp) == 1_125_485
    # U2NET with its batch norms folded: the 44.0 M parameters / 176 MB of rembg's u2net.onnx.
    assert params(standins.conv_shapes(standins.U2NET_WIDTHS, standins.U2NET_SIDES)) == 43_981_069


def test_widening_a_tiny_rsu_graph_keeps_its_function(standins: ModuleType) -> None:
    """Conv -> Relu -> MaxPool -> Conv -> Resize -> Concat -> Conv -> residual Add, widened 3x / 2.5x."""
    tiny = build_tiny_model()
    widths = {"Conv_0": 24, "Conv_1": 20, "Conv_2": 24}  # Conv_0 and Conv_2 meet at the Add
    maps = standins.output_maps(tiny, widths, np.random.default_rng(0))
    np.testing.assert_array_equal(maps["Conv_0"], maps["Conv_2"])
    wide = standins.with_arrays(tiny, standins.widened_arrays(tiny, maps))
    assert widths_of(wide)["Conv_2.w"] == (24, 44, 1, 1)  # reads Concat(20 resized, 24 skip)
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(run(wide, x)[0], run(tiny, x)[0], atol=1e-4)  # float rounding of a 200 offset


def test_a_residual_add_of_two_widths_is_refused(standins: ModuleType) -> None:
    tiny = build_tiny_model()
    with pytest.raises(ValueError, match="residual Add"):
        standins.output_maps(tiny, {"Conv_0": 24, "Conv_2": 16}, np.random.default_rng(0))


def test_u2netp_widened_twofold_gives_the_same_masks(standins: ModuleType, u2netp: onnx.ModelProto) -> None:
    """Every multi-channel convolution of the real u2netp doubled: 119 convolutions, 11 residual Adds."""
    inits = {i.name: i for i in u2netp.graph.initializer}
    widths = {
        n.name: 2 * inits[n.input[1]].dims[0] for n in standins.convs(u2netp) if inits[n.input[1]].dims[0] > 1
    }
    maps = standins.output_maps(u2netp, widths, np.random.default_rng(0))
    wide = standins.with_arrays(u2netp, standins.widened_arrays(u2netp, maps))
    assert standins.param_count(wide) > 3.9 * standins.param_count(u2netp)
    (x,) = photo_tensors(1)
    for got, want in zip(run(wide, x), run(u2netp, x), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_noise_is_seeded_and_separates_replicated_filters(standins: ModuleType) -> None:
    tiny = build_tiny_model()
    maps = standins.output_maps(tiny, {"Conv_1": 16}, np.random.default_rng(0))

    def noisy(seed: int) -> np.ndarray:
        model = standins.with_arrays(tiny, standins.widened_arrays(tiny, maps))
        standins.add_noise(model, 0.002, seed)
        return numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "Conv_1.w"))

    first = noisy(0)
    np.testing.assert_array_equal(first, noisy(0))
    assert not np.array_equal(first, noisy(1))
    copy = 8 + int(np.flatnonzero(maps["Conv_1"][8:] == 0)[0])  # a replica of filter 0
    assert 0 < np.abs(first[copy] - first[0]).max() < 0.01 * np.abs(first[0]).max()


def test_u2netp_at_another_size_follows_at_run_time(standins: ModuleType, u2netp: onnx.ModelProto) -> None:
    """Every Resize takes its sizes from a runtime shape, so only the declared shapes change."""
    assert [
        d.dim_value for d in standins.build_u2netp_1024(u2netp).graph.input[0].type.tensor_type.shape.dim
    ] == [
        1,
        3,
        1024,
        1024,
    ]
    small = standins.build_u2netp_1024(u2netp, size=96)
    x = np.random.default_rng(0).standard_normal((1, 3, 96, 96)).astype(np.float32)
    assert [o.shape for o in run(small, x)] == [(1, 1, 96, 96)] * 7


def test_a_resize_to_constant_sizes_is_refused(standins: ModuleType) -> None:
    tiny = build_tiny_model()
    resize = next(n for n in tiny.graph.node if n.op_type == "Resize")
    tiny.graph.initializer.append(numpy_helper.from_array(np.array([1, 8, 32, 32], np.int64), "sizes"))
    resize.input[2] = ""
    resize.input.append("sizes")
    with pytest.raises(ValueError, match="constant sizes"):
        standins.build_u2netp_1024(tiny)


@pytest.mark.slow
def test_u2net_standin_at_zero_noise_is_u2netp(standins: ModuleType, u2netp: onnx.ModelProto) -> None:
    """The full widening to U2NET's widths (about 10 s): same outputs as u2netp on two photos."""
    wide = standins.build_u2net_standin(u2netp, noise=0.0)
    assert standins.param_count(wide) == 43_981_069
    session = ort.InferenceSession(wide.SerializeToString(), providers=["CPUExecutionProvider"])
    del wide
    for x in photo_tensors(2):
        got = session.run(None, {"input.1": x})
        for g, want in zip(got, run(u2netp, x), strict=True):
            np.testing.assert_allclose(g, want, atol=1e-3)


@pytest.mark.slow
def test_isnet_standin_has_isnetdis_shapes_and_runs(standins: ModuleType, u2netp: onnx.ModelProto) -> None:
    model = standins.build_isnet_standin(u2netp, size=64)
    stem = model.graph.node[0]
    assert (stem.op_type, stem.input[1]) == ("Conv", "conv_in.weight")
    assert next(a.ints for a in stem.attribute if a.name == "strides") == [2, 2]
    shapes = [widths_of(model)[n.input[1]][1::-1] for n in standins.convs(model)]
    expected = standins.conv_shapes(standins.ISNET_WIDTHS, standins.U2NET_SIDES)[:-1]  # no outconv
    assert shapes == [(3, 64), *expected]
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    assert [o.shape for o in run(model, x)] == [(1, 1, 64, 64)] * 6
