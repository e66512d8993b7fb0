"""What a U²-Net-family model expects as input, read from the model itself.

rembg hard-codes 320×320 and ImageNet statistics per session class; quantkit reads
the input name, layout and size from the ONNX graph instead, and only takes what
the graph cannot say (mean/std, the size of a dynamic input) from a small table of
known families. A model whose input is not one 3-channel image is refused here,
once, so no later stage has to guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import onnx

from quantkit.errors import QuantkitError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Family(str, Enum):
    """Model families rembg serves whose output 0 is a foreground mask."""

    U2NET = "u2net"
    U2NETP = "u2netp"
    U2NET_HUMAN_SEG = "u2net_human_seg"
    SILUETA = "silueta"
    ISNET_GENERAL_USE = "isnet-general-use"


@dataclass(frozen=True)
class FamilyDefaults:
    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# The values rembg's session classes pass to ``BaseSession.normalize``.
FAMILY_DEFAULTS: dict[Family, FamilyDefaults] = {
    Family.U2NET: FamilyDefaults(320, IMAGENET_MEAN, IMAGENET_STD),
    Family.U2NETP: FamilyDefaults(320, IMAGENET_MEAN, IMAGENET_STD),
    Family.U2NET_HUMAN_SEG: FamilyDefaults(320, IMAGENET_MEAN, IMAGENET_STD),
    Family.SILUETA: FamilyDefaults(320, IMAGENET_MEAN, IMAGENET_STD),
    Family.ISNET_GENERAL_USE: FamilyDefaults(1024, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0)),
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything preprocessing and inference need to know about one model file."""

    path: Path
    input_name: str
    height: int
    width: int
    family: Family
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    opset: int
    dynamic_size: bool  # the graph leaves H/W open; we feed the family's size

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the order PIL's ``resize`` takes."""
        return (self.width, self.height)


def guess_family(path: Path, height: int | None) -> Family:
    """Guess the family from the file name (rembg's names), else from the input size."""
    stem = path.name.lower()
    # Longest names first, so "u2netp" is not read as "u2net".
    for family in sorted(Family, key=lambda f: -len(f.value)):
        if re.search(rf"(^|[^a-z0-9]){re.escape(family.value)}([^a-z0-9]|$)", stem):
            return family
    if height == FAMILY_DEFAULTS[Family.ISNET_GENERAL_USE].size:
        return Family.ISNET_GENERAL_USE
    return Family.U2NET


def load_model(path: Path) -> onnx.ModelProto:
    """Load an ONNX file, turning every way it can be unusable into one clear line."""
    if not path.exists():
        raise QuantkitError(f"model {path} does not exist")
    if not path.is_file():
        raise QuantkitError(f"model {path} is not a file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises several unrelated types
        raise QuantkitError(f"model {path} is not a readable ONNX file ({type(exc).__name__})") from exc
    if not model.graph.node or not model.opset_import:
        raise QuantkitError(f"model {path} is not a readable ONNX file (empty graph)")
    return model


def _dim(d: onnx.TensorShapeProto.Dimension) -> int | None:
    return d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None


def read_spec(path: Path, family: Family | None = None) -> ModelSpec:
    """Read and check a model's image input; raise :class:`QuantkitError` if it has none."""
    model = load_model(path)
    return spec_from_model(model, path, family)


def spec_from_model(model: onnx.ModelProto, path: Path, family: Family | None = None) -> ModelSpec:
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise QuantkitError(
            f"model {path} has {len(inputs)} inputs; a U²-Net-style model has one image input"
        )
    value = inputs[0]
    tensor = value.type.tensor_type
    if not value.type.HasField("tensor_type") or tensor.elem_type != onnx.TensorProto.FLOAT:
        raise QuantkitError(f"model {path}: input '{value.name}' is not a float32 tensor")
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
    fam = family or guess_family(path, height)
    defaults = FAMILY_DEFAULTS[fam]
    dynamic = height is None or width is None
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return ModelSpec(
        path=path,
        input_name=value.name,
        height=height or defaults.size,
        width=width or defaults.size,
        family=fam,
        mean=defaults.mean,
        std=defaults.std,
        opset=opset,
        dynamic_size=dynamic,
    )
