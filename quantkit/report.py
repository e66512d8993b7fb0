"""An HTML page that shows, for the worst photos, what the quantized model got wrong.

Numbers say *that* masks differ; the page shows *where*: for each compared model
and each of its worst photos, the photo, the reference mask, the model's mask,
and a difference map (red: only the model calls it foreground, blue: only the
reference does, grey: soft disagreement). The folder is built aside and moved
into place whole, so a crash never leaves half a report.
"""

from __future__ import annotations

import html
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from quantkit.compare import CompareReport
from quantkit.errors import QuantkitError
from quantkit.images import open_image
from quantkit.masks import predict_mask
from quantkit.metrics import THRESHOLD
from quantkit.session import SessionSettings, make_session

THUMB = 320


def difference_map(reference: np.ndarray, other: np.ndarray) -> Image.Image:
    a = reference >= THRESHOLD
    b = other >= THRESHOLD
    grey = (np.abs(reference - other) * 255).clip(0, 255).astype(np.uint8)
    rgb = np.stack([grey, grey, grey], axis=-1)
    rgb[b & ~a] = (230, 40, 40)
    rgb[a & ~b] = (40, 90, 230)
    return Image.fromarray(rgb)


def _thumb(image: Image.Image) -> Image.Image:
    copy = image.copy()
    copy.thumbnail((THUMB, THUMB), Image.Resampling.LANCZOS)
    return copy


def _check_target(target: Path, force: bool) -> None:
    if target.exists():
        if not target.is_dir():
            raise QuantkitError(f"report folder {target} exists and is not a folder")
        if any(target.iterdir()) and not force:
            raise QuantkitError(f"report folder {target} is not empty (use --force to replace it)")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise QuantkitError(f"cannot create the report folder in {parent}")


def check_report_target(target: Path, force: bool) -> None:
    """Fail before the long work if the report could not be written at the end."""
    _check_target(target, force)


def write_report(
    report: CompareReport,
    target: Path,
    *,
    worst: int = 8,
    force: bool = False,
    settings: SessionSettings | None = None,
) -> Path:
    _check_target(target, force)
    ref = report.reference
    ref_session = make_session(ref.path, settings)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent if str(target.parent) else ".")
    )
    try:
        sections = []
        for k, model in enumerate(report.candidates, start=1):
            session = make_session(model.path, settings)
            rows = []
            for name, agree in model.agreement.worst(worst):
                image = open_image(report.images_dir / name)
                ref_mask = predict_mask(ref_session, ref.spec, image)
                mask = predict_mask(session, model.spec, image)
                stem = f"m{k}_{Path(name).stem}"
                _thumb(image.convert("RGB")).save(staging / f"{stem}_photo.jpg", quality=88)
                _thumb(Image.fromarray((ref_mask * 255).astype(np.uint8))).save(staging / f"{stem}_ref.png")
                _thumb(Image.fromarray((mask * 255).astype(np.uint8))).save(staging / f"{stem}_model.png")
                _thumb(difference_map(ref_mask, mask)).save(staging / f"{stem}_diff.png")
                rows.append(
                    "<tr>"
                    f"<td class=name>{html.escape(name)}<br>IoU {agree.iou:.4f}<br>MAE {agree.mae:.4f}</td>"
                    + "".join(
                        f'<td><img src="{stem}_{part}.{ext}" alt="{html.escape(name)} {part}"></td>'
                        for part, ext in (("photo", "jpg"), ("ref", "png"), ("model", "png"), ("diff", "png"))
                    )
                    + "</tr>"
                )
            iou = model.agreement.iou
            sections.append(
                f"<h2>{html.escape(model.path.name)} vs {html.escape(ref.path.name)}</h2>"
                f"<p>{len(model.agreement)} photos: mean IoU {iou.mean:.4f}, 5th percentile {iou.p05:.4f}, "
                f"min {iou.minimum:.4f}, MAE {model.agreement.mae:.5f}</p>"
                f"<table><tr><th>photo</th><th>input</th><th>{html.escape(ref.path.name)}</th>"
                f"<th>{html.escape(model.path.name)}</th><th>difference</th></tr>{''.join(rows)}</table>"
            )
        page = _PAGE.format(
            title=html.escape(f"quantkit compare: {report.images} photos from {report.images_dir}"),
            body="".join(sections),
        )
        (staging / "index.html").write_text(page, encoding="utf-8")
        os.chmod(staging, 0o755)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target / "index.html"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; background: #fafafa; color: #222; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ddd; padding: 4px; vertical-align: top; background: white; }}
td.name {{ font-family: monospace; white-space: nowrap; }}
img {{ display: block; max-width: 320px; }}
.legend span {{ padding: 0 0.5em; }}
</style></head><body>
<h1>{title}</h1>
<p class="legend">Difference map:
<span style="color:#e62828">red</span> only the quantized model marks foreground,
<span style="color:#285ae6">blue</span> only the reference does,
grey: soft difference. Masks thresholded at 0.5.</p>
{body}
</body></html>
"""
