"""A cutout from a photo and its mask, and the colour syntax ``--bg-color`` takes.

The cutout keeps the photo's colours and puts the mask in the alpha channel
(straight alpha, as PNG defines it). rembg's ``remove`` instead composites onto a
transparent image, which also multiplies the colours by the alpha; the alpha
channel - the mask - is the same either way.
"""

from __future__ import annotations

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from quantkit.errors import QuantkitError
from quantkit.files.ownership import PNG_SOFTWARE

RGBA = tuple[int, int, int, int]


def parse_color(text: str) -> RGBA:
    """'#rrggbb', '#rrggbbaa' or 'r,g,b[,a]' -> RGBA."""
    value = text.strip()
    try:
        if value.startswith("#") and len(value) in (7, 9):
            parts = [int(value[i : i + 2], 16) for i in range(1, len(value), 2)]
        else:
            parts = [int(p) for p in value.split(",")]
    except ValueError as exc:
        raise QuantkitError(f"--bg-color {text!r}: expected #rrggbb, #rrggbbaa or r,g,b[,a]") from exc
    if len(parts) == 3:
        parts.append(255)
    if len(parts) != 4 or not all(0 <= p <= 255 for p in parts):
        raise QuantkitError(f"--bg-color {text!r}: expected 3 or 4 values between 0 and 255")
    return (parts[0], parts[1], parts[2], parts[3])


def compose(image: Image.Image, mask: Image.Image, bg_color: RGBA | None) -> Image.Image:
    """RGBA cutout of ``image`` with ``mask`` as alpha, optionally over a solid colour."""
    rgba = image.convert("RGBA")
    rgba.putalpha(mask)
    if bg_color is None:
        return rgba
    background = Image.new("RGBA", rgba.size, bg_color)
    return Image.alpha_composite(background, rgba)


def png_info() -> PngInfo:
    """PNG text chunks that mark a file as quantkit's (``--force`` may replace it later)."""
    info = PngInfo()
    info.add_text("Software", PNG_SOFTWARE)
    return info
