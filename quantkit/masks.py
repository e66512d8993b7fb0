"""Masks as rembg users get them, from any model, for one photo or a fixed set.

:func:`predict_mask` is the whole inference path (preprocess, run, postprocess)
used by ``compare``, ``remove`` and the accuracy search alike. :class:`HeldOut`
keeps a small evaluation set decoded in memory with the FP32 reference masks
computed once, because the search scores many candidate models on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from quantkit.errors import QuantkitError
from quantkit.images import SkipLog, iter_images
from quantkit.metrics import AgreementLog, agreement
from quantkit.preprocess import mask_array, postprocess, preprocess
from quantkit.progress import NullProgress, Progress
from quantkit.session import SessionSettings, make_session, run_first_output
from quantkit.spec import ModelSpec


def predict_mask_image(session: ort.InferenceSession, spec: ModelSpec, image: Image.Image) -> Image.Image:
    """The mask rembg would return for ``image`` ('L', at the image's own size)."""
    output = run_first_output(session, spec.input_name, preprocess(image, spec))
    return postprocess(output, image.size)


def predict_mask(session: ort.InferenceSession, spec: ModelSpec, image: Image.Image) -> np.ndarray:
    return mask_array(predict_mask_image(session, spec, image))


@dataclass
class _Sample:
    name: str
    size: tuple[int, int]
    tensor: np.ndarray
    reference: np.ndarray


class HeldOut:
    """Evaluation photos with their reference masks, scored against candidate models."""

    def __init__(
        self,
        files: list[Path],
        spec: ModelSpec,
        reference: Path,
        *,
        settings: SessionSettings | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.skips = SkipLog()
        progress = progress or NullProgress()
        session = make_session(reference, settings)
        progress.start("reference masks (FP32)", len(files))
        self.samples: list[_Sample] = []
        for path, image in iter_images(files, self.skips):
            tensor = preprocess(image, spec)
            mask = mask_array(postprocess(run_first_output(session, spec.input_name, tensor), image.size))
            self.samples.append(_Sample(path.name, image.size, tensor, mask))
            progress.advance()
        if not self.samples:
            raise QuantkitError("none of the evaluation images could be read")

    def __len__(self) -> int:
        return len(self.samples)

    def score(self, model: Path | bytes) -> AgreementLog:
        session = make_session(model, self.settings)
        log = AgreementLog()
        for sample in self.samples:
            output = run_first_output(session, self.spec.input_name, sample.tensor)
            log.add(sample.name, agreement(sample.reference, mask_array(postprocess(output, sample.size))))
        return log
