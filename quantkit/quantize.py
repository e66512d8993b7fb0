"""FP32 ONNX in, INT8 ONNX out: the quantization pipeline and its recipes.

``Recipe.NAIVE`` is plain onnxruntime: opset upgrade, ``quant_pre_process``,
``quantize_static`` with the chosen options. On u2netp it runs 2.3x faster and
destroys the masks (mean IoU vs FP32 ≈ 0.7).

``Recipe.DEFAULT`` keeps the masks and the speed. Measured step by step on
ECSSD (see benchmarks/recipes.py), each step is an exact or near-exact rewrite
of the float model before onnxruntime quantizes it, plus a check:

1. offset absorption (:mod:`quantkit.absorb`) - moves near-constant channel
   offsets into biases, the root cause of u2netp's collapse;
2. cross-layer equalisation (:mod:`quantkit.equalize`) - balances channel
   ranges between activations and weights;
3. widening (:mod:`quantkit.widen`) - gives the one-channel side-output and the
   3-channel first convolution shapes onnxruntime's INT8 kernels run fast;
4. ``quantize_static`` (QDQ, per-channel S8 weights, U8 activations, MinMax on
   the calibration photos; 7-bit weights only on CPUs without VNNI);
5. a check on held-out photos against the *original* FP32 model, and - only if
   ``target_iou`` is missed - a bounded search that keeps the few convolutions
   that lose the most signal in float (:mod:`quantkit.search`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantFormat as OrtQuantFormat
from onnxruntime.quantization import QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from quantkit.absorb import OffsetAbsorption, absorb_offsets, find_offsets
from quantkit.calibrate import CalibMethod, cache_dir, calibrate, calibration_key
from quantkit.calibration import FolderCalibrationReader
from quantkit.compact import compact
from quantkit.equalize import EqualizationReport, equalize
from quantkit.errors import QuantkitError
from quantkit.fileio import atomic_output, check_writable
from quantkit.graph import MIN_QDQ_OPSET, ai_onnx_opset, upgrade_opset
from quantkit.images import list_images
from quantkit.inspect import NodeCensus, census
from quantkit.isa import IsaInfo, detect
from quantkit.masks import HeldOut
from quantkit.metrics import AgreementLog, Summary
from quantkit.progress import NullProgress, Progress
from quantkit.search import SearchLimits, SearchResult, search_islands
from quantkit.sensitivity import LayerLoss, conv_macs, layer_losses
from quantkit.spec import ModelSpec, load_model, spec_from_model
from quantkit.stats import collect_stats
from quantkit.widen import WideningReport, widen


class Recipe(str, Enum):
    DEFAULT = "default"
    NAIVE = "naive"


class Step(str, Enum):
    """The default recipe's steps; all on by default, switchable to measure each one."""

    ABSORB = "absorb"
    EQUALIZE = "equalize"
    WIDEN = "widen"
    SEARCH = "search"


ALL_STEPS = frozenset(Step)


class QuantFormat(str, Enum):
    QDQ = "qdq"
    QOPERATOR = "qoperator"

    def to_ort(self) -> OrtQuantFormat:
        return OrtQuantFormat.QDQ if self is QuantFormat.QDQ else OrtQuantFormat.QOperator


def default_calib_dir() -> Path:
    """``./calib_images`` if present, else the folder shipped beside the package source."""
    here = Path("calib_images")
    if here.is_dir():
        return here
    source_tree = Path(__file__).resolve().parent.parent / "calib_images"
    return source_tree if source_tree.is_dir() else here


def default_output(model: Path) -> Path:
    stem = model.name[: -len(".onnx")] if model.name.lower().endswith(".onnx") else model.name
    return model.with_name(f"{stem}.int8.onnx")


@dataclass(frozen=True)
class QuantizeOptions:
    model: Path
    output: Path | None = None
    calib_dir: Path | None = None
    calib_limit: int | None = None
    recipe: Recipe = Recipe.DEFAULT
    fmt: QuantFormat = QuantFormat.QDQ
    per_channel: bool = True
    method: CalibMethod = CalibMethod.MINMAX
    exclude: tuple[str, ...] = ()
    force: bool = False
    eval_dir: Path | None = None  # default recipe: held-out calibration photos if None
    eval_limit: int | None = 64
    target_iou: float = 0.95
    search_seconds: float = 120.0
    max_slowdown: float = 0.06  # estimated latency the search may add, over all-INT8
    use_cache: bool = True
    equalize_alpha: float = 0.5
    steps: frozenset[Step] = ALL_STEPS  # default recipe only

    @property
    def resolved_output(self) -> Path:
        return self.output or default_output(self.model)


