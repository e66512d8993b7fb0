"""What a model expects and returns, read from the ONNX graph itself.

rembg hard-codes the input size and mean/std per session class; quantkit reads
the input name, layout and size from the graph and takes only what the graph
cannot say (mean/std, the output activation, the size of a dynamic input) from
the model's family (:mod:`quantkit.model.family`). A model whose input is not one
3-channel image, or whose mask output is not an image, is refused here, once, so
no later stage has to guess.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path

import onnx

from quantkit.errors import QuantkitError
from quantkit.files.ownership import FAMILY_KEY
from quantkit.model.family import RGB, Activation, Detection, Family, detect

# Ops only a quantized graph contains; quantizing one again spins for minutes in onnxruntime.
QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "ConvInteger",
        "MatMulInteger",
        "QLinearConv",
        "QLinearMatMul",
        "QLinearAdd",
        "QLinearMul",
        "QLinearConcat",
        "QLinearSigmoid",
        "QLinearLeakyRelu",
        "QLinearAveragePool",
        "QLinearGlobalAveragePool",
    }
)
_INTEGER_TYPES = frozenset(
    {onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT4, onnx.TensorProto.UINT4}
)
# An FP16 export may keep float32 inputs (onnxconverter-common's keep_io_types) or not; runners
# cast the preprocessed float32 photo to whichever the model declares.
_FLOAT16 = onnx.TensorProto.FLOAT16
_IMAGE_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16})
ATTENTION_OPS = frozenset({"Softmax", "LayerNormalization", "Attention", "MultiHeadAttention"})


@dataclass(frozen=True)
class ModelSpec:
    """Everything preprocessing and inference need to know about one model file."""

    path: Path
    input_name: str
    height: int
    width: int
    dynamic_size: bool  # the graph leaves H/W open; the family's size is fed
    detection: Detection
    opset: int
    quantized: bool  # the graph already holds integer weights or quantization ops
    fp16: bool = False  # weights stored (and computed) in float16: quantize works on its FP32 upcast

    @property
    def family(self) -> Family:
        return self.detection.family

    @property
    def precision(self) -> str:
        """What the file stores: 'int8' (quantized), 'fp16' or 'fp32'."""
        return "int8" if self.quantized else "fp16" if self.fp16 else "fp32"

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the order PIL's ``resize`` takes."""
        return (self.width, self.height)

    @property
    def mean(self) -> RGB:
        return self.family.mean

    @property
    def std(self) -> RGB:
        return self.family.std

    @property
    def activation(self) -> Activation:
        return self.family.activation


