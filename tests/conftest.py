"""Shared fixtures: a tiny U²-Net-shaped model, real photos, and the optional ECSSD set.

The tiny model is a real ONNX graph run by the real onnxruntime: Conv, Relu,
MaxPool, Resize, Concat, Add and Sigmoid, opset 11 like rembg's exports, with one
channel that carries a large constant offset (the failure mode of u2netp), so the
recipes have something real to fix in well under a second.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from quantkit.passes.recipes import DEFAULT, NAIVE, Recipe
from quantkit.ptq.report import QuantizeReport

ROOT = Path(__file__).resolve().parent.parent
U2NETP = ROOT / "models" / "u2netp.onnx"
CALIB = ROOT / "calib_images"


def ecssd_root() -> Path | None:
    candidates = [os.environ.get("QUANTKIT_ECSSD"), str(ROOT.parent / "shared" / "datasets" / "ECSSD")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "images").is_dir() and (Path(candidate) / "masks").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def ecssd() -> Path:
    root = ecssd_root()
    if root is None:
        pytest.skip("ECSSD not found (set QUANTKIT_ECSSD or place it at ../shared/datasets/ECSSD)")
    return root


def _conv(
    name: str, x: str, out: str, w: np.ndarray, b: np.ndarray, pads: int
) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    node = helper.make_node(
        "Conv",
        [x, f"{name}.w", f"{name}.b"],
        [out],
        name=name,
        kernel_shape=list(w.shape[2:]),
        pads=[pads] * 4,
    )
    return node, [
        numpy_helper.from_array(w.astype(np.float32), f"{name}.w"),
        numpy_helper.from_array(b.astype(np.float32), f"{name}.b"),
    ]


def build_tiny_model(
    size: int = 32, offset: float = 200.0, opset: int = 11, seed: int = 0
) -> onnx.ModelProto:
    """Conv-Relu-MaxPool-Conv-Relu-Resize-Concat-Conv-Relu-Add-Conv-Sigmoid, like an RSU block."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []

    def add(node_inits: tuple[onnx.NodeProto, list[onnx.TensorProto]]) -> None:
        nodes.append(node_inits[0])
        inits.extend(node_inits[1])

    add(_conv("Conv_0", "input.1", "c0", rng.normal(0, 0.3, (8, 3, 3, 3)), rng.normal(0, 0.1, 8), 1))
    nodes.append(helper.make_node("Relu", ["c0"], ["r0"], name="Relu_0"))
    nodes.append(
        helper.make_node("MaxPool", ["r0"], ["p0"], name="MaxPool_0", kernel_shape=[2, 2], strides=[2, 2])
    )
    w1 = rng.normal(0, 0.2, (8, 8, 3, 3))
    b1 = rng.normal(0, 0.1, 8)
    w1[3] *= 0.01  # channel 3: almost constant...
    b1[3] = offset  # ...and large: the u2netp pathology
    add(_conv("Conv_1", "p0", "c1", w1, b1, 1))
    nodes.append(helper.make_node("Relu", ["c1"], ["r1"], name="Relu_1"))
    inits.append(numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales"))
    inits.append(numpy_helper.from_array(np.array([], dtype=np.float32), "roi"))
    nodes.append(helper.make_node("Resize", ["r1", "roi", "scales"], ["u1"], name="Resize_1", mode="linear"))
    nodes.append(helper.make_node("Concat", ["u1", "r0"], ["cat"], name="Concat_1", axis=1))
    w2 = rng.normal(0, 0.1, (8, 16, 1, 1))
    w2[:, 3, 0, 0] = rng.normal(0, 2.0, 8)  # the consumer leans on the offset channel
    b2 = -offset * w2[:, 3, 0, 0] + rng.normal(0, 0.1, 8)  # ...and its bias cancels it
    add(_conv("Conv_2", "cat", "c2", w2, b2, 0))
    nodes.append(helper.make_node("Relu", ["c2"], ["r2"], name="Relu_2"))
    nodes.append(helper.make_node("Add", ["r2", "r0"], ["sum"], name="Add_1"))
    add(_conv("Conv_3", "sum", "logit", rng.normal(0, 0.3, (1, 8, 3, 3)), np.zeros(1), 1))
    nodes.append(helper.make_node("Sigmoid", ["logit"], ["mask"], name="Sigmoid_0"))
    graph = helper.make_graph(
        nodes,
        "tiny_u2net",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, size, size])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    onnx.save(build_tiny_model(), str(path))
    return path


def write_photos(folder: Path, count: int, size: tuple[int, int] = (48, 40), seed: int = 0) -> list[Path]:
    """Small synthetic 'photos': a bright blob on a textured background, as JPEG and PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for k in range(count):
        w, h = size
        yy, xx = np.mgrid[0:h, 0:w]
        cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
        blob = np.exp(-(((xx - cx) / (0.2 * w)) ** 2 + ((yy - cy) / (0.2 * h)) ** 2))
        base = rng.uniform(0, 80, (h, w, 3)) + 170 * blob[..., None] * rng.uniform(0.5, 1.0, 3)
        image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
        path = folder / f"photo_{k:02d}.{'jpg' if k % 2 else 'png'}"
        image.save(path)
        paths.append(path)
    return paths


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    write_photos(folder, 8)
    return folder


@pytest.fixture(scope="session")
def session_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("session_photos")
    write_photos(folder, 8)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Tests (and the commands they run) never read or write the user's calibration cache.

    Session-scoped so it is in place before the session fixtures below quantize anything.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("QUANTKIT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


def quantize_tiny(
    model: Path, photos: Path, output: Path, recipe: Recipe = DEFAULT, **options: Any
) -> QuantizeReport:
    """The tiny model through the public API, calibrated on ``photos``."""
    import quantkit

    return quantkit.quantize(
        model, output=output, options=quantkit.QuantizeOptions(calib_dir=photos, recipe=recipe, **options)
    )


@pytest.fixture(scope="session")
def tiny_naive(tiny_model_path: Path, session_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model through plain quantize_static: a real INT8 model whose masks moved."""
    out = tmp_path_factory.mktemp("tiny_naive") / "tiny.naive.onnx"
    quantize_tiny(tiny_model_path, session_photos, out, NAIVE)
    return out


@pytest.fixture(scope="session")
def u2netp_int8(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real u2netp quantized once per session with the defaults users get (about 40 s):
    the default recipe, calibrated on the bundled photos."""
    import quantkit

    out = tmp_path_factory.mktemp("int8") / "u2netp.int8.onnx"
    quantkit.quantize(U2NETP, output=out)
    return out


@pytest.fixture(scope="session")
def u2netp_naive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real u2netp through plain onnxruntime quantize_static: the masks break."""
    import quantkit

    out = tmp_path_factory.mktemp("naive") / "u2netp.naive.onnx"
    quantkit.quantize(U2NETP, output=out, options=quantkit.QuantizeOptions(recipe=NAIVE))
    return out


def dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with batch, height and width left open (``dim_param``), as many exports are."""
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        for index, name in ((0, "batch"), (2, "height"), (3, "width")):
            dims[index].Clear()
            dims[index].dim_param = name
    return model
