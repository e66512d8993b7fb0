"""Tiny, seeded stand-ins for every rembg model family, and the facts rembg 2.0.86 applies to each.

quantkit has to quantize and run every family rembg ships (U²-Net, IS-Net, BiRefNet, BRIA RMBG, BEN)
and pre- and post-process each exactly as rembg does. The real models are 4-900 MB downloads that the
test machines cannot fetch, so these builders make graphs with the same interface (input [1, 3, S, S]
float32 at the family's real size, the same kind of output 0) and the same kinds of operators
(Conv/MaxPool/Resize for the U²-Net and IS-Net families; patch embedding, LayerNormalization,
MatMul/Softmax attention and Gelu for the transformer families), yet each runs in a fraction of a second
at its family's real size, 1024 x 1024 included, because they downsample hard and carry few channels.

Every builder is deterministic (seeded NumPy weights) and returns a model that passes
``onnx.checker.check_model(full_check=True)``. Opsets and IR versions follow the real exports, which
onnxruntime 1.23.2 (the oldest rembg 2.0.86 accepts) and 1.31 both load: U²-Net and IS-Net are opset 11 / IR 6
like rembg's ``u2net*.onnx`` and ``isnet-*.onnx``; BiRefNet is opset 17 / IR 8 like BiRefNet's own
``tutorials/BiRefNet_pth2onnx.ipynb`` (``torch.onnx.export(..., opset_version=17)``), in which the
TorchScript exporter writes GELU as ``x * 0.5 * (1 + Erf(x / sqrt 2))`` because the single ``Gelu``
operator only exists from opset 20. ``gelu="op"`` builds that opset-20 form too.

``FAMILIES`` records, per rembg session name, the preprocessing and post-processing constants read from
rembg 2.0.86's ``rembg/sessions/*.py`` and which builder stands in for the real model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Gelu = Literal["erf", "op"]
Triple = tuple[float, float, float]
Builder = Callable[[], onnx.ModelProto]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Graph:
    """Accumulates nodes and seeded initializers so each builder reads like the network it imitates."""

    def __init__(self, seed: int, opset: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, op: str) -> str:
        self._count += 1
        return f"{op}_{self._count}"

    def const(self, array: np.ndarray, hint: str = "c") -> str:
        name = self._name(hint)
        self.inits.append(numpy_helper.from_array(array, name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], output: str | None = None, **attrs: Any) -> str:
        name = self._name(op_type)
        out = output or f"{name}.out"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=name, **attrs))
        return out

    def rename(self, old: str, new: str) -> str:
        """Give a tensor an export-style name, so graph outputs come straight from their real producer."""
        for node in self.nodes:
            node.input[:] = [new if name == old else name for name in node.input]
            node.output[:] = [new if name == old else name for name in node.output]
        return new

    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int,
        *,
        stride: int = 1,
        relu: bool = True,
        output: str | None = None,
    ) -> str:
        """He-initialised Conv (+ Relu): keeps activations O(1) through depth, so no output saturates."""
        w = self.rng.normal(0.0, math.sqrt(2.0 / (cin * k * k)), (cout, cin, k, k)).astype(np.float32)
        b = self.rng.normal(0.0, 0.1, cout).astype(np.float32)
        pad = 0 if k == stride else k // 2  # patchify convs (k == stride) are unpadded, as in Swin
        y = self.op(
            "Conv",
            [x, self.const(w, "w"), self.const(b, "b")],
            None if relu else output,
            kernel_shape=[k, k],
            strides=[stride, stride],
            pads=[pad] * 4,
        )
        return self.op("Relu", [y], output) if relu else y

    def maxpool(self, x: str) -> str:
        """2x2/2 with ceil_mode, as U²-Net's ``nn.MaxPool2d(2, stride=2, ceil_mode=True)``."""
        return self.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)

    def resize(self, x: str, size: int, channels: int, *, coords: str = "pytorch_half_pixel") -> str:
        """Bilinear Resize to an exact size, spelt the way the opset in use allows."""
        sizes = self.const(np.array([1, channels, size, size], dtype=np.int64), "sizes")
        if self.opset < 13:  # opset 11 requires roi and scales as tensors, empty when sizes is given
            empty = np.zeros(0, dtype=np.float32)
            inputs = [x, self.const(empty, "roi"), self.const(empty, "scales"), sizes]
        else:
            inputs = [x, "", "", sizes]
        return self.op("Resize", inputs, mode="linear", coordinate_transformation_mode=coords)

    def linear(self, x: str, cin: int, cout: int) -> str:
        w = self.rng.normal(0.0, 1.0 / math.sqrt(cin), (cin, cout)).astype(np.float32)
        b = self.rng.normal(0.0, 0.02, cout).astype(np.float32)
        return self.op("Add", [self.op("MatMul", [x, self.const(w, "w")]), self.const(b, "b")])

    def layer_norm(self, x: str, dim: int) -> str:
        gamma = (1.0 + self.rng.normal(0.0, 0.1, dim)).astype(np.float32)
        beta = self.rng.normal(0.0, 0.1, dim).astype(np.float32)
        return self.op(
            "LayerNormalization", [x, self.const(gamma, "gamma"), self.const(beta, "beta")], axis=-1
        )

    def gelu(self, x: str, form: Gelu) -> str:
        if form == "op":
            return self.op("Gelu", [x])
        scaled = self.op("Div", [x, self.const(np.array(math.sqrt(2.0), dtype=np.float32))])
        erf1 = self.op("Add", [self.op("Erf", [scaled]), self.const(np.array(1.0, dtype=np.float32))])
        return self.op("Mul", [self.op("Mul", [x, erf1]), self.const(np.array(0.5, dtype=np.float32))])

    def model(
        self, name: str, input_name: str, size: int, outputs: Sequence[tuple[str, int]], ir_version: int
    ) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            name,
            [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [1, 3, size, size])],
            [
                helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, ch, size, size])
                for out, ch in outputs
            ],
            self.inits,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", self.opset)],
            ir_version=ir_version,
            producer_name="quantkit-tests",
        )
        onnx.checker.check_model(model, full_check=True)
        return model


