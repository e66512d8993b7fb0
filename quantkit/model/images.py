"""Finding and opening user photos, one at a time, without surprises.

Calibration, comparison and cutouts all stream images from a folder; this module
is the single place that decides what counts as an image, how a file is decoded
(EXIF orientation applied, as rembg does; 16-bit and float images scaled down
properly instead of clipped), and what happens to a file that cannot be used:
it is skipped and reported, never allowed to stop a run of a thousand photos.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from quantkit.errors import QuantkitError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
)

# Pillow's own default; a larger image is refused as a possible decompression bomb.
MAX_PIXELS = 89_478_485


class ImageReadError(QuantkitError):
    """One image file could not be used; folder readers skip it and go on."""


@dataclass
class SkipLog:
    """Files passed over while streaming a folder, with the reason for each."""

    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def add(self, path: Path, reason: str) -> None:
        self.skipped.append((path, reason))

    def __len__(self) -> int:
        return len(self.skipped)


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def list_images(folder: Path, *, limit: int | None = None) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (so runs are reproducible)."""
    if not folder.exists():
        raise QuantkitError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise QuantkitError(f"{folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_name(p))
    if not files:
        raise QuantkitError(f"no images in {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files[:limit] if limit is not None else files


def expand_inputs(paths: Iterable[Path], skips: SkipLog) -> list[Path]:
    """Files and folders from a command line -> the image files they name, in order.

    Anything that is not a regular file (a FIFO, a device) goes to ``skips``:
    opening a FIFO blocks until someone writes to it, which could be forever.
    """
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(list_images(path))
        elif path.is_file():
            out.append(path)
        elif path.exists():
            skips.add(path, f"{path}: not a regular file")
        else:
            raise QuantkitError(f"input {path} does not exist")
    return out


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit and float images to 8 bits; Pillow's convert would clip them."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        pixels = np.asarray(image)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        scaled = np.clip(pixels.astype(np.float64) * (255.0 / top), 0, 255)
        return Image.fromarray(scaled.round().astype(np.uint8))
    if image.mode == "F":
        pixels = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        top = 1.0 if pixels.max() <= 1.0 else 255.0
        return Image.fromarray(np.clip(pixels * (255.0 / top), 0, 255).round().astype(np.uint8))
    return image


def open_image(path: Path) -> Image.Image:
    """Decode one photo fully, upright, in a mode ``preprocess`` understands.

    Raises :class:`ImageReadError` for anything that is not a complete, sane image,
    including truncated files and decompression bombs.
    """
    if path.exists() and not path.is_file():
        raise ImageReadError(f"{path}: not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as handle:
                width, height = handle.size
                if width * height > MAX_PIXELS:
                    raise ImageReadError(
                        f"{path}: {width}x{height} pixels is over the {MAX_PIXELS:,} limit "
                        "(possible decompression bomb); refused"
                    )
                handle.load()
                image = ImageOps.exif_transpose(handle)
                if image is handle:
                    image = handle.copy()
    except ImageReadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageReadError(f"{path}: refused as a possible decompression bomb") from exc
    except FileNotFoundError as exc:
        raise ImageReadError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise ImageReadError(f"{path}: is a folder, not an image") from exc
    except PermissionError as exc:
        raise ImageReadError(f"{path}: permission denied") from exc
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError...
        raise ImageReadError(f"{path}: not a readable image ({_reason(exc)})") from exc
    if image.width == 0 or image.height == 0:
        raise ImageReadError(f"{path}: image has no pixels")
    return _to_8bit(image)


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]


def iter_images(files: Iterable[Path], skips: SkipLog) -> Iterator[tuple[Path, Image.Image]]:
    """Decode ``files`` lazily, one in memory at a time; unusable ones go to ``skips``."""
    for path in files:
        try:
            image = open_image(path)
        except ImageReadError as exc:
            skips.add(path, exc.message)
            continue
        yield path, image
