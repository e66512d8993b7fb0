"""Activation ranges from onnxruntime's calibrators, in bounded memory, cached.

``quantize_static`` would run the calibrator itself, but its histogram methods
keep every intermediate tensor of every photo until the end (22 photos of u2netp:
15.8 GB RSS measured here). This module drives the same calibrator with short
slices of the reader instead - onnxruntime merges repeated ``collect_data`` calls
- and stores the result with onnxruntime's own ``save_tensors_data``, so
``quantize_static`` can be called again and again (the accuracy search does) with
``calibration_cache_path`` and no second calibration pass.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from enum import Enum
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
from onnxruntime.quantization.calibrate import (
    TensorsData,
    create_calibrator,
    load_tensors_data,
    save_tensors_data,
)

from quantkit.calibration import FolderCalibrationReader

# Bumped whenever preprocessing or the way ranges are computed changes, so stale caches die.
CACHE_VERSION = "1"


class CalibMethod(str, Enum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"
    DISTRIBUTION = "distribution"

    def to_ort(self) -> CalibrationMethod:
        return {
            CalibMethod.MINMAX: CalibrationMethod.MinMax,
            CalibMethod.ENTROPY: CalibrationMethod.Entropy,
            CalibMethod.PERCENTILE: CalibrationMethod.Percentile,
            CalibMethod.DISTRIBUTION: CalibrationMethod.Distribution,
        }[self]


class _Slice(CalibrationDataReader):  # type: ignore[misc]
    """At most ``count`` samples from a shared reader, then ``None``."""

    def __init__(self, reader: FolderCalibrationReader, count: int, tick: Callable[[], None]) -> None:
        self.reader = reader
        self.left = count
        self.tick = tick

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.left <= 0:
            return None
        item = self.reader.get_next()
        if item is None:
            return None
        self.left -= 1
        self.tick()
        return item


def cache_dir() -> Path:
    root = os.environ.get("QUANTKIT_CACHE_DIR")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "quantkit"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def calibration_key(model_bytes: bytes, files: list[Path], method: CalibMethod) -> str:
    digest = hashlib.sha256()
    digest.update(CACHE_VERSION.encode())
    digest.update(method.value.encode())
    digest.update(hashlib.sha256(model_bytes).digest())
    for path in files:
        digest.update(path.name.encode())
        digest.update(file_digest(path).encode())
    return digest.hexdigest()[:32]


def calibrate(
    model_path: Path,
    reader: FolderCalibrationReader,
    method: CalibMethod,
    *,
    tick: Callable[[], None] = lambda: None,
    cache: Path | None = None,
) -> tuple[TensorsData, Path]:
    """Ranges for every float tensor of ``model_path``; saved to (or loaded from) ``cache``.

    Returns the ranges and the JSON file holding them, ready for
    ``quantize_static(..., calibration_cache_path=...)``.
    """
    if cache is not None and cache.is_file():
        try:
            return load_tensors_data(cache), cache
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            cache.unlink(missing_ok=True)  # corrupt cache: recompute
    histogram = method is not CalibMethod.MINMAX
    with tempfile.TemporaryDirectory(prefix="quantkit-calib-") as work:
        calibrator = create_calibrator(
            model_path,
            None,
            augmented_model_path=str(Path(work) / "augmented.onnx"),
            calibrate_method=method.to_ort(),
        )
        reader.rewind()
        # Every collect_data call ends by folding its slice into the running ranges
        # (MinMax) or histograms; until then it holds all of the slice's tensors.
        # (MinMax's own max_intermediate_outputs option drops data instead of
        # folding it in onnxruntime 1.31, so it is not used.)
        step = 2 if histogram else 1
        while reader.has_next():
            calibrator.collect_data(_Slice(reader, step, tick))
        ranges = calibrator.compute_data()
        del calibrator
    target = cache if cache is not None else Path(tempfile.mkstemp(suffix=".json")[1])
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    save_tensors_data(ranges, tmp)
    os.replace(tmp, target)
    return ranges, target
