"""FP32 ONNX in, INT8 ONNX out: the quantization pipeline.

:func:`quantize` reads as the flow: plan (every input read and every output
checked before any work), prepare, rewrite (statistics for all rewrites in as
few passes over the photos as their dependencies allow), calibration ranges of the
final float model (carried from those passes, or one of their own),
``quantize_static``, check on held-out photos against the noise floor (and
search if it misses), post-passes, write - or, when the check still misses its target,
no file at all (unless asked to keep it) and :class:`~quantkit.ptq.report.CheckFailed`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from quantkit import __version__
from quantkit.accuracy.check import CheckReport, CheckSettings, check_and_search
from quantkit.accuracy.heldout import HeldOut
from quantkit.accuracy.search import NO_CHANGE, Plan, SearchLimits
from quantkit.errors import QuantkitError
from quantkit.files.atomic import atomic_file
from quantkit.files.guard import OutputGuard
from quantkit.files.ownership import FAMILY_KEY, MODEL_KEY, TARGET_CPU_KEY, WEIGHT_BITS_KEY, OutputKind
from quantkit.files.scratch import scratch_dir
from quantkit.graph.logits import saturating_logits
from quantkit.graph.opset import ai_onnx_opset
from quantkit.graph.precision import upcast
from quantkit.graph.prepare import other_size_input, prepare, restore_interface, with_static_input
from quantkit.isa import IsaInfo, host_isa
from quantkit.model.images import list_images
from quantkit.model.spec import ModelSpec, load_model, quantized_ops, spec_from_model
from quantkit.passes.base import FloatRewrite, PassReport
from quantkit.progress import NullProgress, Progress
from quantkit.ptq.cache import Cache, cache_key, file_digest, photos_digest
from quantkit.ptq.census import census
from quantkit.ptq.memory import check_memory
from quantkit.ptq.options import CalibMethod, QuantizeOptions
from quantkit.ptq.quantizer import quantize_with_ranges
from quantkit.ptq.ranges import (
    CalibratedRanges,
    calibration_tensors,
    histogram_ranges,
    minmax_ranges,
    save_ranges,
    shared_concat_ranges,
)
from quantkit.ptq.report import CalibrationReport, CheckFailed, QuantizeReport
from quantkit.ptq.samples import PhotoFeeds
from quantkit.runtime.base import OptLevel, RuntimeSettings
from quantkit.runtime.ort import ort_session
from quantkit.statistics.collect import CALIBRATION_SESSION, STATS_SESSION, collect
from quantkit.statistics.types import ActivationStats, Level, StatsRequest, decode_stats, encode_stats
from quantkit.system import peak_rss_bytes


def bundled_photos() -> Path:
    """The 22 calibration photos shipped with quantkit (``calib_images/`` in the source tree)."""
    from importlib.resources import files

    return Path(str(files("quantkit.calib_images")))


def default_output(model: Path) -> Path:
    stem = model.name[: -len(".onnx")] if model.name.lower().endswith(".onnx") else model.name
    return model.with_name(f"{stem}.int8.onnx")


def split_held_out(files: list[Path], limit: int) -> tuple[list[Path], list[Path]]:
    """Every fourth photo (by sorted name), at most ``limit``, is held out; the rest calibrate."""
    if len(files) < 4:
        return files, files
    held = files[3::4][:limit]
    return [f for f in files if f not in held], held


@dataclass(frozen=True)
class QuantizeJob:
    """Everything decided before any work: inputs read, outputs checked, photos chosen."""

    model: Path
    output: Path
    spec: ModelSpec
    interface: onnx.GraphProto  # the original model's inputs and outputs, to give back at the end
    options: QuantizeOptions
    calib: list[Path]
    held_out: list[Path]
    isa: IsaInfo  # the CPU quantizing: it decides how the check runs, never what is written
    cache: Cache
    guard: OutputGuard
    keep_failed: bool = False  # write the output even if the check misses its target (still an error)

    @property
    def check_settings(self) -> RuntimeSettings:
        """How the held-out check runs its models: on onnxruntime's integer kernels where they
        compute the file right; else (a file for VNNI CPUs made on one without) its QDQ graph
        as written, in float - what the VNNI CPU computes, up to float rounding, only slower."""
        exact = self.isa.runs(self.options.target_cpu)
        return RuntimeSettings(mem_pattern=False, opt_level=OptLevel.ALL if exact else OptLevel.DISABLE)


def plan_quantize(
    model: Path,
    *,
    output: Path | None = None,
    options: QuantizeOptions | None = None,
    force: bool = False,
    keep_failed: bool = False,
    progress: Progress | None = None,
    isa: IsaInfo | None = None,
) -> QuantizeJob:
    """Read and check every input, check the output, choose the photos; raise before any work.

    ``keep_failed`` writes the output even when the held-out check misses its target (the run
    still ends in :class:`~quantkit.ptq.report.CheckFailed`); ``isa`` is the quantizing CPU's
    features (this CPU's unless given): they decide only how the check runs.
    """
    options = options or QuantizeOptions()
    progress = progress or NullProgress()
    output = output or default_output(model)
    original = load_model(model)
    spec = spec_from_model(original, model, options.family)
    found = quantized_ops(original)
    if found:
        raise QuantkitError(
            f"model {model} is already quantized ({', '.join(found[:3])}); quantize its FP32 original"
        )
    if not spec.family.quantizable:
        raise QuantkitError(
            f"model {model}: quantize supports the U²-Net and IS-Net families (convolutional); "
            f"{spec.family.name} is {spec.family.architecture.value} - compare, remove and bench still work"
        )
    _check_excludes(original, options.exclude)
    calib_dir = options.calib_dir or bundled_photos()
    calib = list_images(calib_dir, limit=options.calib_limit)
    held_out: list[Path] = []
    if options.recipe.check:
        if options.eval_dir is not None:
            held_out = list_images(options.eval_dir, limit=options.eval_limit)
        else:
            calib, held_out = split_held_out(calib, options.eval_limit)
    guard = OutputGuard(force=force)
    guard.add_inputs([model, calib_dir, *([options.eval_dir] if options.eval_dir else [])])
    guard.file(output, OutputKind.MODEL, "-o/--output")
    if spec.detection.note:
        progress.warn(spec.detection.note)
    check_memory(model, original, spec)
    interface = onnx.GraphProto()
    interface.input.extend(original.graph.input)
    interface.output.extend(original.graph.output)
    cache = Cache.open(options.cache_dir, options.use_cache, progress.warn)
    isa = isa or host_isa()
    if held_out and not isa.runs(options.target_cpu):
        progress.warn(
            f"this CPU ({isa.describe()}) cannot run a --target-cpu {options.target_cpu.value} file on its "
            "integer kernels: the held-out check runs its QDQ graph in float instead "
            "(right up to float rounding, slower)"
        )
    return QuantizeJob(
        model, output, spec, interface, options, calib, held_out, isa, cache, guard, keep_failed
    )


def quantize(
    model: Path,
    *,
    output: Path | None = None,
    options: QuantizeOptions | None = None,
    force: bool = False,
    keep_failed: bool = False,
    progress: Progress | None = None,
) -> QuantizeReport:
    """Quantize ``model`` to INT8; the output file appears only when everything succeeded
    (or, with ``keep_failed``, when only the held-out check failed: :class:`CheckFailed` still)."""
    progress = progress or NullProgress()
    job = plan_quantize(
        model, output=output, options=options, force=force, keep_failed=keep_failed, progress=progress
    )
    return run_quantize(job, progress)


def run_quantize(job: QuantizeJob, progress: Progress | None = None) -> QuantizeReport:
    """Run a planned quantization; raise :class:`CheckFailed` (a failed gate, exit code 1) when
    the held-out check still misses its target after the search - with no file written unless
    the job keeps failed ones - so that a broken model never passes for a finished one."""
    progress = progress or NullProgress()
    started = time.monotonic()
    run = _Run(job, progress)
    with scratch_dir() as work:
        run.work = work
        prepared = run.prepare()
        float_model, rewrites, carried = run.rewrite(prepared)
        ranges = run.calibrate(float_model, carried)
        run.skips_of_the_last_pass()
        for _, reason in run.feeds.skips.skipped:  # once, whichever passes ran (the last saw every photo)
            progress.warn(f"skipped calibration image {reason}")
        quantized = run.quantize(ranges)
        check, quantized = run.check(float_model, ranges, quantized)
        final, post = run.post_passes(onnx.load(str(quantized)))
        if job.spec.dynamic_size:  # prepared at a fixed size: give the model its dynamic shapes back
            final = run.restore_dynamic(final)
        final = run.provenance(final, check)
        passed = check is None or check.passed
        written = passed or job.keep_failed
        if written:
            with atomic_file(job.output, suffix=".onnx") as tmp:
                onnx.save(final, str(tmp))
    report = QuantizeReport(
        model=job.model,
        output=job.output,
        detection=job.spec.detection,
        recipe=job.options.recipe.name,
        input_bytes=job.model.stat().st_size,
        output_bytes=job.output.stat().st_size if written else final.ByteSize(),
        fp16=job.spec.fp16,
        float_bytes=run.float_bytes,
        seconds=time.monotonic() - started,
        peak_rss_bytes=peak_rss_bytes(),
        opset_in=job.spec.opset,
        opset_out=ai_onnx_opset(final),
        calibration=CalibrationReport(
            used=tuple(p.name for p in run.feeds.used),
            skipped=tuple((p.name, r) for p, r in run.feeds.skips.skipped),
            passes=run.photo_passes,
        ),
        passes=(*rewrites, *post),
        check=check,
        census=census(final),
        isa=job.isa,
        options=job.options,
        written=written,
    )
    if not passed:
        raise CheckFailed(report)
    return report


class _Run:
    """The steps of one quantization, sharing the job, the scratch folder and the photo stream."""

    def __init__(self, job: QuantizeJob, progress: Progress) -> None:
        self.job = job
        self.progress = progress
        self.work = Path()
        self.feeds = PhotoFeeds(job.calib, job.spec)
        self.photo_passes = 0
        self.quantizations = 0
        self.reference = job.model  # what the INT8 masks are checked against (an FP16 model's upcast)
        self.float_bytes = job.model.stat().st_size  # the FP32 model's size, which INT8 is measured against
        # Hashes every calibration photo's bytes: once per run, not once per cache lookup.
        self.photos_key = photos_digest(job.calib)

    def prepare(self) -> onnx.ModelProto:
        self.progress.start("preparing the model (opset, shape inference)")
        self.feeds.check("calibration")
        spec = self.job.spec
        original = load_model(self.job.model)
        if spec.fp16:  # the FP32 upcast is the float model: statistics, quantization, the check's reference
            original = upcast(original)
            self.reference = self.work / "reference-fp32.onnx"
            onnx.save(original, str(self.reference))
            self.float_bytes = self.reference.stat().st_size
        path = prepare(with_static_input(original, spec.height, spec.width), self.work)
        del original
        return onnx.load(str(path))

    def skips_of_the_last_pass(self) -> None:
        """The photos a pass skipped: remembered with the cache, so a run whose statistics and
        ranges all come from it (no photo decoded) still reports a broken photo."""
        key = cache_key("skips", self.photos_key)
        if self.photo_passes:
            entries = [[path.name, reason] for path, reason in self.feeds.skips.skipped]
            self.job.cache.save(key, json.dumps(entries).encode())
            return
        by_name = {path.name: path for path in self.job.calib}
        for name, reason in self.job.cache.load(key, _decode_skips) or []:
            if name in by_name:
                self.feeds.skips.add(by_name[name], str(reason))

    def measure(self, model: onnx.ModelProto, request: StatsRequest, label: str) -> ActivationStats:
        """One pass over the calibration photos (or the cache) answering ``request``."""
        path = self.work / "measured.onnx"
        onnx.save(model, str(path))
        key = cache_key("stats", file_digest(path), self.photos_key, request.key())
        path.unlink()
        cached = self.job.cache.load(key, decode_stats)
        if cached is not None:
            return cached
        self.progress.start(label, len(self.feeds))
        stats = collect(model, request, self.feeds, self.work, tick=self.progress.advance)
        self.photo_passes += 1
        self.job.cache.save(key, encode_stats(stats))
        return stats

    def rewrite(
        self, model: onnx.ModelProto
    ) -> tuple[Path, list[tuple[str, PassReport]], ActivationStats | None]:
        """Apply the recipe's float rewrites; statistics are measured only when no rewrite
        before could carry them, and then also for the later rewrites they will reach - and
        for calibration, whose ranges need no pass of their own if every later rewrite
        carries them. (Measuring past a rewrite that cannot carry is work thrown away: the
        first pass used to reduce 448 tensors of u2netp where absorption reads 119.)"""
        rewrites = self.job.options.recipe.rewrites
        stats: ActivationStats | None = None
        reports: list[tuple[str, PassReport]] = []
        for k, rewrite in enumerate(rewrites):
            request = rewrite.request(model)
            if request and (stats is None or not request.covered_by(stats)):
                reached = _carried_to(rewrites[k:])
                for later in reached[1:]:
                    request = request | later.request(model)
                minmax = self.job.options.method is CalibMethod.MINMAX
                tails = self.clip_tail > 0
                if minmax and all(r.carries and (r.carries_distributions or not tails) for r in rewrites[k:]):
                    request = request | self._calibration_request(calibration_tensors(model))
                stats = self.measure(model, request, f"measuring activations ({rewrite.name})")
            result = rewrite.apply(model, stats or ActivationStats())
            model, stats = result.model, result.stats
            reports.append((rewrite.name, result.report))
        path = self.work / "float.onnx"
        onnx.save(model, str(path))
        return path, reports, stats

    def calibrate(self, float_model: Path, carried: ActivationStats | None) -> CalibratedRanges:
        """Activation ranges of the final float model (onnxruntime's calibration cache), with
        the exact ones beside them for the search.

        MinMax ranges come from the statistics the rewrites carried when those cover every
        tensor (rescaled, repeated or projected channels: exact up to float rounding - on
        u2netp all 380 agree with a pass of their own to 7e-7 of their width, and the ECSSD
        figures move in the fourth decimal), and from a pass of their own otherwise
        (histogram methods always need their own).
        """
        method = self.job.options.method
        model = onnx.load(str(float_model))
        tensors = calibration_tensors(model)
        request = self._calibration_request(tensors)
        if method is CalibMethod.MINMAX and carried is not None and request.covered_by(carried):
            return self._minmax(carried, tensors, model)
        return self._measured_ranges(float_model, model, tensors)

    def _measured_ranges(self, path: Path, model: onnx.ModelProto, tensors: list[str]) -> CalibratedRanges:
        method = self.job.options.method
        key = cache_key(
            "ranges",
            file_digest(path),
            self.photos_key,
            method.value,
            repr((self.clip_tail, self.job.options.recipe.ranges)),
        )
        cached = self.job.cache.load(key, CalibratedRanges.decode)
        if cached is not None and cached.covers(tensors):
            return cached
        self.progress.start(f"calibrating ({method.value})", len(self.feeds))
        tick = self.progress.advance
        if method is CalibMethod.MINMAX:
            request = self._calibration_request(tensors)
            # Exact min-max ranges are measured as onnxruntime's own calibrator measures them
            # (see CALIBRATION_SESSION); clipped tails need no such match, and run optimised.
            settings = CALIBRATION_SESSION if self.clip_tail == 0 else STATS_SESSION
            stats = collect(model, request, self.feeds, self.work, tick=tick, settings=settings)
            ranges = self._minmax(stats, tensors, model)
        else:
            measured = histogram_ranges(model, tensors, self.feeds, method, self.work, tick=tick)
            ranges = CalibratedRanges.only(measured)
        self.photo_passes += 1
        self.job.cache.save(key, ranges.encode())
        return ranges

    def _calibration_request(self, tensors: list[str]) -> StatsRequest:
        """MinMax ranges need each tensor's min and max; clipped tails, its distribution too."""
        distributions = frozenset(tensors) if self.clip_tail > 0 else frozenset()
        return StatsRequest(dict.fromkeys(tensors, Level.TENSOR), distributions=distributions)

    def _minmax(self, stats: ActivationStats, tensors: list[str], model: onnx.ModelProto) -> CalibratedRanges:
        policy = self.job.options.recipe.ranges
        saturated = saturating_logits(model) if policy.saturate_logits else set()
        outputs = [o.name for o in model.graph.output]
        chosen = minmax_ranges(stats, tensors, self.clip_tail, saturated, exact=outputs)
        exact = minmax_ranges(stats, tensors)
        if policy.share_concat:
            chosen, exact = shared_concat_ranges(model, chosen), shared_concat_ranges(model, exact)
        return CalibratedRanges(chosen, exact)

    @property
    def clip_tail(self) -> float:
        options = self.job.options
        return options.recipe.ranges.clip_tail if options.clip_tail is None else options.clip_tail

    def quantize(self, ranges: CalibratedRanges, plan: Plan = NO_CHANGE) -> Path:
        """The model quantized with ``ranges`` as ``plan`` changes them (float nodes, exact ranges)."""
        self.progress.start("quantizing")
        self.quantizations += 1
        target = self.work / f"quantized-{self.quantizations}.onnx"
        table = self.work / f"ranges-{self.quantizations}.json"
        save_ranges(ranges.with_exact(plan.exact), table)
        exclude = self.job.options.exclude + plan.float_nodes
        try:
            quantize_with_ranges(self.work / "float.onnx", table, target, self.job.options, exclude)
        finally:
            table.unlink()
        return target

    def check(
        self, float_model: Path, ranges: CalibratedRanges, quantized: Path
    ) -> tuple[CheckReport | None, Path]:
        job = self.job
        if not job.held_out:
            return None, quantized
        held = HeldOut(job.held_out, job.spec, self.reference, self.work, self.progress, job.check_settings)
        for _, reason in held.skipped:
            self.progress.warn(f"skipped held-out image {reason}")
        options = job.options
        settings = CheckSettings(
            target_iou=options.target_iou,
            noise_margin=options.noise_margin,
            limits=SearchLimits(
                target_iou=0.0, seconds=options.search_seconds, max_cost=options.max_slowdown
            ),
        )
        report = check_and_search(
            held,
            quantized,
            float_model,
            lambda plan: self.quantize(ranges, plan),
            settings,
            self.progress,
            self.work,
            relaxable=ranges.relaxable,
        )
        if report.search is not None and report.search.chosen:
            quantized = self.quantize(ranges, report.search.plan)
        return report, quantized

    def post_passes(self, model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[tuple[str, PassReport]]]:
        reports: list[tuple[str, PassReport]] = []
        for post in self.job.options.recipe.post:
            model, report = post.apply(model)
            reports.append((post.name, report))
        return model, reports

    def restore_dynamic(self, final: onnx.ModelProto) -> onnx.ModelProto:
        """``final`` with open sizes again if it then runs at another size, else unchanged (warned)."""
        restored = restore_interface(final, _as_model(self.job.interface))
        name, shape = other_size_input(final)
        path = self.work / "restored.onnx"  # a file, not bytes: no second copy of a large model
        onnx.save(restored, str(path))
        try:
            session = ort_session(path, STATS_SESSION)
            session.run(None, {name: np.zeros(shape, np.float32)})
        except Exception:  # onnxruntime raises its own Fail/InvalidArgument types
            dims = final.graph.input[0].type.tensor_type.shape.dim
            fixed = "x".join(str(d.dim_value) for d in dims)
            self.progress.warn(
                f"the quantized model keeps the fixed input {fixed} it was calibrated at: its graph computes "
                "sizes from the input and they were folded to constants (rembg feeds this size)"
            )
            return final
        return restored

    def provenance(self, model: onnx.ModelProto, check: CheckReport | None) -> onnx.ModelProto:
        """Say in the file who made it, how, from what: quantkit's version, recipe, family, the
        CPUs it is for and its weights' bits (the runtime refuses a VNNI file elsewhere),
        calibration photos digest and the held-out IoU - and whether that missed its target, for
        a file kept with ``--keep-failed`` (and mark it as quantkit's own). Nothing about the CPU
        that quantized: the same inputs give the same bytes on every machine."""
        job = self.job
        target = job.options.target_cpu
        values = {
            MODEL_KEY: __version__,
            "quantkit.recipe": job.options.recipe.name,
            FAMILY_KEY: job.spec.family.name,
            TARGET_CPU_KEY: target.value,
            WEIGHT_BITS_KEY: str(target.weight_bits),
            "quantkit.calibration": f"{len(self.feeds.used)} photos, sha256 {self.photos_key[:16]}",
        }
        if check is not None:
            values["quantkit.held_out_iou"] = f"{check.final.mean:.4f} (noise floor {check.floor.mean:.4f})"
            if not check.passed:
                values["quantkit.check"] = f"FAILED: {check.verdict()}"
        model.producer_name = "quantkit"
        model.producer_version = __version__
        del model.metadata_props[:]
        for key, value in values.items():
            model.metadata_props.add(key=key, value=value)
        return model


def _carried_to(rewrites: tuple[FloatRewrite, ...]) -> tuple[FloatRewrite, ...]:
    """The first rewrite and those its statistics reach: up to the first that cannot carry them."""
    for k, rewrite in enumerate(rewrites):
        if not rewrite.carries:
            return rewrites[: k + 1]
    return rewrites


def _as_model(interface: onnx.GraphProto) -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.graph.CopyFrom(interface)
    return model


def _check_excludes(model: onnx.ModelProto, names: tuple[str, ...]) -> None:
    known = {n.name for n in model.graph.node}
    missing = [n for n in names if n not in known]
    if missing:
        convs = sorted(n.name for n in model.graph.node if n.op_type == "Conv")
        hint = ", ".join(convs[:5])
        raise QuantkitError(
            f"--exclude: no node named {', '.join(missing)} in the model "
            f"(Conv nodes are named like {hint}, ...)"
        )


def _decode_skips(data: bytes) -> list[tuple[str, str]]:
    entries = json.loads(data)
    if not (isinstance(entries, list) and all(isinstance(e, list) and len(e) == 2 for e in entries)):
        raise ValueError("not a list of (name, reason) pairs")
    return [(str(name), str(reason)) for name, reason in entries]
