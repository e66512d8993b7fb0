"""Quantization at scale: time and memory to quantize, and what the INT8 model gives back.

For u2netp (real weights) and the stand-ins built by ``standins.py`` - u2net-sized
(u2netp widened to U2NET's 44 M parameters, 176 MB), u2netp with a 1024×1024
input (IS-Net-scale activations), and the IS-Net architecture (176 MB at 1024) -
this script quantizes each with the default options and no cache, in its own
process, and reports:

- quantize wall time and the process's peak RSS (VmHWM, measured inside it);
- INT8/FP32 size and latency (``quantkit bench``, FP32 and INT8 interleaved);
- mask IoU of the INT8 model against *its own* FP32 model on ECSSD photos, and the
  FP32 model's JPEG-95 noise floor on the same photos.

Writes ``benchmarks/results/scale.{json,md}``.

    python benchmarks/scale.py [--ecssd PATH] [--limit 100] [--limit-1024 24] [--runs 10] [--only u2net,...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import onnx
from _common import CALIB, U2NETP, ecssd, write
from standins import build_isnet_standin, build_u2net_standin, build_u2netp_1024, save_atomically

import quantkit
from quantkit.system import cpu_name

BUILDERS = {
    "u2netp": None,
    "u2net": build_u2net_standin,
    "u2netp-1024": build_u2netp_1024,
    "isnet-general-use": build_isnet_standin,
}


def model_path(name: str, folder: Path) -> Path:
    if BUILDERS[name] is None:
        return U2NETP
    path = folder / f"{name}.onnx"
    if not path.exists():
        save_atomically(BUILDERS[name](onnx.load(str(U2NETP))), path)
    return path


def quantize(model: Path, output: Path, cache: Path) -> dict[str, Any]:
    """``quantkit quantize`` in its own process (so its peak RSS is its own); its JSON report."""
    report = output.with_suffix(".json")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "quantkit",
            "-q",
            "quantize",
            str(model),
            "-o",
            str(output),
            "--no-cache",
            "--cache-dir",
            str(cache),
            "--calib",
            str(CALIB),
            "--json",
            str(report),
        ],
        check=True,
    )
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ecssd", help="ECSSD folder (images/, masks/)")
    parser.add_argument("--limit", type=int, default=100, help="ECSSD photos for 320-px models")
    parser.add_argument("--limit-1024", type=int, default=24, help="ECSSD photos for 1024-px models")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per model (interleaved)")
    parser.add_argument("--only", help="comma-separated subset of " + ",".join(BUILDERS))
    parser.add_argument(
        "--models", type=Path, help="folder to build/keep the stand-ins in (default: temporary)"
    )
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BUILDERS)
    data = ecssd(args.ecssd)
    images = data / "images" if data else CALIB
    rows = []
    with tempfile.TemporaryDirectory(prefix="quantkit-scale-") as tmp:
        folder = args.models or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            fp32 = model_path(name, folder)
            int8 = Path(tmp) / f"{name}.int8.onnx"
            print(f"{name}: quantizing {fp32.stat().st_size / 1e6:.0f} MB", flush=True)
            report = quantize(fp32, int8, Path(tmp) / "cache")
            speed = quantkit.bench(
                fp32, int8, options=quantkit.BenchOptions(images=CALIB, runs=args.runs, max_images=4)
            )
            limit = (
                args.limit_1024
                if report["held_out"] is None or "1024" in name or "isnet" in name
                else args.limit
            )
            agreement = quantkit.compare(fp32, int8, images=images, limit=limit)
            fp, q = speed.results
            iou = agreement.candidates[0].agreement.iou
            floor = agreement.floor.iou if agreement.floor else None
            rows.append(
                {
                    "model": name,
                    "fp32_mb": round(fp.size_bytes / 1e6, 1),
                    "quantize_seconds": report["seconds"],
                    "quantize_peak_rss_gib": round(report["peak_rss_bytes"] / 2**30, 2),
                    "photo_passes": report["calibration"]["passes"],
                    "size_ratio": round(q.size_bytes / fp.size_bytes, 3),
                    "latency_ratio": round(q.latency.p50_ms / fp.latency.p50_ms, 3),
                    "fp32_latency_ms": round(fp.latency.p50_ms, 1),
                    "fp32_peak_rss_mib": round(fp.peak_rss_bytes / 2**20),
                    "int8_peak_rss_mib": round(q.peak_rss_bytes / 2**20),
                    "photos": agreement.images,
                    "iou_mean": round(iou.mean, 4),
                    "iou_p05": round(iou.p05, 4),
                    "floor_mean": round(floor.mean, 4) if floor else None,
                    "floor_p05": round(floor.p05, 4) if floor else None,
                    "held_out": report["held_out"]["iou_final"] if report["held_out"] else None,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    where = "ECSSD" if data else "bundled calibration photos (no ECSSD found)"
    lines = [
        f"{cpu_name()}, quantkit {quantkit.__version__}; quantize with default options, no cache, "
        f"22 bundled photos; IoU of INT8 vs its own FP32 on the first photos of {where}; "
        f"latency: {args.runs} interleaved runs",
        "",
        "| model | FP32 | quantize time | peak RSS | passes | INT8 size | INT8 latency "
        "| FP32 / INT8 serving RSS | photos | IoU mean / p05 | JPEG-95 floor mean / p05 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        floor = f"{r['floor_mean']:.4f} / {r['floor_p05']:.4f}" if r["floor_mean"] is not None else "-"
        lines.append(
            f"| {r['model']} | {r['fp32_mb']} MB | {r['quantize_seconds']:.0f} s "
            f"| {r['quantize_peak_rss_gib']:.2f} GiB "
            f"| {r['photo_passes']} | {r['size_ratio']:.3f}x | {r['latency_ratio']:.3f}x "
            f"| {r['fp32_peak_rss_mib']} / {r['int8_peak_rss_mib']} MiB | {r['photos']} "
            f"| {r['iou_mean']:.4f} / {r['iou_p05']:.4f} | {floor} |"
        )
    md = "\n".join(lines) + "\n"
    print(md)
    write("scale", {"images": where, "rows": rows}, md)


if __name__ == "__main__":
    main()
