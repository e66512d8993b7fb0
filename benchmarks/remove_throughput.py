"""Cutout throughput: ``quantkit remove`` with the default INT8 u2netp vs rembg's own FP32 u2netp.

All write an RGBA PNG per photo for the same photos (ECSSD's first ``--limit``
if present, else the bundled ones), in the same process, alternating twice; the
better of the two passes counts for each. rembg runs its real ``remove`` with a
``u2net_custom`` session on the FP32 u2netp (the model copied under a temporary
rembg home); quantkit runs on onnxruntime and on OpenVINO. Writes
``benchmarks/results/remove_throughput.{json,md}``. Target (speed issue): at
least 3.5x rembg's throughput with the best runtime.

    python benchmarks/remove_throughput.py [--ecssd PATH] [--limit 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

from _common import CALIB, U2NETP, ecssd, write

import quantkit
from quantkit.model.images import list_images
from quantkit.removal.session import SERVING
from quantkit.runtime.base import RuntimeName
from quantkit.system import cpu_name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ecssd")
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()
    from PIL import Image

    data = ecssd(args.ecssd)
    files = list_images(data / "images" if data else CALIB, limit=args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        int8 = quantkit.quantize(
            U2NETP,
            output=work / "u2netp.int8.onnx",
            options=quantkit.QuantizeOptions(cache_dir=work / "cache"),
        ).output
        home = work / "rembg"
        (home / "models" / "u2net_custom").mkdir(parents=True)
        os.environ.update(REMBG_HOME=str(home), MODEL_CHECKSUM_DISABLED="1")
        os.environ.pop("U2NET_HOME", None)
        import rembg

        fp32 = shutil.copy(U2NETP, home / "models" / "u2net_custom" / "u2netp.onnx")
        session = rembg.new_session("u2net_custom", model_path=str(fp32))

        def run_rembg(out: Path) -> float:
            out.mkdir()
            started = time.perf_counter()
            for path in files:
                with Image.open(path) as image:
                    rembg.remove(image, session=session).save(out / f"{path.stem}.png")
            return time.perf_counter() - started

        def run_quantkit(runtime: RuntimeName, out: Path) -> float:
            options = quantkit.RemoveOptions(settings=replace(SERVING, runtime=runtime))
            started = time.perf_counter()
            quantkit.remove(int8, files, output_dir=out, options=options)
            return time.perf_counter() - started

        timings: dict[str, list[float]] = {
            "rembg": [],
            "quantkit (onnxruntime)": [],
            "quantkit (openvino)": [],
        }
        for k in range(2):
            timings["rembg"].append(run_rembg(work / f"rembg{k}"))
            timings["quantkit (onnxruntime)"].append(run_quantkit(RuntimeName.ORT, work / f"ort{k}"))
            timings["quantkit (openvino)"].append(run_quantkit(RuntimeName.OPENVINO, work / f"ov{k}"))
    best = {name: min(values) for name, values in timings.items()}
    rate = {name: len(files) / seconds for name, seconds in best.items()}
    ratio = {name: rate[name] / rate["rembg"] for name in rate}
    top = max(ratio[n] for n in ratio if n != "rembg")
    where = f"first {len(files)} ECSSD photos" if data else f"{len(files)} bundled photos"
    rows = "".join(
        f"| {name} | {'u2netp.onnx (FP32)' if name == 'rembg' else 'u2netp.int8.onnx (default recipe)'} "
        f"| {best[name]:.1f} | {rate[name]:.2f} | {ratio[name]:.2f}x |\n"
        for name in rate
    )
    verdict = "met" if top >= 3.5 else "MISSED"
    md = (
        f"Cutouts (RGBA PNG) of the {where} on {cpu_name()}, onnxruntime {version('onnxruntime')}, "
        f"openvino {version('openvino')}, rembg {version('rembg')}; best of 2 alternating passes.\n\n"
        "| pipeline | model | seconds | photos/s | vs rembg |\n|---|---|---:|---:|---:|\n"
        + rows
        + f"\nbest quantkit throughput: {top:.2f}x rembg FP32 (target >= 3.5x): {verdict}\n"
    )
    print(md)
    write(
        "remove_throughput", {"photos": where, "seconds": timings, "photos_per_s": rate, "ratio": ratio}, md
    )


if __name__ == "__main__":
    main()
