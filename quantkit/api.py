"""quantkit from Python: the four commands and a one-photo cutout, with keyword-only options.

    import quantkit
    report = quantkit.quantize("u2netp.onnx", output="u2netp.int8.onnx")
    result = quantkit.compare("u2netp.onnx", "u2netp.int8.onnx", images="photos/")
    cut = quantkit.cutout(Image.open("photo.jpg"), session=quantkit.new_session("u2netp.int8.onnx"))

Every function raises :class:`~quantkit.errors.QuantkitError` (one line, an
``exit_code``) for anything the caller got wrong, checks every output before any
work, and writes nothing half-done.
"""

from __future__ import annotations

from pathlib import Path

from quantkit.accuracy.compare import CompareReport, plan_compare, run_compare
from quantkit.bench.measure import BenchOptions, BenchReport, plan_bench, run_bench
from quantkit.cluster.photos import RayOptions
from quantkit.progress import Progress
from quantkit.ptq.options import QuantizeOptions
from quantkit.ptq.pipeline import plan_quantize, run_quantize
from quantkit.ptq.report import QuantizeReport
from quantkit.removal.remove import RemoveOptions, RemoveReport, plan_remove, run_remove
from quantkit.runtime.base import RuntimeSettings

PathLike = str | Path


def quantize(
    model: PathLike,
    *,
    output: PathLike | None = None,
    options: QuantizeOptions | None = None,
    force: bool = False,
    keep_failed: bool = False,
    progress: Progress | None = None,
) -> QuantizeReport:
    """Quantize an FP32 U²-Net/IS-Net model to INT8 (default output: MODEL.int8.onnx).

    ``force`` replaces an existing output only if quantkit wrote it. Raises
    :class:`~quantkit.ptq.report.CheckFailed` (a :class:`~quantkit.errors.GateFailed`, with the
    whole report as ``.report``) when the held-out check misses its target after the search;
    nothing is written then unless ``keep_failed``.
    """
    job = plan_quantize(
        Path(model),
        output=Path(output) if output else None,
        options=options,
        force=force,
        keep_failed=keep_failed,
        progress=progress,
    )
    return run_quantize(job, progress)


def compare(
    reference: PathLike,
    *models: PathLike,
    images: PathLike,
    masks: PathLike | None = None,
    limit: int | None = None,
    family: str | None = None,
    noise_floor: bool = True,
    settings: RuntimeSettings | None = None,
    progress: Progress | None = None,
    ray: RayOptions | None = None,
) -> CompareReport:
    """Masks of ``models`` against ``reference``'s on the photos in ``images`` (ground truth: ``masks``).

    Check the result against thresholds with :func:`quantkit.accuracy.gate.failures`.
    ``ray`` runs the photos on a Ray cluster (``pip install 'quantkit[ray]'``), with the
    same results as here.
    """
    job = plan_compare(
        [Path(reference), *map(Path, models)],
        images=Path(images),
        masks=Path(masks) if masks else None,
        limit=limit,
        family=family,
        noise_floor=noise_floor,
        settings=settings,
        progress=progress,
    )
    return run_compare(job, progress, ray)


def bench(
    *models: PathLike, options: BenchOptions | None = None, progress: Progress | None = None
) -> BenchReport:
    """Size, peak RSS and latency of each model (on each runtime of ``options``), interleaved."""
    return run_bench(plan_bench([Path(m) for m in models], options=options, progress=progress), progress)


def remove(
    model: PathLike,
    inputs: list[PathLike],
    *,
    output_dir: PathLike,
    options: RemoveOptions | None = None,
    force: bool = False,
    progress: Progress | None = None,
    ray: RayOptions | None = None,
) -> RemoveReport:
    """Write a cutout (or mask) PNG per photo of ``inputs`` (files or folders) into ``output_dir``.

    ``ray`` cuts the photos out on a Ray cluster (``pip install 'quantkit[ray]'``); the
    PNGs, written here, are the same bytes.
    """
    job = plan_remove(
        Path(model), [Path(i) for i in inputs], output_dir=Path(output_dir), options=options, force=force
    )
    return run_remove(job, progress, ray)