def _halvings(size: int, count: int) -> list[int]:
    """Spatial sizes after each ceil-mode 2x2 MaxPool, so Resize targets match for any ``size``."""
    sizes = [size]
    for _ in range(count):
        sizes.append(-(-sizes[-1] // 2))
    return sizes


def _u2net_graph(size: int, seed: int, classes: int, sigmoid: bool, name: str) -> onnx.ModelProto:
    """Encoder-decoder with six side outputs and a 1x1-conv fusion of them, as U²-Net's d0..d6."""
    widths = [4, 8, 8, 8, 8, 8]  # only 4 channels at full resolution, where nearly all the time goes
    g = _Graph(seed, opset=11)
    sizes = _halvings(size, 5)
    enc = [g.conv("input.1", 3, widths[0], 3)]
    for level in range(1, 6):
        enc.append(g.conv(g.maxpool(enc[-1]), widths[level - 1], widths[level], 3))
    dec = enc[5]
    decs = [dec]
    for level in range(4, -1, -1):
        up = g.resize(dec, sizes[level], widths[level + 1])
        dec = g.conv(
            g.op("Concat", [up, enc[level]], axis=1), widths[level + 1] + widths[level], widths[level], 3
        )
        decs.append(dec)
    decs[-1] = g.op("Add", [decs[-1], enc[0]])  # the residual every RSU block ends with
    sides = []
    for level, feat in zip(range(5, -1, -1), decs, strict=True):
        side = g.conv(feat, widths[level], classes, 3, relu=False)
        sides.append(side if level == 0 else g.resize(side, size, classes))
    sides.reverse()  # d1 (finest) first, as U²-Net numbers them
    fused = g.conv(g.op("Concat", sides, axis=1), 6 * classes, classes, 1, relu=False)
    heads = [fused, *sides]
    outs = [g.op("Sigmoid", [h], f"d{i}") if sigmoid else g.rename(h, f"d{i}") for i, h in enumerate(heads)]
    return g.model(name, "input.1", size, [(o, classes) for o in outs], ir_version=6)


def u2net_like(size: int = 320, seed: int = 0) -> onnx.ModelProto:
    """U²-Net stand-in: seven [1,1,S,S] outputs after Sigmoid; output 0 (``d0``) is the fused mask."""
    return _u2net_graph(size, seed, classes=1, sigmoid=True, name="u2net_like")


def cloth_like(size: int = 768, seed: int = 3) -> onnx.ModelProto:
    """u2net_cloth_seg stand-in: output 0 is [1,4,S,S] class logits (background, upper, lower, full)."""
    return _u2net_graph(size, seed, classes=4, sigmoid=False, name="cloth_like")


def isnet_like(size: int = 1024, seed: int = 1) -> onnx.ModelProto:
    """IS-Net stand-in: stride-2 stem, six side outputs resized to S after Sigmoid; output 0 is the finest."""
    c = 8
    g = _Graph(seed, opset=11)
    stem = g.conv("input_image", 3, c, 3, stride=2)
    sizes = _halvings(size, 7)  # S, S/2 (stem), S/4 (stage 1) ... S/128 (stage 6)
    enc = [g.conv(g.maxpool(stem), c, c, 3)]
    for _ in range(5):
        enc.append(g.conv(g.maxpool(enc[-1]), c, c, 3))
    dec = enc[5]
    decs = [dec]
    for level in range(4, -1, -1):
        up = g.resize(dec, sizes[level + 2], c)
        dec = g.conv(g.op("Concat", [up, enc[level]], axis=1), 2 * c, c, 3)
        decs.append(dec)
    decs.reverse()  # d1 (finest, S/4) first
    outs = [
        g.op("Sigmoid", [g.resize(g.conv(feat, c, 1, 3, relu=False), size, 1)], f"d{i + 1}")
        for i, feat in enumerate(decs)
    ]
    return g.model("isnet_like", "input_image", size, [(o, 1) for o in outs], ir_version=6)


def _transformer_logits(g: _Graph, x: str, size: int, gelu: Gelu) -> str:
    """Patch embedding, two pre-norm attention blocks over S/32 tokens, and a conv decoder back to S."""
    lateral_c, dim = 8, 32
    lateral_size = size // 4
    side = lateral_size // 8
    lateral = g.conv(x, 3, lateral_c, 4, stride=4)  # Swin's 4x4/4 patch embedding, S/4
    tokens = g.conv(lateral, lateral_c, dim, 8, stride=8, relu=False)  # patch merging down to S/32
    seq = g.op(
        "Transpose",
        [g.op("Reshape", [tokens, g.const(np.array([1, dim, side * side], dtype=np.int64), "shape")])],
        perm=[0, 2, 1],
    )
    scale = g.const(np.array(1.0 / math.sqrt(dim), dtype=np.float32))
    for _ in range(2):
        y = g.layer_norm(seq, dim)
        q, k, v = (g.linear(y, dim, dim) for _ in range(3))
        scores = g.op("Mul", [g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 2, 1])]), scale])
        attn = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        seq = g.op("Add", [seq, g.linear(attn, dim, dim)])
        hidden = g.gelu(g.linear(g.layer_norm(seq, dim), dim, 2 * dim), gelu)
        seq = g.op("Add", [seq, g.linear(hidden, 2 * dim, dim)])
    grid = g.op(
        "Reshape",
        [
            g.op("Transpose", [seq], perm=[0, 2, 1]),
            g.const(np.array([1, dim, side, side], dtype=np.int64), "shape"),
        ],
    )
    narrow = g.conv(grid, dim, lateral_c, 1)
    up = g.resize(narrow, lateral_size, lateral_c, coords="align_corners")  # BiRefNet's align_corners=True
    dec = g.conv(g.op("Concat", [up, lateral], axis=1), 2 * lateral_c, lateral_c, 3)
    logits = g.conv(dec, lateral_c, 1, 3, relu=False)
    return g.resize(logits, size, 1, coords="align_corners")


