"""Stand-ins, built in code, for the rembg models whose weights this project does not have.

quantkit has to be tested at the scale of the models users actually run, but only
u2netp's weights (1.1 M parameters, 4.5 MB) are here. This script builds three
models from u2netp and writes them where the caller says (never into the repo):

``u2net.onnx`` - u2netp widened to the exact channel widths of U2NET (the 44 M
parameter, 176 MB u2net rembg serves) by function-preserving widening
(Net2WiderNet, Chen et al. 2016). A convolution gets more output channels by
replicating filters: new channel ``j`` copies old channel ``g(j)``, with
``g(j) = j`` for the old channels and a seeded random old channel for the rest.
Every consumer then reads each copy of channel ``c`` with its old input weights
divided by the number of copies of ``c``, so the sum is what it was. Relu,
MaxPool and Resize act per channel and pass a channel map through; a Concat's map
is its inputs' maps side by side; the two inputs of an RSU block's residual Add
must share one map, so the convolutions feeding an Add draw theirs together. At
zero noise the result is u2netp in u2net's shapes (43,981,069 parameters,
176.0 MB): output 0 agrees to 5.5e-5 (max |Δ| on 20 ECSSD photos). Replicated
filters would make quantization too easy (equal ranges, equal rounding), so every
Conv weight tensor then gets seeded noise of ``0.002 ×`` its own std, which keeps
the masks: IoU vs u2netp 0.994 mean / 0.980 min on 20 ECSSD photos (``0.02``:
0.938 / 0.606). It stands in for u2net, u2net_human_seg and silueta, which share
U2NET's architecture: the weight volume, the wide 1024-channel decoder
convolutions and their cost, with activations that come from trained weights.

``u2netp-1024.onnx`` - u2netp with a 1×3×1024×1024 input: activations at the
scale of rembg's 1024-input IS-Net (64-channel maps of 1024×1024 in the first
stage, 256 MB each) in a small model. Every Resize in u2netp's export takes its
``sizes`` from the runtime shape of the tensor it matches (PyTorch's
``F.upsample(size=tar.shape[2:])``), none a constant, so nothing but the declared
shapes has to change; the build checks this rather than assuming it. Its masks
are poor (IoU vs u2netp at 320: 0.21 mean, many near-empty): weights trained at
320 see objects 3.2 times larger than they learned. Compare its INT8 masks with
its own FP32 ones, and expect that agreement to be noisier on such soft masks.

``isnet-general-use.onnx`` - the architecture of rembg's isnet-general-use,
ISNetDIS from ``IS-Net/models/isnet.py`` of xuebinqin/DIS, built node by node as
PyTorch 1.9 exports it (opset 11): a 3×3 stride-2 convolution straight on the
image with no batch norm and no ReLU (``pool_in`` is defined there but its call
is commented out, so stage 1 runs at 512×512 with 64 channels), U2NET's RSU
stages and widths, and no fusion convolution - output 0 is
``Sigmoid(Resize(side1))``, each side output resized to the input. Neither other
stand-in has these: the one strided convolution, a Conv whose signed output feeds
another Conv directly, a mask whose last float op is a Resize, 44 M parameters
together with 1024-scale activations, and IS-Net's preprocessing (mean 0.5,
std 1). Its weights are not random: random weights give activation statistics
nothing like a trained network's, so INT8 accuracy measured on them would mean
nothing. The stem is a centre-tap convolution that copies the image into 64
channels and folds in the change from IS-Net's normalisation to U²-Net's; the
stages are the u2net stand-in's (stage 1's input convolution widened from the 3
image channels to the stem's 64 by the same rule). So it computes the u2net
stand-in's side-1 mask of the image subsampled to 512×512: IoU vs u2netp at 512
0.922 mean, vs u2netp at 320 0.782 (u2netp itself at 512 scores 0.781 there).

    python benchmarks/standins.py --out DIR [--which u2net,1024,isnet] [--noise 0.002] [--seed 0]

prints name, parameters, size, build time and those checks per model; about
2.5 minutes on 2 cores, 0.8 GB peak RSS to build the large ones and 3.7 GB in
all (running u2netp at 1024 with onnxruntime is the peak).

Widths (in_ch, mid_ch, out_ch) are from ``model/u2net.py`` of xuebinqin/U-2-Net
(classes U2NETP and U2NET) and ``IS-Net/models/isnet.py`` of xuebinqin/DIS
(ISNetDIS).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from _common import CALIB, U2NETP, ecssd
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from quantkit.accuracy.agreement import agreement
from quantkit.model.family import Activation, get_family
from quantkit.model.images import list_images, open_image
from quantkit.model.preprocess import mask_array, postprocess, preprocess
from quantkit.model.spec import ModelSpec, read_spec, spec_from_model
from quantkit.runtime.base import RuntimeSettings
from quantkit.runtime.ort import ort_session

Widths = tuple[int, int, int]  # (in_ch, mid_ch, out_ch) of one RSU block

# Stages in forward order (stage1..6, stage5d..1d), as in U2NETP / U2NET (model/u2net.py, xuebinqin/U-2-Net).
BLOCKS = ("RSU7", "RSU6", "RSU5", "RSU4", "RSU4F", "RSU4F", "RSU4F", "RSU4", "RSU5", "RSU6", "RSU7")
U2NETP_WIDTHS: tuple[Widths, ...] = (
    (3, 16, 64),
    (64, 16, 64),
    (64, 16, 64),
    (64, 16, 64),
    (64, 16, 64),
    (64, 16, 64),
    (128, 16, 64),
    (128, 16, 64),
    (128, 16, 64),
    (128, 16, 64),
    (128, 16, 64),
)
U2NET_WIDTHS: tuple[Widths, ...] = (
    (3, 32, 64),
    (64, 32, 128),
    (128, 64, 256),
    (256, 128, 512),
    (512, 256, 512),
    (512, 256, 512),
    (1024, 256, 512),
    (1024, 128, 256),
    (512, 64, 128),
    (256, 32, 64),
    (128, 16, 64),
)
# ISNetDIS (IS-Net/models/isnet.py, xuebinqin/DIS): U2NET's stages, but stage 1 reads the 64-channel stem.
ISNET_WIDTHS: tuple[Widths, ...] = ((64, 32, 64), *U2NET_WIDTHS[1:])
# Input channels of side1..side6 (each a 3×3 conv to one channel); outconv fuses the six (1×1, 6 -> 1).
U2NETP_SIDES = (64, 64, 64, 64, 64, 64)
U2NET_SIDES = (64, 64, 128, 256, 512, 512)

PASS_THROUGH = frozenset({"Relu", "MaxPool", "Resize", "Sigmoid"})  # per-channel ops: the map passes
MAPS_STREAM, NOISE_STREAM, STEM_STREAM = 0, 1, 2  # independent random streams of one seed
ISNET_SIZE = 1024  # rembg's isnet-general-use input; its stem halves it
FILE_NAMES = {"u2net": "u2net.onnx", "1024": "u2netp-1024.onnx", "isnet": "isnet-general-use.onnx"}


# --- widths ---------------------------------------------------------------------------------------------


def rsu_conv_shapes(block: str, widths: Widths) -> list[tuple[int, int]]:
    """(in, out) channels of an RSU block's convolutions in forward (= export) order.

    RSU-L: rebnconvin, rebnconv1..L (encoder, the last dilated), rebnconv(L-1)d..1d
    (decoder, each reading a Concat of two mid_ch maps). RSU4F has RSU4's widths.
    """
    height = int(block[3])
    cin, mid, out = widths
    return (
        [(cin, out), (out, mid)]
        + [(mid, mid)] * (height - 1)
        + [(2 * mid, mid)] * (height - 2)
        + [(2 * mid, out)]
    )


def conv_shapes(widths: Sequence[Widths], sides: Sequence[int]) -> list[tuple[int, int]]:
    """(in, out) channels of every convolution of a U²-Net, stages then side1..6 then outconv."""
    shapes = [s for block, w in zip(BLOCKS, widths, strict=True) for s in rsu_conv_shapes(block, w)]
    return shapes + [(c, 1) for c in sides] + [(len(sides), 1)]


def convs(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "Conv"]


def check_conv_shapes(
    model: onnx.ModelProto, arrays: dict[str, np.ndarray], expected: list[tuple[int, int]]
) -> None:
    """Raise unless the model's convolutions have exactly the ``expected`` (in, out) channels."""
    found = [tuple(arrays[n.input[1]].shape[1::-1]) for n in convs(model)]
    if found != expected:
        first = next(
            (k for k, (f, e) in enumerate(zip(found, expected, strict=False)) if f != e), len(expected)
        )
        raise ValueError(f"conv channels differ from the source's at conv #{first} ({len(found)} convs)")


