"""Real IS-Net (isnet-general-use) in INT8: quantkit's default file against the peer users
download instead, side by side in one run, on photos neither saw.

The model is the FP16 file users have (``../shared/models/isnet-general-use.fp16.onnx``,
or ``--model``). quantkit quantizes it as a user would (``quantkit quantize``, bundled
calibration photos, no cache, in a child process so its time and peak memory are its own).
The peer is img.ly's method, reproduced: onnxruntime ``quantize_dynamic`` on the FP32
upcast, uint8 weights, per tensor (ConvInteger) - a comparison row, never quantkit's
output. With ``--vnni`` (on by default where the CPU has VNNI) a third file shows what the
portable 7-bit default costs against 8-bit weights meant for VNNI CPUs only.

Every model is measured against the FP32 upcast on the first ``--limit`` ECSSD photos at
1024 px (rembg's isnet preprocessing; none is a calibration photo): mask IoU mean / p05
beside FP32's own JPEG-95 noise floor, ground-truth max-F, and latency (interleaved runs,
ratio to FP32 in onnxruntime) and size. Writes ``benchmarks/results/isnet.{json,md}``.

    python benchmarks/isnet.py [--model PATH] [--ecssd PATH] [--limit 100] [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import onnx
from _common import CALIB, ROOT, ecssd, write

import quantkit
from quantkit.graph.precision import upcast
from quantkit.isa import host_isa
from quantkit.system import cpu_name

MODEL = ROOT.parent / "shared" / "models" / "isnet-general-use.fp16.onnx"
# The targets, per ISA where they differ (latency: ratio to ORT FP32).
TARGETS = {"floor_gap": 0.005, "maxf_drop": 0.003, "size": 0.26, "quantize_s": 180, "peak_gib": 3.0}
LATENCY_TARGET = {True: 0.45, False: 0.55}  # VNNI, AVX2


def _child(args: list[str]) -> tuple[float, int]:
    """Run ``args``; its wall time and peak RSS. The peak is ru_maxrss over every child this
    process has waited for, so this is called once, before any other child."""
    started = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def _quantkit_row(label: str, model: Path, out: Path, *extra: str) -> dict[str, Any]:
    """``quantkit quantize`` as a user runs it; its own report gives time, peak memory, check."""
    report = out.with_suffix(".json")
    cli = [sys.executable, "-m", "quantkit", "quantize", str(model), "-o", str(out), "--no-cache"]
    done = subprocess.run([*cli, "--json", str(report), *extra], stdout=subprocess.DEVNULL, check=False)
    if done.returncode != 0:  # a failed check exits 1 and writes no model: nothing to measure
        sys.exit(f"quantkit quantize exited {done.returncode} for {label} (its error line is above)")
    made: dict[str, Any] = json.loads(report.read_text())
    return {
        "model": label,
        "file": out,
        "quantize_seconds": made["seconds"],
        "peak_rss_gib": round((made.get("peak_rss_bytes") or 0) / 2**30, 2),
        "held_out_check": made.get("held_out"),
    }


_PEER = """
import sys
from onnxruntime.quantization import QuantType, quantize_dynamic
quantize_dynamic(sys.argv[1], sys.argv[2], weight_type=QuantType.QUInt8, per_channel=False)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path(os.environ.get("QUANTKIT_ISNET", MODEL)))
    parser.add_argument("--ecssd", help="ECSSD folder (images/, masks/)")
    parser.add_argument("--limit", type=int, default=100, help="first N ECSSD photos")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per model (interleaved)")
    parser.add_argument("--vnni", action=argparse.BooleanOptionalAction, default=None)
    args = parser.parse_args()
    data = ecssd(args.ecssd)
    if not args.model.is_file() or data is None:
        sys.exit(f"skipped: needs {args.model} and ECSSD (--ecssd or $QUANTKIT_ECSSD)")
    isa = host_isa()
    vnni_row = isa.vnni if args.vnni is None else args.vnni
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        fp32 = work / "isnet-general-use.fp32.onnx"  # family from the file name, as for users
        onnx.save(upcast(onnx.load(str(args.model))), str(fp32))
        peer = work / "isnet-general-use.dynamic.onnx"
        seconds, peak = _child([sys.executable, "-c", _PEER, str(fp32), str(peer)])  # first: see _child
        peer_row = {
            "model": "peer: img.ly's method (quantize_dynamic, uint8 per-tensor weights)",
            "file": peer,
            "quantize_seconds": round(seconds, 1),
            "peak_rss_gib": round(peak / 2**30, 2),
        }
        rows = [
            _quantkit_row(
                "quantkit default (portable 7-bit weights)", args.model, work / "isnet-general-use.int8.onnx"
            )
        ]
        if vnni_row:
            vnni = work / "isnet-general-use.vnni.onnx"
            rows.append(
                _quantkit_row(
                    "quantkit --target-cpu vnni (8-bit weights)", args.model, vnni, "--target-cpu", "vnni"
                )
            )
        rows = [{"model": "FP16 as shipped", "file": args.model}, *rows, peer_row]
        models = [r["file"] for r in rows]
        accuracy = quantkit.compare(
            fp32, *models, images=data / "images", masks=data / "masks", limit=args.limit
        )
        speed = quantkit.bench(fp32, *models, options=quantkit.BenchOptions(images=CALIB, runs=args.runs))
        fp32_bytes = fp32.stat().st_size
    floor = accuracy.floor.iou if accuracy.floor else None
    truth = accuracy.reference.truth
    ref_time = speed.results[0].latency.p50_ms
    for row, scores, timing in zip(rows, accuracy.candidates, speed.results[1:], strict=True):
        iou = scores.agreement.iou
        row.update(
            file=Path(row["file"]).name,
            iou_mean=round(iou.mean, 4),
            iou_p05=round(iou.p05, 4),
            iou_min=round(iou.minimum, 4),
            mae=round(scores.agreement.mae, 5),
            max_f=round(scores.truth.max_f, 4) if scores.truth else None,
            maxf_delta=round(scores.truth.max_f - truth.max_f, 4) if scores.truth and truth else None,
            latency_ms=round(timing.latency.p50_ms, 1),
            latency_ratio=round(timing.latency.p50_ms / ref_time, 3),
            size_ratio=round(timing.size_bytes / fp32_bytes, 3),
        )
    where = (
        f"ECSSD {accuracy.images} photos (0001-{accuracy.images:04d}) at 1024 px, none used for calibration"
    )
    lines = [
        f"Real IS-Net (isnet-general-use, {args.model.name}); masks against the FP32 upcast on {where}; "
        f"latency: median of {args.runs} interleaved runs per model, onnxruntime "
        f"{speed.environment['onnxruntime']}, {cpu_name()} ({isa.describe()}); FP32 {ref_time:.0f} ms"
        + (f"; FP32 max-F {truth.max_f:.4f}" if truth else "")
        + (f"; FP32's JPEG-95 noise floor IoU {floor.mean:.4f} / p05 {floor.p05:.4f}" if floor else ""),
        "",
        "| model | IoU mean | IoU p05 | IoU min | MAE | max-F | Δ max-F | latency vs FP32 | size vs FP32 "
        "| quantize time | quantize peak |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        delta = "n/a" if r["maxf_delta"] is None else f"{r['maxf_delta']:+.4f}"
        took = f"{r['quantize_seconds']:.0f} s" if "quantize_seconds" in r else ""
        peak = f"{r['peak_rss_gib']:.2f} GiB" if r.get("peak_rss_gib") else ""
        cells = [r["model"], *(f"{r[k]:.4f}" for k in ("iou_mean", "iou_p05", "iou_min", "mae", "max_f"))]
        cells += [delta, f"{r['latency_ratio']:.3f}x", f"{r['size_ratio']:.3f}x", took, peak]
        lines.append("| " + " | ".join(cells) + " |")
    targets = {**TARGETS, "latency": LATENCY_TARGET[isa.vnni]}
    ours = rows[1]
    gap, drop = targets["floor_gap"], targets["maxf_drop"]
    met = {
        f"IoU mean within {gap} of the floor": floor is not None and ours["iou_mean"] >= floor.mean - gap,
        f"IoU p05 within {gap} of the floor": floor is not None and ours["iou_p05"] >= floor.p05 - gap,
        f"max-F drop <= {drop}": ours["maxf_delta"] is not None and ours["maxf_delta"] >= -drop,
        f"latency <= {targets['latency']}x FP32": ours["latency_ratio"] <= targets["latency"],
        f"size <= {targets['size']}x": ours["size_ratio"] <= targets["size"],
        f"quantize <= {targets['quantize_s']} s": ours["quantize_seconds"] <= targets["quantize_s"],
        f"quantize peak <= {targets['peak_gib']} GiB": 0 < ours["peak_rss_gib"] <= targets["peak_gib"],
    }
    lines += ["", "Targets for quantkit's default file (issue 20), this ISA:", ""]
    lines += [f"- {'met' if ok else 'MISSED'}: {name}" for name, ok in met.items()]
    md = "\n".join(lines) + "\n"
    print(md)
    payload = {
        "model": str(args.model.name),
        "photos": where,
        "cpu": cpu_name(),
        "isa": isa.to_dict(),
        "onnxruntime": speed.environment["onnxruntime"],
        "fp32_latency_ms": round(ref_time, 1),
        "fp32_max_f": round(truth.max_f, 4) if truth else None,
        "noise_floor": {"iou_mean": round(floor.mean, 4), "iou_p05": round(floor.p05, 4)} if floor else None,
        "rows": rows,
        "targets_met": met,
    }
    write("isnet", payload, md)


if __name__ == "__main__":
    main()
