"""Cutout throughput: ``quantkit remove`` with the default INT8 u2netp vs rembg's own FP32 u2netp.

Both write an RGBA PNG per photo for the same photos (ECSSD's first ``--limit``
if present, else the bundled ones), in the same process, alternating twice; the
better of the two passes counts for each. rembg runs its real ``remove`` with a
``u2net_custom`` session on the FP32 u2netp (``U2NET_HOME`` points at a copy).
Writes ``benchmarks/results/remove_throughput.{json,md}``. Target (issue 6): at
least 2x rembg's throughput.

    python benchmarks/remove_throughput.py [--ecssd PATH] [--limit 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import CALIB, U2NETP, ecssd, write

from quantkit.images import list_images
from quantkit.isa import cpu_name
from quantkit.quantize import QuantizeOptions, quantize
from quantkit.remove import RemoveOptions, remove


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ecssd")
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    import onnxruntime as ort
    import rembg
    from PIL import Image

    data = ecssd(args.ecssd)
    files = list_images(data / "images" if data else CALIB, limit=args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        os.environ["QUANTKIT_CACHE_DIR"] = str(work / "cache")
        int8 = work / "u2netp.int8.onnx"
        quantize(QuantizeOptions(model=U2NETP, output=int8, calib_dir=CALIB))
        os.environ["U2NET_HOME"] = str(work)
        session = rembg.new_session("u2net_custom", model_path=str(shutil.copy(U2NETP, work / "u2netp.onnx")))

        def run_rembg(out: Path) -> float:
            out.mkdir()
            started = time.perf_counter()
            for path in files:
                with Image.open(path) as image:
                    rembg.remove(image, session=session).save(out / f"{path.stem}.png")
            return time.perf_counter() - started

        def run_quantkit(out: Path) -> float:
            started = time.perf_counter()
            remove(RemoveOptions(int8, out), files)
            return time.perf_counter() - started

        timings: dict[str, list[float]] = {"rembg": [], "quantkit": []}
        for k in range(2):
            timings["rembg"].append(run_rembg(work / f"rembg{k}"))
            timings["quantkit"].append(run_quantkit(work / f"quantkit{k}"))
    best = {name: min(values) for name, values in timings.items()}
    rate = {name: len(files) / seconds for name, seconds in best.items()}
    ratio = rate["quantkit"] / rate["rembg"]
    where = f"first {len(files)} ECSSD photos" if data else f"{len(files)} bundled photos"
    from importlib.metadata import version

    rows = [
        ("rembg `remove` (u2net_custom)", "u2netp.onnx (FP32)", "rembg"),
        ("`quantkit remove`", "u2netp.int8.onnx (default recipe)", "quantkit"),
    ]
    table = "".join(f"| {a} | {b} | {best[k]:.1f} | {rate[k]:.2f} |\n" for a, b, k in rows)
    verdict = "met" if ratio >= 2 else "MISSED"
    md = (
        f"Cutouts (RGBA PNG) of the {where} on {cpu_name()}, onnxruntime {ort.__version__}, "
        f"rembg {version('rembg')}; best of 2 alternating passes.\n\n"
        "| pipeline | model | seconds | photos/s |\n|---|---|---:|---:|\n"
        + table
        + f"\nquantkit INT8 throughput: {ratio:.2f}x rembg FP32 (target >= 2x): {verdict}\n"
    )
    print(md)
    write(
        "remove_throughput", {"photos": where, "seconds": timings, "photos_per_s": rate, "ratio": ratio}, md
    )


if __name__ == "__main__":
    main()
