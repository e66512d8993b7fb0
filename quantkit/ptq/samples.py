"""Photos in, preprocessed model inputs out: one decoded photo in memory at a time.

Every pass over the calibration or held-out photos - statistics, ranges, the
check - goes through :class:`PhotoFeeds`, which decodes each photo only when
asked and runs it through :func:`quantkit.model.preprocess.preprocess`, the
function inference uses, so the ranges measured are the ranges the quantized
model will meet. A folder of thousands of photos costs one photo of memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from quantkit.errors import QuantkitError
from quantkit.model.images import SkipLog, iter_images
from quantkit.model.preprocess import preprocess
from quantkit.model.spec import ModelSpec


class PhotoFeeds:
    """A restartable stream of ``{input_name: tensor}`` from a fixed list of photo files."""

    def __init__(self, files: list[Path], spec: ModelSpec) -> None:
        self.files = files
        self.spec = spec
        self.skips = SkipLog()  # files passed over in the most recent full pass

    def photos(self) -> Iterator[tuple[Path, Image.Image, np.ndarray]]:
        """(path, decoded photo, model input) for each usable file."""
        skips = SkipLog()
        for path, image in iter_images(self.files, skips):
            yield path, image, preprocess(image, self.spec)
        self.skips = skips

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for _, _, tensor in self.photos():
            yield {self.spec.input_name: tensor}

    @property
    def used(self) -> list[Path]:
        skipped = {path for path, _ in self.skips.skipped}
        return [f for f in self.files if f not in skipped]

    def check(self, what: str) -> None:
        """Fail now, before any long work, if not one of the files is a usable photo."""
        probe = SkipLog()
        for _ in iter_images(self.files, probe):
            return
        reasons = "; ".join(reason for _, reason in probe.skipped[:3])
        raise QuantkitError(
            f"none of the {len(self.files)} {what} image files could be read"
            + (f" ({reasons})" if reasons else "")
        )

    def __len__(self) -> int:
        return len(self.files)
