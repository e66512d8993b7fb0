"""Photo in, mask out, exactly as rembg returns it, on any runtime.

:func:`predict_mask` is the whole inference path (preprocess, run, postprocess)
shared by ``compare``, ``remove``, the held-out check and the public one-image
API, so a mask means the same thing everywhere.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from quantkit.model.preprocess import mask_array, postprocess, preprocess
from quantkit.model.spec import ModelSpec
from quantkit.runtime.base import Runner


def mask_from_tensor(
    runner: Runner, spec: ModelSpec, tensor: np.ndarray, size: tuple[int, int]
) -> Image.Image:
    """The mask for an already preprocessed photo, at ``size`` (width, height)."""
    return postprocess(runner.run(tensor), size, spec.activation)


def predict_mask(runner: Runner, spec: ModelSpec, image: Image.Image) -> Image.Image:
    """The mask rembg would return for ``image`` ('L', at the image's own size)."""
    return mask_from_tensor(runner, spec, preprocess(image, spec), image.size)


def predict_mask_array(runner: Runner, spec: ModelSpec, image: Image.Image) -> np.ndarray:
    """:func:`predict_mask` as float32 in [0, 1], the form every metric takes."""
    return mask_array(predict_mask(runner, spec, image))
