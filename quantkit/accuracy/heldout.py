"""The check ``quantize`` runs on its own output, photo by photo, never all in memory.

Held-out photos are run once through the original FP32 model; its masks are
stored as PNG files in the scratch folder (they are 8-bit images anyway), and so
is its noise floor - the same model on the same photo re-saved as JPEG 95
(:mod:`quantkit.accuracy.noise`). Each candidate model is then scored by
streaming the photos again and comparing with the stored masks: memory stays one
photo deep whatever ``--eval-limit`` says, and the accuracy search can score as
many candidates as it likes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from quantkit.accuracy.agreement import AgreementLog, agreement
from quantkit.accuracy.noise import jpeg_resave
from quantkit.errors import QuantkitError
from quantkit.model.masks import mask_from_tensor, predict_mask
from quantkit.model.preprocess import mask_array
from quantkit.model.spec import ModelSpec
from quantkit.progress import Progress
from quantkit.ptq.samples import PhotoFeeds
from quantkit.runtime import open_runner
from quantkit.runtime.base import RuntimeSettings


class HeldOut:
    """Held-out photos, the reference model's masks on them (on disk), and its noise floor."""

    def __init__(
        self,
        files: list[Path],
        spec: ModelSpec,
        reference: Path,
        work: Path,
        progress: Progress,
        settings: RuntimeSettings | None = None,
    ) -> None:
        self.spec = spec
        self.settings = settings or RuntimeSettings(mem_pattern=False)
        self.feeds = PhotoFeeds(files, spec)
        self.folder = work / "reference-masks"
        self.folder.mkdir()
        self.floor = AgreementLog()
        runner = open_runner(reference, self.settings, spec.family.mask_output)
        progress.start("reference masks and noise floor (FP32)", len(files))
        for k, (path, image, tensor) in enumerate(self.feeds.photos()):
            mask = mask_from_tensor(runner, spec, tensor, image.size)
            mask.save(self.folder / f"{k}.png")
            resaved = predict_mask(runner, spec, jpeg_resave(image))
            self.floor.add(path.name, agreement(mask_array(mask), mask_array(resaved)))
            progress.advance()
        if not len(self.floor):
            raise QuantkitError("none of the held-out photos could be read")
        self.skipped = list(self.feeds.skips.skipped)

    @property
    def names(self) -> list[str]:
        return list(self.floor.names)

    def feeds_in_order(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.feeds)

    def score(self, model: Path) -> AgreementLog:
        """Agreement of ``model``'s masks with the stored reference masks, photo by photo."""
        runner = open_runner(model, self.settings, self.spec.family.mask_output)
        log = AgreementLog()
        for k, (path, image, tensor) in enumerate(self.feeds.photos()):
            with Image.open(self.folder / f"{k}.png") as stored:
                reference = mask_array(stored)
            mask = mask_array(mask_from_tensor(runner, self.spec, tensor, image.size))
            log.add(path.name, agreement(reference, mask))
        return log