def birefnet_like(size: int = 1024, seed: int = 2, gelu: Gelu = "erf") -> onnx.ModelProto:
    """BiRefNet stand-in: output 0 ``output_image`` is [1,1,S,S] **logits**; rembg applies the sigmoid."""
    g = _Graph(seed, opset=17 if gelu == "erf" else 20)
    out = g.rename(_transformer_logits(g, "input_image", size, gelu), "output_image")
    return g.model("birefnet_like", "input_image", size, [(out, 1)], ir_version=8 if gelu == "erf" else 9)


def birefnet_fp16_like() -> onnx.ModelProto:
    """birefnet-general-fp16 as rembg writes it: the BiRefNet stand-in in float16, float32 in and out."""
    from .fp16_models import to_fp16

    return to_fp16(birefnet_like(), keep_io_types=True)


def bria_like(size: int = 1024, seed: int = 4, gelu: Gelu = "erf") -> onnx.ModelProto:
    """BRIA RMBG-2.0 stand-in (BiRefNet body): output 0 ``alphas`` is already in [0, 1], as rembg expects."""
    g = _Graph(seed, opset=17 if gelu == "erf" else 20)
    out = g.op("Sigmoid", [_transformer_logits(g, "pixel_values", size, gelu)], "alphas")
    return g.model("bria_like", "pixel_values", size, [(out, 1)], ir_version=8 if gelu == "erf" else 9)


