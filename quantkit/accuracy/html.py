"""An HTML page that shows, for the worst photos, what the quantized model got wrong.

Numbers say *that* masks differ; the page shows *where*, and whether it matters:
for each compared model and each of its worst photos, the photo, the reference
mask, the model's mask, the model's difference map and - beside it - the
difference the reference model itself shows on the same photo re-saved as JPEG
95. A photo where both maps light up is one the model is unstable on anyway; a
photo where only the first does is what quantization broke. Above: the gate's
verdict, sizes, agreement against the noise floor, ground-truth metrics, and the
quantkit version, so the page can be forwarded as it is. One column on a phone,
five on a laptop, never a horizontal scrollbar.

The folder is built aside and moved into place whole, with a marker file that
lets ``--force`` recognise it as quantkit's own next time.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from quantkit import __version__
from quantkit.accuracy.agreement import THRESHOLD, agreement
from quantkit.accuracy.compare import CompareReport, ModelScores
from quantkit.accuracy.gate import Thresholds
from quantkit.accuracy.noise import JPEG_QUALITY, jpeg_resave
from quantkit.files.atomic import os_error
from quantkit.files.ownership import REPORT_MARKER
from quantkit.model.images import open_image
from quantkit.model.masks import predict_mask_array
from quantkit.runtime import open_runner
from quantkit.runtime.base import Runner

THUMB = 320


@dataclass(frozen=True)
class Verdict:
    thresholds: Thresholds
    failures: list[str]


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


def _mask_image(mask: np.ndarray) -> Image.Image:
    return Image.fromarray((mask * 255).astype(np.uint8))


def _e(text: object) -> str:
    return html.escape(str(text))


def write_report(
    report: CompareReport, target: Path, *, worst: int = 8, verdict: Verdict | None = None
) -> Path:
    """Write the page into ``target`` (already cleared by the output guard); returns index.html."""
    parent = target.parent if str(target.parent) else Path(".")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    except OSError as exc:
        raise os_error(exc, str(target)) from exc
    try:
        ref = report.reference
        ref_runner = open_runner(ref.path, report.settings, ref.spec.family.mask_output)
        sections = [
            _model_section(report, k, model, ref_runner, staging, worst)
            for k, model in enumerate(report.candidates, start=1)
        ]
        page = _PAGE.format(
            title=_e(f"quantkit compare: {report.images} photos from {report.images_dir}"),
            version=_e(__version__),
            verdict=_verdict(verdict),
            summary=_summary(report),
            truth=_truth(report),
            body="".join(sections),
            quality=JPEG_QUALITY,
        )
        (staging / "index.html").write_text(page, encoding="utf-8")
        (staging / REPORT_MARKER).write_text(f"written by quantkit {__version__}\n", encoding="utf-8")
        os.chmod(staging, 0o755)
        _swap_into_place(staging, target)
    except OSError as exc:
        raise os_error(exc, str(target)) from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target / "index.html"


def _swap_into_place(staging: Path, target: Path) -> None:
    """Move the new folder in; an old one (the guard checked it is quantkit's) goes after."""
    if not target.exists():
        os.replace(staging, target)
        return
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _verdict(verdict: Verdict | None) -> str:
    if verdict is None or not verdict.thresholds.any:
        return '<p class="verdict none">No gate thresholds were set.</p>'
    met = ", ".join(
        f"{k.replace('_', '-')} {v}" for k, v in verdict.thresholds.to_dict().items() if v is not None
    )
    if not verdict.failures:
        return f'<p class="verdict pass"><strong>Gate passed</strong> ({_e(met)})</p>'
    items = "".join(f"<li>{_e(line)}</li>" for line in verdict.failures)
    return f'<div class="verdict fail"><strong>Gate failed</strong> ({_e(met)})<ul>{items}</ul></div>'


def _summary(report: CompareReport) -> str:
    ref = report.reference
    rows = [
        f"<tr><td>{_e(ref.path.name)} (reference)</td><td>{ref.size_bytes / 1e6:.2f} MB</td>"
        "<td>-</td><td>-</td><td>-</td><td>-</td><td>-</td></tr>"
    ]
    for model in report.candidates:
        iou, within = model.agreement.iou, report.within(model)
        beyond = f"{100 * within.beyond_floor:.0f}%" if within else "-"
        rows.append(
            f"<tr><td>{_e(model.path.name)}</td><td>{model.size_bytes / 1e6:.2f} MB</td>"
            f"<td>{iou.mean:.4f}</td><td>{iou.p05:.4f}</td><td>{iou.minimum:.4f}</td>"
            f"<td>{model.agreement.mae:.5f}</td><td>{beyond}</td></tr>"
        )
    if report.floor is not None:
        f = report.floor.iou
        rows.append(
            f"<tr class=floor><td>noise floor: {_e(ref.path.name)} on JPEG-{JPEG_QUALITY} re-saves</td>"
            "<td></td>"
            f"<td>{f.mean:.4f}</td><td>{f.p05:.4f}</td><td>{f.minimum:.4f}</td><td>{report.floor.mae:.5f}</td>"
            "<td></td></tr>"
        )
    head = (
        "<tr><th>model</th><th>size</th><th>IoU mean</th><th>IoU p05</th><th>IoU min</th><th>MAE</th>"
        "<th>photos beyond the floor</th></tr>"
    )
    return f'<div class="scroll"><table>{head}{"".join(rows)}</table></div>'


def _truth(report: CompareReport) -> str:
    ref = report.reference.truth
    if ref is None:
        return ""
    rows = []
    for model in report.models:
        if model.truth is None:
            continue
        delta = "" if model is report.reference else f"{model.truth.max_f - ref.max_f:+.4f}"
        t = model.truth
        rows.append(
            f"<tr><td>{_e(model.path.name)}</td><td>{t.max_f:.4f}</td><td>{t.mae:.4f}</td>"
            f"<td>{t.s_measure:.4f}</td><td>{t.e_measure:.4f}</td><td>{delta}</td></tr>"
        )
    head = (
        "<tr><th>model</th><th>max-F</th><th>MAE</th><th>S-measure</th><th>E-measure</th>"
        "<th>Δ max-F</th></tr>"
    )
    return (
        f"<h2>Ground truth ({_e(report.masks_dir)})</h2>"
        f'<div class="scroll"><table>{head}{"".join(rows)}</table></div>'
    )


def _model_section(
    report: CompareReport, k: int, model: ModelScores, ref_runner: Runner, staging: Path, worst: int
) -> str:
    ref = report.reference
    runner = open_runner(model.path, report.settings, model.spec.family.mask_output)
    cards = []
    for j, (name, agree) in enumerate(model.agreement.worst(worst)):
        image = open_image(report.images_dir / name)
        ref_mask = predict_mask_array(ref_runner, ref.spec, image)
        mask = predict_mask_array(runner, model.spec, image)
        resaved = predict_mask_array(ref_runner, ref.spec, jpeg_resave(image))
        floor = agreement(ref_mask, resaved)
        # Numbered, and only safe characters of the photo's name: a.jpg and a.png do not share
        # files, a 250-character name stays under the file-name limit, a quote cannot leave src="".
        stem = f"m{k}_{j + 1:02d}_{re.sub(r'[^A-Za-z0-9._-]+', '-', Path(name).stem)[:60]}"
        _thumb(image.convert("RGB")).save(staging / f"{stem}_photo.jpg", quality=88)
        _thumb(_mask_image(ref_mask)).save(staging / f"{stem}_ref.png")
        _thumb(_mask_image(mask)).save(staging / f"{stem}_model.png")
        _thumb(difference_map(ref_mask, mask)).save(staging / f"{stem}_diff.png")
        _thumb(difference_map(ref_mask, resaved)).save(staging / f"{stem}_noise.png")
        figures = [
            ("photo", "jpg", "photo"),
            ("ref", "png", f"{ref.path.name}"),
            ("model", "png", f"{model.path.name}"),
            ("diff", "png", f"quantized vs reference: IoU {agree.iou:.4f}"),
            ("noise", "png", f"JPEG-{JPEG_QUALITY} re-save vs reference: IoU {floor.iou:.4f}"),
        ]
        tiles = "".join(
            f'<figure><img src="{stem}_{part}.{ext}" alt="{_e(name)} {part}"><figcaption>{_e(caption)}'
            "</figcaption></figure>"
            for part, ext, caption in figures
        )
        verdict = "the model is unstable here anyway" if floor.iou <= agree.iou else "quantization moved it"
        cards.append(
            f'<section class="photo"><h3>{_e(name)} <small>IoU {agree.iou:.4f}, MAE {agree.mae:.4f} - '
            f"{verdict}</small></h3><div class=grid>{tiles}</div></section>"
        )
    return f"<h2>{_e(model.path.name)} vs {_e(ref.path.name)}: worst photos</h2>{''.join(cards)}"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
* {{ box-sizing: border-box; }}
body {{ font-family: system-ui, sans-serif; margin: 0 auto; padding: 1em; max-width: 1400px;
        background: #fafafa; color: #222; }}
h1 {{ font-size: 1.4em; overflow-wrap: anywhere; }}
h2 {{ font-size: 1.15em; margin-top: 1.6em; overflow-wrap: anywhere; }}
h3 {{ font-size: 1em; overflow-wrap: anywhere; }}
.scroll {{ max-width: 100%; overflow-x: auto; }}
table {{ border-collapse: collapse; background: white; }}
td, th {{ border: 1px solid #ddd; padding: 4px 8px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; overflow-wrap: anywhere; }}
tr.floor td {{ color: #555; font-style: italic; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 8px; }}
figure {{ margin: 0; background: white; border: 1px solid #ddd; padding: 4px; }}
figure img {{ display: block; width: 100%; height: auto; }}
figcaption {{ font-size: 0.8em; color: #444; overflow-wrap: anywhere; }}
.verdict {{ padding: 0.6em 1em; border-radius: 4px; }}
.pass {{ background: #e3f5e1; }} .fail {{ background: #fbe3e3; }} .none {{ background: #eee; }}
.legend span {{ padding: 0 0.4em; }}
footer {{ margin-top: 2em; font-size: 0.8em; color: #666; }}
</style></head><body>
<h1>{title}</h1>
{verdict}
<h2>Agreement with the reference</h2>
{summary}
<p>The noise floor is the reference model against itself on each photo re-saved as JPEG quality {quality}:
a quantized model at or above it moves the masks no more than an invisible re-save does.</p>
{truth}
<p class="legend">Difference maps: <span style="color:#e62828">red</span> only the other mask marks
foreground, <span style="color:#285ae6">blue</span> only the reference does, grey: soft difference.
Masks thresholded at 0.5.</p>
{body}
<footer>quantkit {version}</footer>
</body></html>
"""
