"""rembg's model families as data: one record each, a registry, and detection.

Every number here is what rembg 2.0.86's session classes pass to
``BaseSession.normalize`` and do to the model's output in ``predict``
(``rembg/sessions/*.py``). Getting them wrong does not fail loudly - it quietly
changes every mask: measured with rembg itself on small models saved under
rembg's file names, isnet-anime read with isnet-general-use's mean/std gave IoU
0.10 against rembg's masks, birefnet-general without rembg's sigmoid IoU 0.03,
bria-rmbg with the wrong std MAE 0.018. So the family is never guessed silently:
it comes from rembg's file name, from ``--family``, or - last - from the input
size, and then the user is told what was assumed and how to override it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from quantkit.errors import QuantkitError

RGB = tuple[float, float, float]
IMAGENET_MEAN: RGB = (0.485, 0.456, 0.406)
IMAGENET_STD: RGB = (0.229, 0.224, 0.225)
HALF: RGB = (0.5, 0.5, 0.5)
ONE: RGB = (1.0, 1.0, 1.0)


class Architecture(str, Enum):
    """What the network is built of, which decides whether quantkit can quantize it."""

    U2NET = "U²-Net"
    ISNET = "IS-Net"
    BIREFNET = "BiRefNet"
    BRIA = "BRIA RMBG-2.0"
    BEN = "BEN"
    CLOTH = "U²-Net cloth segmentation"

    @property
    def convolutional(self) -> bool:
        """Conv/ReLU/pool/resize networks: the default recipe's rewrites apply."""
        return self in (Architecture.U2NET, Architecture.ISNET)


class Activation(str, Enum):
    """What rembg applies to the mask output before min-max normalisation."""

    NONE = "none"
    SIGMOID = "sigmoid"


@dataclass(frozen=True)
class Family:
    """One rembg session: how its input is prepared and its output read."""

    name: str  # rembg's session name (``new_session(name)``)
    architecture: Architecture
    size: int  # square input side rembg resizes every photo to
    mean: RGB
    std: RGB
    activation: Activation = Activation.NONE
    mask_output: int = 0  # index of the output rembg reads
    file_names: tuple[str, ...] = ()  # rembg's stored name and its release download name
    unsupported: str | None = None  # why quantkit cannot produce masks for it at all

    @property
    def quantizable(self) -> bool:
        return self.unsupported is None and self.architecture.convolutional


def _release(*names: str) -> tuple[str, ...]:
    return tuple(f"{n}.onnx" for n in names)


_CLOTH = (
    "its output is a 4-class clothing map that rembg turns into three palette masks, not one foreground mask"
)

# rembg 2.0.86, rembg/sessions/: u2net.py, u2netp.py, u2net_human_seg.py, silueta.py,
# u2net_cloth_seg.py, u2net_custom.py, dis_general_use.py, dis_anime.py, dis_custom.py,
# birefnet_*.py (all subclasses of BiRefNetSessionGeneral: sigmoid on output 0; birefnet_general_fp16.py
# is birefnet-general converted to float16),
# bria_rmbg.py, ben_custom.py.
FAMILIES: tuple[Family, ...] = (
    Family("u2net", Architecture.U2NET, 320, IMAGENET_MEAN, IMAGENET_STD, file_names=_release("u2net")),
    Family("u2netp", Architecture.U2NET, 320, IMAGENET_MEAN, IMAGENET_STD, file_names=_release("u2netp")),
    Family(
        "u2net_human_seg",
        Architecture.U2NET,
        320,
        IMAGENET_MEAN,
        IMAGENET_STD,
        file_names=_release("u2net_human_seg"),
    ),
    Family("silueta", Architecture.U2NET, 320, IMAGENET_MEAN, IMAGENET_STD, file_names=_release("silueta")),
    Family("u2net_custom", Architecture.U2NET, 320, IMAGENET_MEAN, IMAGENET_STD),
    Family(
        "u2net_cloth_seg",
        Architecture.CLOTH,
        768,
        IMAGENET_MEAN,
        IMAGENET_STD,
        file_names=_release("u2net_cloth_seg"),
        unsupported=_CLOTH,
    ),
    Family(
        "isnet-general-use", Architecture.ISNET, 1024, HALF, ONE, file_names=_release("isnet-general-use")
    ),
    Family("isnet-anime", Architecture.ISNET, 1024, IMAGENET_MEAN, ONE, file_names=_release("isnet-anime")),
    Family("dis_custom", Architecture.ISNET, 1024, HALF, ONE),
    *(
        Family(
            name,
            Architecture.BIREFNET,
            1024,
            IMAGENET_MEAN,
            IMAGENET_STD,
            Activation.SIGMOID,
            file_names=_release(name, release),
        )
        for name, release in (
            ("birefnet-general", "BiRefNet-general-epoch_244"),
            ("birefnet-general-lite", "BiRefNet-general-bb_swin_v1_tiny-epoch_232"),
            # rembg converts birefnet-general to float16 on first use (float32 inputs and outputs).
            ("birefnet-general-fp16", "birefnet-general-fp16"),
            ("birefnet-portrait", "BiRefNet-portrait-epoch_150"),
            ("birefnet-dis", "BiRefNet-DIS-epoch_590"),
            ("birefnet-hrsod", "BiRefNet-HRSOD_DHU-epoch_115"),
            ("birefnet-cod", "BiRefNet-COD-epoch_125"),
            ("birefnet-massive", "BiRefNet-massive-TR_DIS5K_TR_TEs-epoch_420"),
        )
    ),
    Family(
        "bria-rmbg",
        Architecture.BRIA,
        1024,
        IMAGENET_MEAN,
        IMAGENET_STD,
        file_names=_release("bria-rmbg", "bria-rmbg-2.0"),
    ),
    Family("ben_custom", Architecture.BEN, 1024, HALF, ONE),
)

