"""How far last-bit rounding of the calibration ranges moves the accuracy figures.

Runs the default recipe's steps on u2netp up to calibration (keeping the final float
model and its ranges), quantizes that float model with those ranges, and again with
every range nudged by ``--nudge`` of itself (1e-6: the last bits of a float32; random
sign per bound, one seed per row), then compares them all with FP32 on ECSSD. The
spread of the nudged rows is how finely the ECSSD figures can judge a change that
moves ranges only in their last bits - such as 0.3.0 taking its ranges from the pass
before instead of a pass of their own (all 380 agree to 7e-7 of their width).

Quantized without the post passes (side layout, compaction), which change no output
bit; the un-nudged row reproduces ``quantkit quantize``'s masks exactly.
Writes ``benchmarks/results/range_noise.{json,md}``.

    python benchmarks/range_noise.py [--ecssd PATH] [--limit 500] [--seeds 2] [--nudge 1e-6]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from _common import U2NETP, ecssd, write

import quantkit
from quantkit.files.scratch import scratch_dir
from quantkit.progress import NullProgress
from quantkit.ptq.pipeline import _Run, plan_quantize
from quantkit.ptq.quantizer import quantize_with_ranges
from quantkit.system import cpu_name


def nudged(ranges: dict, nudge: float, seed: int) -> dict:
    """``ranges`` (onnxruntime's TensorsData JSON) with every bound times 1 ± ``nudge``, in float32."""
    rng = np.random.default_rng(seed)
    out = json.loads(json.dumps(ranges))
    for entry in out["data"].values():
        for bound in ("lowest", "highest"):
            value = np.float32(entry[bound]["data"][0])
            entry[bound]["data"][0] = float(np.float32(value * (1 + nudge * rng.choice([-1.0, 1.0]))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ecssd", help="ECSSD folder (images/, masks/)")
    parser.add_argument("--limit", type=int, default=500, help="first N ECSSD photos")
    parser.add_argument("--seeds", type=int, default=2, help="nudged rows")
    parser.add_argument("--nudge", type=float, default=1e-6, help="relative change of every range bound")
    args = parser.parse_args()
    data = ecssd(args.ecssd)
    if data is None:
        raise SystemExit(
            "error: needs ECSSD (--ecssd or $QUANTKIT_ECSSD): the bundled photos are the calibration set"
        )
    with tempfile.TemporaryDirectory(prefix="quantkit-noise-") as tmp:
        folder = Path(tmp)
        options = quantkit.QuantizeOptions(use_cache=False)
        job = plan_quantize(U2NETP, output=folder / "unused.onnx", options=options)
        run = _Run(job, NullProgress())  # the pipeline's own steps, stopped after calibration
        with scratch_dir() as work:
            run.work = work
            float_model, _, carried = run.rewrite(run.prepare())
            float_copy = folder / "float.onnx"
            float_copy.write_bytes(float_model.read_bytes())
            ranges = json.loads(run.calibrate(float_model, carried).read_text())
        models = []
        for seed in range(args.seeds + 1):
            path = folder / f"ranges{seed}.json"
            path.write_text(json.dumps(nudged(ranges, args.nudge, seed) if seed else ranges))
            model = folder / ("as-shipped.onnx" if seed == 0 else f"nudged-{seed}.onnx")
            quantize_with_ranges(float_copy, path, model, options, ())
            models.append(model)
        report = quantkit.compare(
            U2NETP, *models, images=data / "images", masks=data / "masks", limit=args.limit
        )
    ref = report.reference.truth
    rows = []
    for k, scores in enumerate(report.candidates):
        iou = scores.agreement.iou
        rows.append(
            {
                "ranges": "as calibrated" if k == 0 else f"nudged, seed {k}",
                "iou_mean": round(iou.mean, 4),
                "iou_p05": round(iou.p05, 4),
                "mae": round(scores.agreement.mae, 5),
                "maxf_delta": round(scores.truth.max_f - ref.max_f, 4) if scores.truth and ref else None,
            }
        )
    header = (
        f"u2netp default INT8 on the first {report.images} ECSSD photos, {cpu_name()}, quantkit "
        f"{quantkit.__version__}; every range bound nudged by {args.nudge:g} of itself (random sign)"
    )
    lines = [header, "", "| ranges | IoU mean | IoU p05 | MAE | Δ max-F |", "|---|---:|---:|---:|---:|"]
    lines += [
        f"| {r['ranges']} | {r['iou_mean']:.4f} | {r['iou_p05']:.4f} | {r['mae']:.5f} | {r['maxf_delta']} |"
        for r in rows
    ]
    markdown = "\n".join(lines) + "\n"
    print(markdown)
    write("range_noise", {"nudge": args.nudge, "photos": report.images, "rows": rows}, markdown)


if __name__ == "__main__":
    main()
