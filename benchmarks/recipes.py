"""The recipe table: what each step of the default recipe buys, measured in one run.

Quantizes the real u2netp with plain onnxruntime (``naive``) and with the default
recipe's rewrites switched on one after another (recipes are data: each row is a
``Recipe`` built from a prefix of ``DEFAULT.rewrites``), then measures every model against
the FP32 original on ECSSD photos (none of them used for calibration): mask IoU
(mean / 5th percentile), ground-truth max-F change, latency and size ratios, and
the time quantization took. Writes ``benchmarks/results/recipes.{json,md}``.

    python benchmarks/recipes.py [--ecssd PATH] [--limit 300] [--runs 20]

Without ECSSD the accuracy columns use the bundled calibration photos instead
(and say so), which flatters every recipe.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

from _common import CALIB, U2NETP, ecssd, write

import quantkit
from quantkit.passes.recipes import DEFAULT, NAIVE, Recipe
from quantkit.system import cpu_name


def recipes() -> list[tuple[str, Recipe]]:
    """naive, then the default recipe's rewrites switched on one after another, then the default."""
    out = [("naive (plain quantize_static: QDQ, per-channel, MinMax)", NAIVE)]
    for k, rewrite in enumerate(DEFAULT.rewrites, start=1):
        label = f"+ {rewrite.name}"
        out.append((label, replace(DEFAULT, name=label, rewrites=DEFAULT.rewrites[:k], check=False)))
    out.append(("default (+ held-out check and search)", DEFAULT))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ecssd", help="ECSSD folder (images/, masks/)")
    parser.add_argument("--limit", type=int, default=300, help="first N ECSSD photos")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    data = ecssd(args.ecssd)
    images, masks = (data / "images", data / "masks") if data else (CALIB, None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = []
        for k, (name, recipe) in enumerate(recipes()):
            options = quantkit.QuantizeOptions(
                recipe=recipe, use_cache=False
            )  # no shared statistics: honest times
            report = quantkit.quantize(U2NETP, output=Path(tmp) / f"recipe{k}.onnx", options=options)
            rows.append({"recipe": name, "quantize_seconds": round(report.seconds, 1)})
            models.append(report.output)
        accuracy = quantkit.compare(U2NETP, *models, images=images, masks=masks, limit=args.limit)
        speed = quantkit.bench(U2NETP, *models, options=quantkit.BenchOptions(images=CALIB, runs=args.runs))
    ref_truth = accuracy.reference.truth
    fp32 = speed.results[0]
    for row, scores, timing in zip(rows, accuracy.candidates, speed.results[1:], strict=True):
        iou = scores.agreement.iou
        row.update(
            iou_mean=round(iou.mean, 4),
            iou_p05=round(iou.p05, 4),
            iou_min=round(iou.minimum, 4),
            mae=round(scores.agreement.mae, 5),
            maxf_delta=round(scores.truth.max_f - ref_truth.max_f, 4) if scores.truth and ref_truth else None,
            latency_ratio=round(timing.latency.p50_ms / fp32.latency.p50_ms, 3),
            size_ratio=round(timing.size_bytes / fp32.size_bytes, 3),
        )
    floor = accuracy.floor.iou if accuracy.floor else None
    where = (
        f"first {accuracy.images} ECSSD photos" if data else f"{accuracy.images} bundled calibration photos"
    )
    lines = [
        f"u2netp, mask agreement with FP32 on {where}; latency: {args.runs} interleaved runs per model "
        f"on {cpu_name()}, onnxruntime {speed.environment['onnxruntime']}"
        + (f"; FP32 max-F {ref_truth.max_f:.4f}" if ref_truth else "")
        + (f"; JPEG-95 noise floor IoU {floor.mean:.4f} / p05 {floor.p05:.4f}" if floor else ""),
        "",
        "| recipe | IoU mean | IoU p05 | IoU min | Δ max-F | latency | size | quantize time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        delta = "n/a" if r["maxf_delta"] is None else f"{r['maxf_delta']:+.4f}"
        lines.append(
            f"| {r['recipe']} | {r['iou_mean']:.4f} | {r['iou_p05']:.4f} | {r['iou_min']:.4f} | {delta} "
            f"| {r['latency_ratio']:.3f}x | {r['size_ratio']:.3f}x | {r['quantize_seconds']:.0f} s |"
        )
    md = "\n".join(lines) + "\n"
    print(md)
    write("recipes", {"images": where, "fp32_latency_ms": fp32.latency.to_dict(), "recipes": rows}, md)


if __name__ == "__main__":
    main()
