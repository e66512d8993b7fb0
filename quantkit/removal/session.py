"""One photo in, one mask or cutout out - quantkit's answer to rembg's ``remove(image, session=...)``.

    session = quantkit.new_session("u2netp.int8.onnx")
    cut = quantkit.cutout(Image.open("photo.jpg"), session=session)

The session holds one runner for the model (onnxruntime with memory patterns off
by default: same speed, ~80 MiB less) and the model's family, so preprocessing
and the output activation are the family's. EXIF orientation is applied, as
rembg's ``remove`` does.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps

from quantkit.model.masks import predict_mask
from quantkit.model.spec import ModelSpec, read_spec
from quantkit.removal.compose import RGBA, compose
from quantkit.runtime import open_runner
from quantkit.runtime.base import Runner, RuntimeSettings

# Memory patterns off: same speed, and the INT8 u2netp process peaks ~80 MiB lower.
SERVING = RuntimeSettings(mem_pattern=False)


class Session:
    """A loaded model, ready to cut out photo after photo."""

    def __init__(
        self, model: str | Path, *, family: str | None = None, settings: RuntimeSettings | None = None
    ):
        self.spec: ModelSpec = read_spec(Path(model), family)
        self.runner: Runner = open_runner(Path(model), settings or SERVING, self.spec.family.mask_output)

    def mask(self, image: Image.Image, *, max_size: int | None = None) -> Image.Image:
        """The mask ('L', at the photo's size) for an upright photo; see :func:`cutout`."""
        small = image
        if max_size is not None and max(image.size) > max_size:
            small = image.copy()
            small.thumbnail((max_size, max_size), Image.Resampling.LANCZOS)
        mask = predict_mask(self.runner, self.spec, small)
        return mask if mask.size == image.size else mask.resize(image.size, Image.Resampling.LANCZOS)


def new_session(
    model: str | Path, *, family: str | None = None, settings: RuntimeSettings | None = None
) -> Session:
    """Load ``model`` (FP32 or INT8) for :func:`cutout`; ``family`` overrides file-name detection."""
    return Session(model, family=family, settings=settings)


def cutout(
    image: Image.Image,
    *,
    session: Session,
    mask_only: bool = False,
    bg_color: RGBA | None = None,
    max_size: int | None = None,
) -> Image.Image:
    """The RGBA cutout of ``image`` (or its mask with ``mask_only``), at the photo's own size.

    ``max_size`` shrinks large photos before inference only; ``bg_color`` composites onto a colour.
    """
    upright = ImageOps.exif_transpose(image)
    mask = session.mask(upright, max_size=max_size)
    return mask if mask_only else compose(upright, mask, bg_color)