def param_count(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(i.dims)) for i in model.graph.initializer)


# --- function-preserving widening -----------------------------------------------------------------------


def wider_map(old: int, new: int, rng: np.random.Generator) -> np.ndarray:
    """Net2WiderNet's g: new channel j copies old channel g(j); j < old keeps its own, the rest draw."""
    if new < old:
        raise ValueError(f"cannot narrow {old} channels to {new}")
    return np.concatenate([np.arange(old), rng.integers(0, old, new - old)])


def _source_conv(producer: dict[str, onnx.NodeProto], tensor: str) -> onnx.NodeProto:
    node = producer[tensor]
    while node.op_type in PASS_THROUGH:
        node = producer[node.input[0]]
    if node.op_type != "Conv":
        raise ValueError(f"residual Add input {tensor} does not come from a Conv (via {node.op_type})")
    return node


def _tied(model: onnx.ModelProto) -> dict[str, str]:
    """Conv name -> the conv whose channel map it must share (both feed one residual Add)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    leader: dict[str, str] = {}

    def find(name: str) -> str:
        while leader.get(name, name) != name:
            name = leader[name]
        return name

    for node in model.graph.node:
        if node.op_type == "Add":
            first, *rest = (find(_source_conv(producer, i).name) for i in node.input)
            for other in rest:
                leader[other] = first
    return {n.name: find(n.name) for n in convs(model)}


def output_maps(
    model: onnx.ModelProto, widths: dict[str, int], rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """A channel map for every convolution named in ``widths`` (new output channels), ties shared."""
    inits = {i.name: i for i in model.graph.initializer}
    tied = _tied(model)
    maps: dict[str, np.ndarray] = {}
    for node in convs(model):
        if node.name not in widths:
            continue
        old, new = int(inits[node.input[1]].dims[0]), widths[node.name]
        lead = tied[node.name]
        if lead not in maps:
            maps[lead] = wider_map(old, new, rng)
        if len(maps[lead]) != new or int(maps[lead].max()) + 1 != old:
            raise ValueError(f"{node.name} feeds a residual Add with a conv of another width")
        maps[node.name] = maps[lead]
    return maps


def widen_conv(
    weight: np.ndarray, bias: np.ndarray, in_map: np.ndarray, out_map: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Replicate filters along ``out_map``; read input copies along ``in_map``, split by copy count."""
    if weight.shape[1] != int(in_map.max()) + 1:
        raise ValueError(f"input map covers {int(in_map.max()) + 1} channels, weight has {weight.shape[1]}")
    copies = np.bincount(in_map, minlength=weight.shape[1]).astype(np.float32)
    wide = weight[out_map][:, in_map] / copies[in_map][None, :, None, None]
    return wide.astype(np.float32), bias[out_map].astype(np.float32)