def load_model(path: Path) -> onnx.ModelProto:
    """Load an ONNX file, turning every way it can be unusable into one clear line."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise QuantkitError(f"model {path}: too many levels of symbolic links") from exc
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise QuantkitError(f"model {path} does not exist") from exc
        raise QuantkitError(f"model {path}: {exc.strerror}") from exc
    if not path.is_file():
        raise QuantkitError(f"model {path} is not a file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises several unrelated types
        raise QuantkitError(f"model {path} is not a readable ONNX file ({type(exc).__name__})") from exc
    if not model.graph.node or not model.opset_import:
        raise QuantkitError(f"model {path} is not a readable ONNX file (empty graph)")
    _check_runtime_reads(model, path)
    return model


# How onnxruntime words the limit a model is over, most telling first.
_RUNTIME_LIMITS = (
    r"max supported IR version: \d+",
    r"support for domain ai\.onnx is till opset \d+",
    r"[Uu]nsupported model IR version: \d+",
    r"[Oo]pset \d+ is under development",
)


def _check_runtime_reads(model: onnx.ModelProto, path: Path) -> None:
    """Refuse now, in one line, a model stamped with an IR version or opset onnxruntime cannot load.

    Asked of onnxruntime itself, on a one-node model stamped like ``model`` (milliseconds,
    whatever the model's size), so the answer is the installed runtime's; otherwise the
    first to find out is a pass deep in quantization, after onnxruntime logged its own
    lines and a traceback.
    """
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - a dependency; the session will say it
        return
    opsets = [o for o in model.opset_import if o.domain in ("", "ai.onnx")]
    if not opsets:
        return
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "quantkit_probe",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    probe = onnx.helper.make_model(graph, opset_imports=opsets)
    probe.ir_version = model.ir_version
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: the one line below says it all
    try:
        ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        text = " ".join(str(exc).split())
        known = (re.search(pattern, text) for pattern in _RUNTIME_LIMITS)
        reason = next((m.group(0) for m in known if m), text[-160:])
        opset = max(o.version for o in opsets)
        raise QuantkitError(
            f"model {path} has IR version {model.ir_version} and opset {opset}, which onnxruntime "
            f"{ort.__version__} cannot load ({reason}); export it for an older onnx, or upgrade onnxruntime"
        ) from exc


def is_fp16(model: onnx.ModelProto) -> bool:
    """Whether ``model`` stores weights or computes in float16 (anywhere in its main graph)."""
    if any(i.data_type == _FLOAT16 for i in model.graph.initializer):
        return True
    for node in model.graph.node:
        if node.op_type == "Cast" and any(a.name == "to" and a.i == _FLOAT16 for a in node.attribute):
            return True
        if node.op_type == "Constant" and any(
            a.name == "value" and a.t.data_type == _FLOAT16 for a in node.attribute
        ):
            return True
    values = [*model.graph.input, *model.graph.output, *model.graph.value_info]
    return any(v.type.tensor_type.elem_type == _FLOAT16 for v in values)


def _dim(d: onnx.TensorShapeProto.Dimension) -> int | None:
    return d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None


def quantized_ops(model: onnx.ModelProto) -> list[str]:
    """Why ``model`` counts as already quantized (empty if it does not)."""
    found = sorted({n.op_type for n in model.graph.node if n.op_type in QUANTIZED_OPS})
    if not found and any(i.data_type in _INTEGER_TYPES and len(i.dims) >= 2 for i in model.graph.initializer):
        found = ["8-bit integer weights"]
    return found


def read_spec(path: Path, family: str | None = None) -> ModelSpec:
    """Read and check a model's image input and mask output."""
    return spec_from_model(load_model(path), path, family)


def spec_from_model(model: onnx.ModelProto, path: Path, family: str | None = None) -> ModelSpec:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise QuantkitError(
            f"model {path} has {len(inputs)} inputs; a background-removal model has one image"
        )
    value = inputs[0]
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type") or tensor.elem_type not in _IMAGE_TYPES:
        raise QuantkitError(f"model {path}: input '{value.name}' is not a float32 or float16 tensor")
    dims = list(tensor.shape.dim)
    if len(dims) != 4:
        raise QuantkitError(
            f"model {path}: input '{value.name}' has rank {len(dims)}, "
            "expected an NCHW image batch [1, 3, H, W]"
        )
    batch, channels, height, width = (_dim(d) for d in dims)
    if channels != 3:
        raise QuantkitError(
            f"model {path}: input '{value.name}' has {channels or 'a dynamic number of'} "
            "channels, expected a 3-channel (RGB) image in NCHW layout"
        )
    if batch not in (None, 1):
        raise QuantkitError(f"model {path}: input '{value.name}' has fixed batch {batch}, expected 1")
    ops = {n.op_type for n in model.graph.node}
    recorded = next((p.value for p in model.metadata_props if p.key == FAMILY_KEY), None)
    detection = detect(path, height if height == width else None, bool(ops & ATTENTION_OPS), family, recorded)
    fam = detection.family
    if fam.unsupported:
        assumed = f"; {detection.note}" if detection.note else ""
        raise QuantkitError(f"model {path}: family {fam.name} is not supported ({fam.unsupported}){assumed}")
    _check_mask_output(model, path, fam)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return ModelSpec(
        path=path,
        input_name=value.name,
        height=height or fam.size,
        width=width or fam.size,
        dynamic_size=height is None or width is None,
        detection=detection,
        opset=opset,
        quantized=bool(quantized_ops(model)),
        fp16=is_fp16(model),
    )


def _check_mask_output(model: onnx.ModelProto, path: Path, family: Family) -> None:
    outputs = list(model.graph.output)
    if len(outputs) <= family.mask_output:
        raise QuantkitError(
            f"model {path} has {len(outputs)} outputs; rembg reads output {family.mask_output}"
        )
    out = outputs[family.mask_output]
    if not out.type.tensor_type.HasField("shape"):  # not declared: infer it rather than fail mid-run
        out = _inferred_output(model, family.mask_output) or out
    dims = out.type.tensor_type.shape.dim
    if out.type.HasField("tensor_type") and dims and len(dims) != 4:
        shape = ", ".join(str(_dim(d) or "?") for d in dims)
        raise QuantkitError(
            f"model {path}: output {family.mask_output} '{out.name}' has shape [{shape}]; "
            "rembg reads a mask [1, 1, H, W] there"
        )


def _inferred_output(model: onnx.ModelProto, index: int) -> onnx.ValueInfoProto | None:
    """Output ``index`` with the shape ONNX shape inference gives it, if it can."""
    try:
        inferred: onnx.ModelProto = onnx.shape_inference.infer_shapes(model)
        output: onnx.ValueInfoProto = inferred.graph.output[index]
        return output
    except Exception:  # inference is best effort; the runtime check in postprocess still holds
        return None
