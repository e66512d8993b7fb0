"""rembg's pre- and post-processing, reproduced exactly, for every family.

Calibration must see the tensors inference will see, and masks must be compared
as users get them from rembg, so these two functions are the only place either
transformation lives. They follow ``rembg.sessions.base.BaseSession.normalize``
and the sessions' ``predict`` step for step, including the details that look
accidental but change numbers: the arithmetic runs in float64 and is cast to
float32 at the end; the image is divided by its *own* maximum, not 255; BiRefNet's
output goes through a sigmoid first; the mask is min-max normalised per image,
truncated (not rounded) to uint8, then resized with LANCZOS.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from quantkit.errors import QuantkitError
from quantkit.model.family import Activation
from quantkit.model.spec import ModelSpec


def preprocess(image: Image.Image, spec: ModelSpec) -> np.ndarray:
    """PIL image (any mode) -> float32 array [1, 3, H, W] ready for ``spec``'s model."""
    resized = image.convert("RGB").resize(spec.size, Image.Resampling.LANCZOS)
    pixels = np.array(resized)
    scaled = pixels / max(np.max(pixels), 1e-6)
    mean = np.asarray(spec.mean, dtype=np.float64)
    std = np.asarray(spec.std, dtype=np.float64)
    normalised = (scaled - mean) / std
    return np.expand_dims(normalised.transpose((2, 0, 1)), 0).astype(np.float32)


def postprocess(output: np.ndarray, size: tuple[int, int], activation: Activation) -> Image.Image:
    """Mask output [1, C, h, w] -> mask image 'L' at ``size`` (width, height).

    A constant or non-finite prediction would give NaN in rembg; here it yields an
    all-black mask instead of garbage.
    """
    output = np.asarray(output)
    if output.ndim != 4 or output.shape[0] != 1 or 0 in output.shape:  # undeclared shapes get here
        raise QuantkitError(
            f"the model's mask output has shape {list(output.shape)}; rembg reads a mask [1, 1, H, W] there"
        )
    pred = np.asarray(output, dtype=np.float32)[:, 0, :, :]
    if activation is Activation.SIGMOID:
        with np.errstate(over="ignore"):
            pred = np.float32(1) / (np.float32(1) + np.exp(-pred))  # float32, as rembg computes it
    finite = np.isfinite(pred)
    if not finite.all():
        pred = np.where(finite, pred, np.float32(0))
    hi = float(np.max(pred))
    lo = float(np.min(pred))
    span = hi - lo
    normalised = (pred - lo) / span if span > 0 else np.zeros_like(pred)
    mask = Image.fromarray((np.squeeze(normalised, axis=0).clip(0, 1) * 255).astype(np.uint8))
    return mask.resize(size, Image.Resampling.LANCZOS)


def mask_array(mask: Image.Image) -> np.ndarray:
    """Mask image -> float32 array in [0, 1], the form every metric takes."""
    return np.asarray(mask, dtype=np.float32) / 255.0