_BY_NAME = {f.name: f for f in FAMILIES}


def family_names() -> list[str]:
    return [f.name for f in FAMILIES]


def get_family(name: str) -> Family:
    """The family called ``name`` (rembg's session name); a one-line error otherwise."""
    family = _BY_NAME.get(name.strip().lower())
    if family is None:
        raise QuantkitError(f"unknown family {name!r} (known: {', '.join(family_names())})")
    return family


class DetectedBy(str, Enum):
    EXPLICIT = "--family"
    FILE_NAME = "file name"
    METADATA = "quantkit metadata"
    REFERENCE = "reference model"
    INPUT_SIZE = "input size"


@dataclass(frozen=True)
class Detection:
    family: Family
    by: DetectedBy
    input_size: int | None = None  # the square input side the guess was made from (INPUT_SIZE only)

    @property
    def note(self) -> str | None:
        """What to tell the user when the family was only inferred from the input size."""
        if self.by is not DetectedBy.INPUT_SIZE:
            return None
        seen = f"{self.input_size}x{self.input_size}" if self.input_size else "dynamic or non-square"
        return (
            f"assumed family {self.family.name} from the model's {seen} "
            "input (file name not one of rembg's); pass --family NAME if that is wrong"
        )


def _tokens(name: str) -> list[tuple[str, Family]]:
    """(file-name stem, family) pairs, longest first so 'u2netp' is not read as 'u2net'."""
    pairs = [
        (file_name[: -len(".onnx")].lower(), family) for family in FAMILIES for file_name in family.file_names
    ]
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def by_file_name(path: Path) -> Family | None:
    """rembg's file name anywhere in ``path``'s name, as a whole word: ``u2netp.int8.onnx`` is u2netp."""
    name = path.name.lower()
    for stem, family in _tokens(name):
        if re.search(rf"(^|[^a-z0-9]){re.escape(stem)}([^a-z0-9]|$)", name):
            return family
    return None


def by_input_size(size: int | None, transformer: bool) -> Family:
    """The fallback: 1024 px means IS-Net (or BiRefNet if attention ops are present); else U²-Net."""
    if size == 1024:
        return _BY_NAME["birefnet-general" if transformer else "isnet-general-use"]
    if size == 768:
        return _BY_NAME["u2net_cloth_seg"]
    return _BY_NAME["u2net"]


def detect(
    path: Path, size: int | None, transformer: bool, explicit: str | None = None, recorded: str | None = None
) -> Detection:
    """Family from ``--family``, else rembg's file name, else what quantkit recorded in a model it
    wrote (``recorded``), else the input size (with a note)."""
    if explicit is not None:
        return Detection(get_family(explicit), DetectedBy.EXPLICIT)
    named = by_file_name(path)
    if named is not None:
        return Detection(named, DetectedBy.FILE_NAME)
    if recorded is not None and recorded in _BY_NAME:
        return Detection(_BY_NAME[recorded], DetectedBy.METADATA)
    return Detection(by_input_size(size, transformer), DetectedBy.INPUT_SIZE, size)