@dataclass
class QuantizeReport:
    model: Path
    output: Path
    recipe: Recipe
    input_bytes: int
    output_bytes: int
    seconds: float
    opset_in: int
    opset_out: int
    calib_used: list[str]
    calib_skipped: list[tuple[str, str]]
    eval_images: list[str]
    census: NodeCensus
    isa: IsaInfo
    options: QuantizeOptions
    offsets: list[OffsetAbsorption] = field(default_factory=list)
    equalization: EqualizationReport | None = None
    widening: WideningReport | None = None
    held_out_before_search: Summary | None = None
    held_out_final: Summary | None = None
    search: SearchResult | None = None
    losses: list[LayerLoss] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.output_bytes / self.input_bytes if self.input_bytes else float("nan")

    def to_dict(self) -> dict[str, object]:
        def summary(s: Summary | None) -> dict[str, float] | None:
            return None if s is None else {"mean": s.mean, "p05": s.p05, "min": s.minimum}

        opts = self.options
        return {
            "model": str(self.model),
            "output": str(self.output),
            "recipe": self.recipe.value,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "size_ratio": round(self.ratio, 4),
            "seconds": round(self.seconds, 1),
            "opset": {"input": self.opset_in, "output": self.opset_out},
            "options": {
                "format": opts.fmt.value,
                "per_channel": opts.per_channel,
                "method": opts.method.value,
                "exclude": list(opts.exclude),
                "target_iou": opts.target_iou,
                "reduce_range": self.isa.reduce_range,
            },
            "calibration": {
                "used": self.calib_used,
                "skipped": [{"file": f, "reason": r} for f, r in self.calib_skipped],
            },
            "isa": self.isa.to_dict(),
            "nodes": self.census.to_dict(),
            "offsets_absorbed": [o.to_dict() for o in self.offsets],
            "equalization": self.equalization.to_dict() if self.equalization else None,
            "widened": self.widening.to_dict() if self.widening else None,
            "held_out": {
                "images": self.eval_images,
                "iou_before_search": summary(self.held_out_before_search),
                "iou_final": summary(self.held_out_final),
            },
            "search": self.search.to_dict() if self.search else None,
            "worst_layers": [loss.to_dict() for loss in self.losses[:8]],
        }


