"""Feeding calibration photos to onnxruntime, one preprocessed tensor at a time.

onnxruntime's calibrators pull samples through ``CalibrationDataReader.get_next``
until it returns ``None``. This reader decodes each photo only when asked, so a
folder of thousands of photos costs one image of memory, and it runs them through
:func:`quantkit.preprocess.preprocess` - the function inference uses - so the
ranges onnxruntime measures are the ranges the quantized model will meet.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from quantkit.errors import QuantkitError
from quantkit.images import SkipLog, iter_images, list_images
from quantkit.preprocess import preprocess
from quantkit.spec import ModelSpec


class FolderCalibrationReader(CalibrationDataReader):  # type: ignore[misc]
    """Sorted, lazy, restartable stream of ``{input_name: tensor}`` from a folder.

    Unreadable files are skipped and recorded in :attr:`skips`; :attr:`used` lists
    the files that went in. :meth:`check` fails fast when no file is usable, before
    onnxruntime starts building its augmented model.
    """

    def __init__(
        self,
        folder: Path,
        spec: ModelSpec,
        *,
        limit: int | None = None,
        files: list[Path] | None = None,
    ) -> None:
        self.folder = folder
        self.spec = spec
        self.files = files if files is not None else list_images(folder, limit=limit)
        self.skips = SkipLog()
        self.used: list[Path] = []
        self._stream: Iterator[tuple[Path, np.ndarray]] | None = None
        self._pending: tuple[Path, np.ndarray] | None = None

    def _samples(self, skips: SkipLog | None = None) -> Iterator[tuple[Path, np.ndarray]]:
        for path, image in iter_images(self.files, self.skips if skips is None else skips):
            yield path, preprocess(image, self.spec)

    def feeds(self) -> Iterator[dict[str, np.ndarray]]:
        """A fresh pass over the usable samples, independent of ``get_next``'s position."""
        for _, tensor in self._samples(SkipLog()):
            yield {self.spec.input_name: tensor}

    def has_next(self) -> bool:
        """Whether another usable sample follows; decodes it now and keeps it for get_next."""
        if self._stream is None:
            self.rewind()
        assert self._stream is not None
        if self._pending is None:
            self._pending = next(self._stream, None)
        return self._pending is not None

    def check(self) -> None:
        """Decode up to the first usable image now, so an unusable folder fails early."""
        self.rewind()
        if not self.has_next():
            reasons = "; ".join(reason for _, reason in self.skips.skipped[:3])
            raise QuantkitError(
                f"none of the {len(self.files)} image files in {self.folder} could be read"
                + (f" ({reasons})" if reasons else "")
            )

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._stream is None:
            self.rewind()
        assert self._stream is not None
        item = self._pending if self._pending is not None else next(self._stream, None)
        self._pending = None
        if item is None:
            return None
        path, tensor = item
        self.used.append(path)
        return {self.spec.input_name: tensor}

    def rewind(self) -> None:
        """Start again from the first file (calibrators may make several passes)."""
        self.skips = SkipLog()
        self.used = []
        self._pending = None
        self._stream = self._samples()

    def __len__(self) -> int:
        return len(self.files)
