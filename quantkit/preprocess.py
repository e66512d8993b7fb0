"""rembg's pre- and post-processing for the U²-Net family, reproduced exactly.

Calibration must see the tensors inference will see, and masks must be compared
as users get them from rembg, so these two functions are the only place either
transformation lives. They follow ``rembg.sessions.base.BaseSession.normalize``
and the ``predict`` methods of its u2net sessions step for step, including the
details that look accidental but change numbers: the arithmetic runs in float64
and is cast to float32 at the end; the image is divided by its *own* maximum,
not 255; the mask is min-max normalised per image, truncated (not rounded) to
uint8, then resized with LANCZOS.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from quantkit.spec import ModelSpec


def preprocess(image: Image.Image, spec: ModelSpec) -> np.ndarray:
    """PIL image (any mode) -> float32 array [1, 3, H, W] ready for ``spec``'s model."""
    resized = image.convert("RGB").resize(spec.size, Image.Resampling.LANCZOS)
    pixels = np.array(resized)
    scaled = pixels / max(np.max(pixels), 1e-6)
    mean = np.asarray(spec.mean, dtype=np.float64)
    std = np.asarray(spec.std, dtype=np.float64)
    normalised = (scaled - mean) / std
    return np.expand_dims(normalised.transpose((2, 0, 1)), 0).astype(np.float32)


def postprocess(output: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """First model output [1, 1, h, w] -> mask image 'L' at ``size`` (width, height).

    A constant prediction (max == min) would divide by zero in rembg and give NaN;
    here it yields an all-black mask instead of garbage.
    """
    pred = np.asarray(output, dtype=np.float32)[:, 0, :, :]
    hi = float(np.max(pred))
    lo = float(np.min(pred))
    span = hi - lo
    normalised = (pred - lo) / span if span > 0 else np.zeros_like(pred)
    mask = Image.fromarray((np.squeeze(normalised, axis=0) * 255).astype(np.uint8))
    return mask.resize(size, Image.Resampling.LANCZOS)


def mask_array(mask: Image.Image) -> np.ndarray:
    """Mask image -> float32 array in [0, 1], the form every metric takes."""
    return np.asarray(mask, dtype=np.float32) / 255.0
