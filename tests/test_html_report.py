"""The HTML report as a person sees it: rendered by real headless Chromium.

Checks what users complained about: at 1280 px the difference column was cut
off behind a scrollbar, and the page lacked ground truth, the gate's verdict,
model sizes and the quantkit version.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import quantkit
from quantkit.accuracy.gate import Thresholds, failures
from quantkit.accuracy.html import Verdict, write_report

from .conftest import build_tiny_model, write_photos

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


@pytest.fixture(scope="module")
def report_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("report")
    photos = work / "photos"
    write_photos(photos, 6, size=(96, 72))
    truth = work / "masks"
    truth.mkdir()
    for path in sorted(photos.iterdir()):
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"), dtype=np.float32)
        Image.fromarray(((grey > 150) * 255).astype(np.uint8)).save(truth / f"{path.stem}.png")
    model = work / "u2netp.onnx"
    onnx.save(build_tiny_model(size=32), str(model))
    options = quantkit.QuantizeOptions(calib_dir=photos, use_cache=False, recipe=quantkit_recipe("naive"))
    quantized = quantkit.quantize(model, output=work / "u2netp.naive.onnx", options=options).output
    result = quantkit.compare(model, quantized, images=photos, masks=truth)
    thresholds = Thresholds(min_iou=0.999, within_noise=0.0)
    return write_report(
        result, work / "report", worst=4, verdict=Verdict(thresholds, failures(result, thresholds))
    )


def quantkit_recipe(name: str):  # type: ignore[no-untyped-def]
    from quantkit.passes.recipes import get_recipe

    return get_recipe(name)


def render(page: Path, width: int, tmp_path: Path) -> tuple[int, int, Image.Image]:
    """(document scroll width, viewport width in CSS px, screenshot) of ``page`` in a ``width``-px window."""
    probe = tmp_path / f"probe-{width}.html"
    html = page.read_text(encoding="utf-8").replace(
        "</body>",
        "<script>document.body.dataset.scrollWidth = document.documentElement.scrollWidth;"
        "document.body.dataset.viewport = window.innerWidth;</script></body>",
    )
    probe.write_text(html, encoding="utf-8")
    shutil.copytree(page.parent, tmp_path, dirs_exist_ok=True)
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},2400"]
    dom = subprocess.run([*common, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r'data-scroll-width="(\d+)"', dom.stdout)
    viewport = re.search(r'data-viewport="(\d+)"', dom.stdout)
    assert match and viewport, dom.stderr[-2000:]
    shot = tmp_path / f"shot-{width}.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", probe.as_uri()], capture_output=True, timeout=120, check=True
    )
    with Image.open(shot) as image:
        return int(match.group(1)), int(viewport.group(1)), image.convert("RGB")


@pytest.mark.parametrize("width", [1280, 500])  # 500: the narrowest window headless Chromium opens
def test_page_fits_the_window_and_shows_every_column(report_page: Path, width: int, tmp_path: Path) -> None:
    scroll_width, viewport, shot = render(report_page, width, tmp_path)
    assert viewport == width
    assert scroll_width <= viewport, f"page is {scroll_width}px wide in a {viewport}px window"
    assert shot.width == width
    if width == 1280:
        # The difference maps (red/blue/grey) and the noise-floor map sit in the right-hand columns:
        # something other than the page background must be drawn in the rightmost fifth.
        right = np.asarray(shot)[:, int(0.8 * width) : width - 20]
        assert (np.abs(right.astype(int) - [250, 250, 250]).sum(axis=2) > 60).mean() > 0.01


def test_page_carries_what_a_reader_needs(report_page: Path) -> None:
    text = report_page.read_text(encoding="utf-8")
    assert f"quantkit {quantkit.__version__}" in text
    assert "Gate failed" in text and "min-iou 0.999" in text
    assert "Ground truth" in text and "max-F" in text and "S-measure" in text
    assert re.search(r"\d+\.\d\d MB", text)  # model sizes
    assert "noise floor" in text and "JPEG-95 re-save vs reference" in text
    assert (report_page.parent / ".quantkit-report").is_file()
    for src in re.findall(r'src="([^"]+)"', text):
        assert (report_page.parent / src).is_file(), src