def split_held_out(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """Every fourth photo (by sorted name) is held out for checking; the rest calibrate."""
    if len(files) < 4:
        return files, files
    held = files[3::4]
    return [f for f in files if f not in held], held


@contextlib.contextmanager
def _inside(folder: Path) -> Iterator[None]:
    """Run with ``folder`` as the working directory: onnxruntime's symbolic shape
    inference dumps ``sym_shape_infer_temp.onnx`` and a ``.data`` file into the
    working directory when it gives up - that must not be the user's folder."""
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _prepare(model: onnx.ModelProto, work: Path) -> Path:
    upgraded = upgrade_opset(model, MIN_QDQ_OPSET)
    work = work.resolve()
    raw = work / "upgraded.onnx"
    onnx.save(upgraded, str(raw))
    prepared = work / "prepared.onnx"
    with _inside(work):
        try:
            quant_pre_process(str(raw), str(prepared), skip_symbolic_shape=False)
        except Exception as exc:  # symbolic shape inference fails on dynamic or exotic graphs
            try:
                quant_pre_process(str(raw), str(prepared), skip_symbolic_shape=True)
            except Exception:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise QuantkitError(f"onnxruntime's quant_pre_process failed: {first[:200]}") from exc
    return prepared


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


def _quantize_once(
    source: Path,
    target: Path,
    opts: QuantizeOptions,
    cache_json: Path,
    exclude: tuple[str, ...],
    isa: IsaInfo,
) -> None:
    quantize_static(
        str(source),
        str(target),
        None,
        quant_format=opts.fmt.to_ort(),
        per_channel=opts.per_channel,
        reduce_range=isa.reduce_range,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=list(exclude),
        calibrate_method=opts.method.to_ort(),
        calibration_cache_path=str(cache_json),
    )


@dataclass
class _Build:
    """A rewritten float model and its calibration, ready to be quantized any number of times."""

    float_path: Path
    cache_json: Path
    temporary_cache: bool
    reader: FolderCalibrationReader
    offsets: list[OffsetAbsorption]
    equalization: EqualizationReport | None
    widening: WideningReport | None


def _build(
    prepared_path: Path,
    files: list[Path],
    calib_dir: Path,
    spec: ModelSpec,
    opts: QuantizeOptions,
    work: Path,
    progress: Progress,
    tag: str,
) -> _Build:
    reader = FolderCalibrationReader(calib_dir, spec, files=files)
    reader.check()
    float_path = prepared_path
    offsets: list[OffsetAbsorption] = []
    eq_report: EqualizationReport | None = None
    widening: WideningReport | None = None
    if opts.recipe is Recipe.DEFAULT:
        prepared = onnx.load(str(prepared_path))
        float_path, offsets, eq_report, widening = _rewrite(
            prepared, reader, opts, work / f"rewritten-{tag}.onnx", progress
        )
    cache = None
    if opts.use_cache:
        key = calibration_key(float_path.read_bytes(), reader.files, opts.method)
        cache = cache_dir() / f"calib-{key}.json"
    progress.start("calibrating", len(reader.files))
    _, cache_json = calibrate(float_path, reader, opts.method, tick=progress.advance, cache=cache)
    return _Build(float_path, cache_json, cache is None, reader, offsets, eq_report, widening)


def quantize(opts: QuantizeOptions, progress: Progress | None = None) -> QuantizeReport:
    """Run the whole pipeline; the output file appears only when everything succeeded."""
    progress = progress or NullProgress()
    started = time.monotonic()
    output = opts.resolved_output
    if output.resolve() == opts.model.resolve():
        raise QuantkitError("output would overwrite the input model; choose another -o/--output")
    check_writable(output, force=opts.force)
    original = load_model(opts.model)
    spec = spec_from_model(original, opts.model)
    calib_dir = opts.calib_dir or default_calib_dir()
    all_files = list_images(calib_dir, limit=opts.calib_limit)
    default = opts.recipe is Recipe.DEFAULT
    files, eval_files = all_files, []
    refit = False  # held-out photos come from the calibration folder: refit on all at the end
    if default:
        if opts.eval_dir is not None:
            eval_files = list_images(opts.eval_dir, limit=opts.eval_limit)
        else:
            files, eval_files = split_held_out(all_files)
            refit = files != all_files
    isa = detect()

    with tempfile.TemporaryDirectory(prefix="quantkit-") as tmp:
        work = Path(tmp)
        progress.start("preparing the model (opset, shape inference)")
        prepared_path = _prepare(original, work)
        _check_excludes(onnx.load(str(prepared_path)), opts.exclude)
        build = _build(prepared_path, files, calib_dir, spec, opts, work, progress, "check")
        quant_path = work / "quantized.onnx"
        progress.start("quantizing")
        _quantize_once(build.float_path, quant_path, opts, build.cache_json, opts.exclude, isa)
        report = QuantizeReport(
            model=opts.model,
            output=output,
            recipe=opts.recipe,
            input_bytes=opts.model.stat().st_size,
            output_bytes=0,
            seconds=0.0,
            opset_in=spec.opset,
            opset_out=0,
            calib_used=[],
            calib_skipped=[],
            eval_images=[p.name for p in eval_files],
            census=NodeCensus((), (), (), 0, 0),  # counted on the final model below
            isa=isa,
            options=opts,
            offsets=build.offsets,
            equalization=build.equalization,
            widening=build.widening,
        )
        float_nodes: tuple[str, ...] = ()
        if default and eval_files:
            float_nodes = _check_and_search(
                opts, spec, eval_files, build, quant_path, isa, work, progress, report
            )
        if refit:
            # The check is done; the shipped model learns its ranges from every photo.
            if build.temporary_cache:
                build.cache_json.unlink(missing_ok=True)
            build = _build(prepared_path, all_files, calib_dir, spec, opts, work, progress, "final")
            report.offsets, report.equalization = build.offsets, build.equalization
            report.widening = build.widening
        if refit or float_nodes:
            progress.start("quantizing the final model")
            _quantize_once(
                build.float_path, quant_path, opts, build.cache_json, opts.exclude + float_nodes, isa
            )
        if build.temporary_cache:
            build.cache_json.unlink(missing_ok=True)
        skipped_paths = {p for p, _ in build.reader.skips.skipped}
        report.calib_used = [p.name for p in build.reader.files if p not in skipped_paths]
        report.calib_skipped = [(p.name, r) for p, r in build.reader.skips.skipped]
        for _, reason in build.reader.skips.skipped:
            progress.warn(f"skipped calibration image {reason}")
        final = onnx.load(str(quant_path))
        if default:
            final = compact(final)
        report.census = census(final)
        report.opset_out = ai_onnx_opset(final)
        with atomic_output(output, force=opts.force, suffix=".onnx") as tmp_out:
            onnx.save(final, str(tmp_out))
    report.output_bytes = output.stat().st_size
    report.seconds = time.monotonic() - started
    return report


def _rewrite(
    prepared: onnx.ModelProto,
    reader: FolderCalibrationReader,
    opts: QuantizeOptions,
    path: Path,
    progress: Progress,
) -> tuple[Path, list[OffsetAbsorption], EqualizationReport | None, WideningReport | None]:
    """Offset absorption, equalisation (each measured on the calibration photos), widening."""
    model = prepared
    offsets: list[OffsetAbsorption] = []
    eq_report: EqualizationReport | None = None
    widening: WideningReport | None = None
    if Step.ABSORB in opts.steps:
        conv_outputs = [n.output[0] for n in model.graph.node if n.op_type == "Conv"]
        progress.start("measuring activations", len(reader.files))
        stats = collect_stats(model, conv_outputs, _ticking(reader, progress))
        offsets = find_offsets(model, stats)
        model = absorb_offsets(model, offsets)
    if Step.EQUALIZE in opts.steps:
        between = [
            o
            for n in model.graph.node
            if n.op_type in ("Conv", "Relu", "MaxPool", "Resize", "Concat", "Add")
            for o in n.output
        ]
        progress.start("measuring activations for equalisation", len(reader.files))
        stats = collect_stats(model, between, _ticking(reader, progress))
        model, eq_report = equalize(model, stats, alpha=opts.equalize_alpha)
    if Step.WIDEN in opts.steps:
        model, widening = widen(model)
    onnx.save(model, str(path))
    return path, offsets, eq_report, widening


def _ticking(reader: FolderCalibrationReader, progress: Progress):  # type: ignore[no-untyped-def]
    for feed in reader.feeds():
        yield feed
        progress.advance()


def _check_and_search(
    opts: QuantizeOptions,
    spec: ModelSpec,
    eval_files: list[Path],
    build: _Build,
    quant_path: Path,
    isa: IsaInfo,
    work: Path,
    progress: Progress,
    report: QuantizeReport,
) -> tuple[str, ...]:
    """Score the INT8 model on held-out photos; search for float islands if it misses."""
    held = HeldOut(eval_files, spec, opts.model, progress=progress)
    for _, reason in held.skips.skipped:
        progress.warn(f"skipped evaluation image {reason}")
    progress.start("checking masks on held-out photos")
    baseline = held.score(quant_path)
    report.held_out_before_search = baseline.iou
    report.held_out_final = baseline.iou
    if baseline.iou.mean >= opts.target_iou or Step.SEARCH not in opts.steps:
        return ()

    float_model = onnx.load(str(build.float_path))
    progress.start("ranking layers by signal lost")
    feeds = [{spec.input_name: s.tensor} for s in held.samples]
    report.losses = layer_losses(float_model, onnx.load(str(quant_path)), feeds)
    macs = conv_macs(float_model)
    total = max(sum(macs.values()), 1)
    counter = iter(range(1_000_000))

    def evaluate(float_nodes: tuple[str, ...]) -> AgreementLog:
        candidate = work / f"candidate-{next(counter)}.onnx"
        _quantize_once(build.float_path, candidate, opts, build.cache_json, opts.exclude + float_nodes, isa)
        log = held.score(candidate)
        candidate.unlink(missing_ok=True)
        return log

    progress.start("searching for layers to keep in float")
    result = search_islands(
        float_model,
        report.losses,
        baseline,
        evaluate,
        lambda nodes: sum(macs.get(n, 0) for n in nodes) / total,
        SearchLimits(target_iou=opts.target_iou, seconds=opts.search_seconds, max_cost=opts.max_slowdown),
        on_try=lambda anchor: progress.advance(),
    )
    report.search = result
    if result.final is not None:
        report.held_out_final = result.final.iou
    return result.float_nodes
