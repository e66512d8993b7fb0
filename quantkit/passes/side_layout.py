"""Keep one-channel Resizes out of onnxruntime's NHWC layout: the side outputs' upsampling.

Why: onnxruntime runs QLinearConv in NHWC and its transpose optimizer pushes the
layout Transposes through DequantizeLinear → Resize → QuantizeLinear, so every
Resize of the quantized model runs onnxruntime's NHWC bilinear kernel - a scalar
loop per output pixel over the channels. With one channel that kernel is about 6x
slower than the NCHW one: U²-Net's five side-output Resizes (one channel each,
10..160 → 320 pixels) took 1.0-1.25 ms each in the INT8 u2netp, 0.18 ms each
in NCHW, and ``Concat_1046`` after them becomes a plain NCHW concat as well.

What: a Resize of a ``[1, 1, h, w]`` tensor to a constant size becomes
``Reshape`` to ``[h, w]``, the same Resize in two dimensions, ``Reshape`` back
to ``[1, 1, H, W]``. The transpose optimizer cannot carry an NHWC Transpose
through the rank change, so the Resize stays in NCHW. (A no-op four-dimensional
Reshape does not work: onnxruntime removes it.) The Resizes sit between a
DequantizeLinear and a QuantizeLinear; the rewrite leaves the Q/DQ nodes alone
and only changes the layout the float Resize runs in, so the outputs are equal
bit for bit.

Measured on the default INT8 u2netp (2-core AVX2 EPYC, onnxruntime 1.31.1):
see :data:`MEASURED`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quantkit.graph.index import GraphIndex, attribute, copy_model
from quantkit.graph.opset import ai_onnx_opset
from quantkit.graph.shapes import tensor_dims

MEASURED = (
    "u2netp: 5 side Resizes; INT8 p50 0.555x -> 0.536x of FP32, with the tap split 0.529x"
    " (60 interleaved runs, 2 threads, same run); masks bit for bit"
)


@dataclass(frozen=True)
class SideLayoutReport:
    resizes: tuple[str, ...]  # Resize nodes now run in two dimensions (NCHW)
    label: str = "side resizes in NCHW"

    def summary(self) -> str:
        return ", ".join(self.resizes) if self.resizes else "no one-channel Resize to a constant size"

    def to_dict(self) -> dict[str, Any]:
        return {"resizes": list(self.resizes)}


@dataclass(frozen=True)
class SideLayout:
    name: str = "side_layout"

    def apply(self, model: onnx.ModelProto) -> tuple[onnx.ModelProto, SideLayoutReport]:
        rewritten, resizes = flatten_side_resizes(model)
        return rewritten, SideLayoutReport(resizes)


def flatten_side_resizes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, tuple[str, ...]]:
    """A copy of ``model`` whose one-channel Resizes run on two-dimensional tensors, and their names."""
    copy = copy_model(model)
    if ai_onnx_opset(copy) < 13:  # roi and scales optional, Squeeze/Unsqueeze axes as an input: opset 13
        return copy, ()
    index = GraphIndex.build(copy)
    dims = tensor_dims(copy)
    graph = copy.graph
    done: list[str] = []
    released: set[str] = set()
    new_nodes: list[onnx.NodeProto] = []
    axes = "quantkit_axes_n_c"
    for node in graph.node:
        sizes = _flat_sizes(node, index, dims)
        if sizes is None:
            new_nodes.append(node)
            continue
        source, original = node.input[0], node.output[0]
        flat_in, flat_out = f"{original}_quantkit_2d_in", f"{original}_quantkit_2d"
        graph.initializer.append(numpy_helper.from_array(sizes, f"{flat_out}_sizes"))
        released.update(name for name in node.input[1:] if name)
        label = node.name or original
        new_nodes.append(
            helper.make_node("Squeeze", [source, axes], [flat_in], name=f"{label}_quantkit_to2d")
        )
        node.input[:] = [flat_in, "", "", f"{flat_out}_sizes"]
        node.output[0] = flat_out
        new_nodes.append(node)
        new_nodes.append(
            helper.make_node("Unsqueeze", [flat_out, axes], [original], name=f"{label}_quantkit_to4d")
        )
        done.append(node.name)
    if done:
        graph.initializer.append(numpy_helper.from_array(np.array([0, 1], dtype=np.int64), axes))
        del graph.node[:]
        graph.node.extend(new_nodes)
        # roi/scales/sizes constants no other node reads would make onnxruntime warn at every load
        used = {name for n in graph.node for name in n.input} | index.graph_outputs
        kept = [init for init in graph.initializer if init.name not in released or init.name in used]
        del graph.initializer[:]
        graph.initializer.extend(kept)
    return copy, tuple(done)


def _flat_sizes(node: onnx.NodeProto, index: GraphIndex, dims: dict[str, list[int]]) -> np.ndarray | None:
    """The two-dimensional sizes of a Resize this pass rewrites; None for any node it leaves alone.

    Only Resizes to constant ``sizes`` [1, 1, H, W]: their output has batch 1 whatever the input, so
    squeezing the batch axis takes nothing away. A Resize by ``scales`` would also resize a batch of
    several images, which the two-dimensional one cannot.
    """
    if node.op_type != "Resize" or node.domain not in ("", "ai.onnx"):
        return None
    shape = dims.get(node.input[0], [])
    if len(shape) != 4 or shape[:2] != [1, 1]:  # batch and channels must be known to be 1
        return None
    if attribute(node, "coordinate_transformation_mode") == b"tf_crop_and_resize":  # reads roi per axis
        return None
    policy = attribute(node, "keep_aspect_ratio_policy", b"stretch")
    if attribute(node, "axes") is not None or policy != b"stretch":
        return None
    if len(node.input) < 4 or node.input[3] not in index.initializers:
        return None
    sizes = index.array(node.input[3]).astype(np.int64)
    return sizes[2:] if sizes.shape == (4,) and sizes[:2].tolist() == [1, 1] else None