MaskRule = Literal["minmax", "argmax"]


@dataclass(frozen=True)
class Family:
    """How rembg 2.0.86 feeds one session and turns its output 0 into masks, and the file it loads.

    ``fname`` is the file ``download_models`` resolves under ``<home>/models/<name>/`` (or the legacy
    flat home). Custom sessions (``fname`` None) load ``model_path``
    from ``extras``, which must lie inside the rembg home or the legacy home.
    """

    name: str
    size: int
    mean: Triple
    std: Triple
    sigmoid: bool
    mask: MaskRule
    fname: str | None
    release: str | None
    build: Builder

    @property
    def custom(self) -> bool:
        return self.fname is None


_U2NETS = ("u2net", "u2netp", "u2net_human_seg", "silueta")
_HALF = (0.5, 0.5, 0.5)
_ONE = (1.0, 1.0, 1.0)
_BIREFNET_RELEASES = {
    "birefnet-general": "BiRefNet-general-epoch_244.onnx",
    "birefnet-general-lite": "BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx",
    "birefnet-portrait": "BiRefNet-portrait-epoch_150.onnx",
    "birefnet-dis": "BiRefNet-DIS-epoch_590.onnx",
    "birefnet-hrsod": "BiRefNet-HRSOD_DHU-epoch_115.onnx",
    "birefnet-cod": "BiRefNet-COD-epoch_125.onnx",
    "birefnet-massive": "BiRefNet-massive-TR_DIS5K_TR_TEs-epoch_420.onnx",
}


def _named(
    name: str, size: int, mean: Triple, std: Triple, sigmoid: bool, build: Builder, release: str | None = None
) -> Family:
    return Family(name, size, mean, std, sigmoid, "minmax", f"{name}.onnx", release or f"{name}.onnx", build)


def _custom(name: str, size: int, mean: Triple, std: Triple, build: Builder) -> Family:
    return Family(name, size, mean, std, False, "minmax", None, None, build)


def _families() -> dict[str, Family]:
    fams = [
        *(_named(n, 320, IMAGENET_MEAN, IMAGENET_STD, False, u2net_like) for n in _U2NETS),
        replace(
            _named("u2net_cloth_seg", 768, IMAGENET_MEAN, IMAGENET_STD, False, cloth_like), mask="argmax"
        ),
        _custom("u2net_custom", 320, IMAGENET_MEAN, IMAGENET_STD, u2net_like),
        _named("isnet-general-use", 1024, _HALF, _ONE, False, isnet_like),
        _named("isnet-anime", 1024, IMAGENET_MEAN, _ONE, False, isnet_like),
        _custom("dis_custom", 1024, _HALF, _ONE, isnet_like),
        *(
            _named(n, 1024, IMAGENET_MEAN, IMAGENET_STD, True, birefnet_like, release)
            for n, release in _BIREFNET_RELEASES.items()
        ),
        # rembg keeps its converted copy as <home>/models/birefnet-general-fp16/birefnet-general-fp16.onnx
        # and runs it as it is once there; the harness stores an FP16 file there, as rembg would.
        replace(
            _named("birefnet-general-fp16", 1024, IMAGENET_MEAN, IMAGENET_STD, True, birefnet_fp16_like),
            release=None,
        ),
        _named("bria-rmbg", 1024, IMAGENET_MEAN, IMAGENET_STD, False, bria_like, "bria-rmbg-2.0.onnx"),
        _custom("ben_custom", 1024, _HALF, _ONE, bria_like),
    ]
    return {f.name: f for f in fams}


FAMILIES: dict[str, Family] = _families()