def widened_arrays(
    model: onnx.ModelProto,
    out_maps: dict[str, np.ndarray],
    input_maps: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """New Conv weights and biases (by initializer name) that make ``model`` wider, same function.

    Each tensor's map says which old channel each of its new channels copies. Every
    map is onto (it starts with the old channels in order), so ``max + 1`` is the
    old width - what a Concat needs to offset its second input's map. Graph inputs
    keep their channels unless ``input_maps`` says otherwise.
    """
    inits = {i.name: i for i in model.graph.initializer}
    maps: dict[str, np.ndarray] = {
        i.name: np.arange(i.type.tensor_type.shape.dim[1].dim_value) for i in model.graph.input
    }
    maps.update(input_maps or {})
    arrays: dict[str, np.ndarray] = {}
    for node in model.graph.node:
        if not any(i in maps for i in node.input) or node.op_type == "Shape":
            continue  # shape arithmetic, or the widened C read at run time by Resize's size
        if node.op_type == "Conv":
            if int(next((a.i for a in node.attribute if a.name == "group"), 1)) != 1:
                raise ValueError(f"{node.name}: grouped convolutions are not widened")
            weight, bias = (numpy_helper.to_array(inits[n]) for n in node.input[1:3])
            out_map = out_maps.get(node.name, np.arange(weight.shape[0]))
            wide = widen_conv(weight, bias, maps[node.input[0]], out_map)
            arrays.update(zip(node.input[1:3], wide, strict=True))
            maps[node.output[0]] = out_map
        elif node.op_type in PASS_THROUGH:
            maps[node.output[0]] = maps[node.input[0]]
        elif node.op_type == "Add":
            if any(not np.array_equal(maps[i], maps[node.input[0]]) for i in node.input):
                raise ValueError(f"{node.name}: its inputs have different channel maps")
            maps[node.output[0]] = maps[node.input[0]]
        elif node.op_type == "Concat":
            offsets = np.cumsum([0] + [int(maps[i].max()) + 1 for i in node.input[:-1]])
            maps[node.output[0]] = np.concatenate(
                [maps[i] + o for i, o in zip(node.input, offsets, strict=True)]
            )
        else:
            raise ValueError(f"{node.name}: cannot carry a channel map through {node.op_type}")
    for out in model.graph.output:
        if out.name in maps and not np.array_equal(maps[out.name], np.arange(int(maps[out.name].max()) + 1)):
            raise ValueError(f"graph output {out.name} would change width")
    return arrays


def with_arrays(model: onnx.ModelProto, arrays: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of ``model`` with the initializers named in ``arrays`` replaced (``arrays`` is emptied)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for init in out.graph.initializer:
        if init.name in arrays:
            init.CopyFrom(numpy_helper.from_array(arrays.pop(init.name), init.name))
    return out


def add_noise(model: onnx.ModelProto, noise: float, seed: int) -> None:
    """In place: every Conv weight tensor += noise × its std × N(0, 1), seeded; biases stay.

    Biases are left alone because folded batch norms make them offsets of up to ~230
    that later biases cancel: the same relative noise on biases too takes u2netp
    itself to IoU 0.85 mean / 0.28 min at 0.002 (weights only: 0.991 / 0.973).
    """
    if noise == 0:
        return
    rng = np.random.default_rng([seed, NOISE_STREAM])
    names = {node.input[1] for node in convs(model)}
    for init in model.graph.initializer:
        if init.name in names:
            value = numpy_helper.to_array(init)
            value = value + noise * value.std() * rng.standard_normal(value.shape, dtype=np.float32)
            init.CopyFrom(numpy_helper.from_array(value.astype(np.float32), init.name))


# --- stand-in 1: u2net ----------------------------------------------------------------------------------


def u2net_arrays(
    u2netp: onnx.ModelProto, seed: int = 0, image_map: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """u2netp's Conv weights widened to U2NET's widths (zero noise), checked against both sources.

    ``image_map`` widens the image input too (the IS-Net stem's 64 copies of the 3 channels),
    and then stage 1 must have ISNetDIS's widths.
    """
    u2netp_convs = convs(u2netp)
    inits = {i.name: numpy_helper.to_array(i) for i in u2netp.graph.initializer}
    check_conv_shapes(u2netp, inits, conv_shapes(U2NETP_WIDTHS, U2NETP_SIDES))
    target = conv_shapes(U2NET_WIDTHS if image_map is None else ISNET_WIDTHS, U2NET_SIDES)
    widths = {n.name: out for n, (_, out) in zip(u2netp_convs, target, strict=True)}
    maps = output_maps(u2netp, widths, np.random.default_rng([seed, MAPS_STREAM]))
    image = u2netp.graph.input[0].name
    arrays = widened_arrays(u2netp, maps, {image: image_map} if image_map is not None else None)
    check_conv_shapes(u2netp, arrays, target)
    return arrays


def build_u2net_standin(u2netp: onnx.ModelProto, noise: float = 0.002, seed: int = 0) -> onnx.ModelProto:
    """u2netp widened to U2NET's exact widths (44.0 M parameters), then ``noise``-perturbed."""
    model = with_arrays(u2netp, u2net_arrays(u2netp, seed))
    add_noise(model, noise, seed)
    return model


# --- stand-in 2: u2netp at 1024 -------------------------------------------------------------------------


def _check_resizes_follow_input(model: onnx.ModelProto) -> None:
    """Raise if a Resize has constant ``sizes``: those would stay at the old input size."""
    constants = {i.name for i in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    for node in model.graph.node:
        if node.op_type == "Resize" and len(node.input) > 3 and node.input[3] in constants:
            raise ValueError(f"{node.name} resizes to constant sizes; they would need rescaling")


def _set_dims(value: onnx.ValueInfoProto, dims: Sequence[int]) -> None:
    shape = value.type.tensor_type.shape
    del shape.dim[:]
    for d in dims:
        shape.dim.add().dim_value = d


def build_u2netp_1024(u2netp: onnx.ModelProto, size: int = 1024) -> onnx.ModelProto:
    """u2netp declared at 1×3×size×size in and 1×1×size×size out; every Resize follows at run time."""
    _check_resizes_follow_input(u2netp)
    model = onnx.ModelProto()
    model.CopyFrom(u2netp)
    _set_dims(model.graph.input[0], (1, 3, size, size))
    for out in model.graph.output:
        _set_dims(out, (1, 1, size, size))
    return model


# --- stand-in 3: IS-Net ---------------------------------------------------------------------------------


class _Graph:
    """Nodes and tensors named the way PyTorch 1.9's exporter names them (``Conv_0``, ``"801"``)."""

    def __init__(self, first_tensor: int) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.counter = first_tensor

    def tensor(self) -> str:
        self.counter += 1
        return str(self.counter)

    def op(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        out = self.tensor()
        name = f"{op_type}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=name, **attrs))
        return out

    def const(self, value: np.ndarray) -> str:
        return self.op("Constant", [], value=numpy_helper.from_array(value))

    def weights(self, weight: np.ndarray, bias: np.ndarray, names: tuple[str, str] | None) -> list[str]:
        names = names or (self.tensor(), self.tensor())  # folded batch norms get numbers, like the export
        self.initializers += [
            numpy_helper.from_array(a, n) for a, n in zip((weight, bias), names, strict=True)
        ]
        return list(names)

    def conv(
        self,
        x: str,
        wb: tuple[np.ndarray, np.ndarray],
        *,
        dilation: int = 1,
        stride: int = 1,
        names: tuple[str, str] | None = None,
    ) -> str:
        k = wb[0].shape[-1]
        pad = dilation * (k // 2)
        return self.op(
            "Conv",
            [x, *self.weights(*wb, names)],
            dilations=[dilation] * 2,
            group=1,
            kernel_shape=[k, k],
            pads=[pad] * 4,
            strides=[stride] * 2,
        )

    def rebnconv(self, x: str, wb: tuple[np.ndarray, np.ndarray], dilation: int = 1) -> str:
        return self.op("Relu", [self.conv(x, wb, dilation=dilation)])

    def maxpool(self, x: str) -> str:
        return self.op("MaxPool", [x], ceil_mode=1, kernel_shape=[2, 2], pads=[0] * 4, strides=[2, 2])

    def upsample_like(self, src: str, tar: str) -> str:
        """``F.upsample(src, size=tar.shape[2:], mode='bilinear')`` as opset 11 exports it."""
        hw = [
            self.op(
                "Unsqueeze",
                [self.op("Gather", [self.op("Shape", [tar]), self.const(np.array(d))], axis=0)],
                axes=[0],
            )
            for d in (2, 3)
        ]
        spatial = self.op("Concat", hw, axis=0)
        starts, ends = (self.const(np.array([v])) for v in (0, 2))
        batch_channels = self.op("Slice", [self.op("Shape", [src]), starts, ends, self.const(np.array([0]))])
        sizes = self.op("Concat", [batch_channels, self.op("Cast", [spatial], to=TensorProto.INT64)], axis=0)
        empty = [self.const(np.array([], np.float32)) for _ in range(2)]
        return self.op(
            "Resize",
            [src, *empty, sizes],
            coordinate_transformation_mode="pytorch_half_pixel",
            cubic_coeff_a=-0.75,
            mode="linear",
            nearest_mode="floor",
        )


def _rsu(g: _Graph, x: str, block: str, weights: Iterator[tuple[np.ndarray, np.ndarray]]) -> str:
    """RSU7..RSU4 (pool between encoder levels, last level dilated 2) or RSU4F (dilations 1, 2, 4, 8)."""
    height, dilated = int(block[3]), block.endswith("F")
    hxin = g.rebnconv(x, next(weights))
    skips = [g.rebnconv(hxin, next(weights))]
    for level in range(1, height - 1):
        below = skips[-1] if dilated else g.maxpool(skips[-1])
        skips.append(g.rebnconv(below, next(weights), 2**level if dilated else 1))
    d = g.rebnconv(skips[-1], next(weights), 2 ** (height - 1) if dilated else 2)
    for level in reversed(range(len(skips))):
        if not dilated and level < len(skips) - 1:
            d = g.upsample_like(d, skips[level])
        d = g.rebnconv(g.op("Concat", [d, skips[level]], axis=1), next(weights), 2**level if dilated else 1)
    return g.op("Add", [d, hxin])


def _isnet_graph(
    size: int, stem: tuple[np.ndarray, np.ndarray], weights: Iterator[tuple[np.ndarray, np.ndarray]]
) -> onnx.ModelProto:
    """ISNetDIS.forward, node for node: conv_in, stage1..6, stage5d..1d, side1..6 each resized to x."""
    image = "input.1"
    g = _Graph(first_tensor=800)  # u2netp's export numbers its first computed tensor 801 too
    encoder = [g.conv(image, stem, stride=2, names=("conv_in.weight", "conv_in.bias"))]
    for k, block in enumerate(BLOCKS[:6]):
        encoder.append(_rsu(g, encoder[-1] if k == 0 else g.maxpool(encoder[-1]), block, weights))
    decoder = [encoder[-1]]  # hx6, then hx5d .. hx1d
    for block, skip in zip(BLOCKS[6:], reversed(encoder[1:-1]), strict=True):
        up = g.upsample_like(decoder[-1], skip)
        decoder.append(_rsu(g, g.op("Concat", [up, skip], axis=1), block, weights))
    logits = [
        g.upsample_like(g.conv(feature, next(weights), names=(f"side{k}.weight", f"side{k}.bias")), image)
        for k, feature in enumerate(reversed(decoder), start=1)
    ]
    masks = [g.op("Sigmoid", [d]) for d in logits]
    if next(weights, None) is not None:
        raise ValueError("more convolution weights than ISNetDIS has convolutions")
    graph = helper.make_graph(
        g.nodes,
        "main_graph",
        [helper.make_tensor_value_info(image, TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info(m, TensorProto.FLOAT, [1, 1, size, size]) for m in masks],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)], producer_name="pytorch")
    model.producer_version, model.ir_version = "1.9", 6
    model.graph.initializer.extend(g.initializers)
    return model


def _stem(image_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """conv_in: channel k = image channel image_map[k], renormalised from IS-Net's to U²-Net's statistics.

    rembg feeds IS-Net ``x = p - 0.5`` and U²-Net ``(p - mean) / std``, so the centre tap is
    ``1 / std`` and the bias ``(0.5 - mean) / std``; stride 2 samples every other pixel.
    """
    isnet, u2net = get_family("isnet-general-use"), get_family("u2net")
    mean, std, isnet_mean = (np.asarray(v, np.float64) for v in (u2net.mean, u2net.std, isnet.mean))
    weight = np.zeros((len(image_map), 3, 3, 3), np.float32)
    weight[np.arange(len(image_map)), image_map, 1, 1] = 1 / std[image_map]
    bias = ((isnet_mean - mean) / std)[image_map].astype(np.float32)
    return weight, bias


def build_isnet_standin(
    u2netp: onnx.ModelProto, noise: float = 0.002, seed: int = 0, size: int = ISNET_SIZE
) -> onnx.ModelProto:
    """ISNetDIS's graph at ``size`` carrying the u2net stand-in's weights behind a copying stem."""
    stem_channels = ISNET_WIDTHS[0][0]
    image_map = wider_map(3, stem_channels, np.random.default_rng([seed, STEM_STREAM]))
    arrays = u2net_arrays(u2netp, seed, image_map)
    names = [tuple(n.input[1:3]) for n in convs(u2netp)[:-1]]  # ISNetDIS has no outconv
    weights = ((arrays.pop(w), arrays.pop(b)) for w, b in names)
    model = _isnet_graph(size, _stem(image_map), weights)
    onnx.checker.check_model(model)
    add_noise(model, noise, seed)
    return model


# --- verification and the command line -----------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """How a stand-in's masks compare with a reference model's on the same photos, as rembg cuts them."""

    photos: int
    iou_mean: float
    iou_min: float
    max_abs: float | None  # of raw output 0, where its shape matches u2netp's

    def __str__(self) -> str:
        diff = f", max|Δ| {self.max_abs:.1e}" if self.max_abs is not None else ""
        return f"IoU {self.iou_mean:.4f} mean / {self.iou_min:.4f} min ({self.photos} photos){diff}"


def first_outputs(model: Path | bytes, spec: ModelSpec, images: Sequence[Image.Image]) -> list[np.ndarray]:
    """Output 0 for each photo, preprocessed as rembg does for ``spec``'s model family.

    Memory patterns off: with them u2netp at 1024 peaks at 5.7 GB RSS, without at 3.3 GB.
    """
    session = ort_session(model, RuntimeSettings(mem_pattern=False))
    return [np.asarray(session.run(None, {spec.input_name: preprocess(image, spec)})[0]) for image in images]


def verify(
    reference: Sequence[np.ndarray], outputs: Sequence[np.ndarray], images: Sequence[Image.Image]
) -> Verification:
    ious = [
        agreement(
            mask_array(postprocess(r, im.size, Activation.NONE)),
            mask_array(postprocess(o, im.size, Activation.NONE)),
        ).iou
        for r, o, im in zip(reference, outputs, images, strict=True)
    ]
    same = all(r.shape == o.shape for r, o in zip(reference, outputs, strict=True))
    max_abs = (
        max(float(np.abs(r - o).max()) for r, o in zip(reference, outputs, strict=True)) if same else None
    )
    return Verification(len(ious), float(np.mean(ious)), float(np.min(ious)), max_abs)


def load_photos(count: int) -> list[Image.Image]:
    """The first ``count`` ECSSD photos (none of them calibration photos), else the bundled ones."""
    data = ecssd(None)
    return [open_image(p) for p in list_images(data / "images" if data else CALIB, limit=count)]


def save_atomically(model: onnx.ModelProto, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    onnx.save_model(model, str(tmp))
    os.replace(tmp, path)


@dataclass(frozen=True)
class Row:
    name: str
    params: int
    size_bytes: int
    seconds: float
    verification: str


BUILDERS: dict[str, Callable[[onnx.ModelProto, float, int], onnx.ModelProto]] = {
    "u2net": build_u2net_standin,
    "1024": lambda u2netp, noise, seed: build_u2netp_1024(u2netp),
    "isnet": build_isnet_standin,
}


def check_exact(
    u2netp: onnx.ModelProto, seed: int, photos: Sequence[Image.Image], reference: Sequence[np.ndarray]
) -> str:
    """The u2net stand-in at zero noise against u2netp: the widening alone, which must be exact."""
    blob = with_arrays(u2netp, u2net_arrays(u2netp, seed)).SerializeToString()
    exact = verify(reference, first_outputs(blob, read_spec(U2NETP), photos), photos)
    return f"at zero noise: max|Δ| {exact.max_abs:.1e}, IoU {exact.iou_min:.4f} min ({exact.photos} photos)"


def u2netp_at(u2netp: onnx.ModelProto, size: int, photos: Sequence[Image.Image]) -> list[np.ndarray]:
    """u2netp's output 0 with a size×size input: what the IS-Net stand-in computes at half its size."""
    model = build_u2netp_1024(u2netp, size)
    return first_outputs(model.SerializeToString(), spec_from_model(model, U2NETP), photos)


def make(
    which: str,
    u2netp: onnx.ModelProto,
    args: argparse.Namespace,
    photos: Sequence[Image.Image],
    reference: Sequence[np.ndarray],
) -> Row:
    """Build one stand-in, write it, and compare its masks with u2netp's (the u2net one at zero noise too)."""
    checks = [check_exact(u2netp, args.seed, photos[:2], reference[:2])] if which == "u2net" else []
    started = time.monotonic()
    model = BUILDERS[which](u2netp, args.noise, args.seed)
    seconds = time.monotonic() - started
    params = param_count(model)
    path = args.out / FILE_NAMES[which]
    save_atomically(model, path)
    del model  # the session below loads its own copy: one model in memory at a time
    outputs = first_outputs(path, read_spec(path), photos)
    checks.append(f"vs u2netp: {verify(reference, outputs, photos)}")
    if which == "isnet":
        at_half = u2netp_at(u2netp, ISNET_SIZE // 2, photos)
        checks.append(f"vs u2netp at {ISNET_SIZE // 2}: {verify(at_half, outputs, photos)}")
    return Row(path.name, params, path.stat().st_size, seconds, "; ".join(checks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the models to")
    parser.add_argument("--which", default="u2net,1024,isnet", help="comma-separated: u2net, 1024, isnet")
    parser.add_argument("--noise", type=float, default=0.002, help="relative to each weight tensor's std")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--photos", type=int, default=20, help="photos the masks are compared on")
    args = parser.parse_args()
    which = [w.strip() for w in args.which.split(",") if w.strip()]
    unknown = sorted(set(which) - set(FILE_NAMES))
    if unknown:
        parser.error(f"unknown stand-in(s) {', '.join(unknown)}; choose from {', '.join(FILE_NAMES)}")
    args.out.mkdir(parents=True, exist_ok=True)
    u2netp = onnx.load(str(U2NETP))
    photos = load_photos(args.photos)
    reference = first_outputs(U2NETP, read_spec(U2NETP), photos)
    print(f"{'model':<24} {'params':>12} {'size':>10} {'build':>7}  verification")
    for w in which:
        row = make(w, u2netp, args, photos, reference)
        print(
            f"{row.name:<24} {row.params:>12,} {row.size_bytes / 1e6:>8.1f} MB {row.seconds:>6.1f}s",
            f" {row.verification}",
            flush=True,
        )


if __name__ == "__main__":
    main()
