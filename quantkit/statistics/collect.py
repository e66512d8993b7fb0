"""One pass over the photos answers a :class:`StatsRequest`, in about one inference of memory.

Exposing activations as graph outputs copies every one of them out of
onnxruntime for every photo (onnxruntime's own MinMax calibrator needs 12.2 GiB
on u2netp at 1024 px for that reason). Instead each requested tensor gets
``ReduceMin``/``ReduceMax`` (and ``ReduceMean`` of x and x² for moments) nodes, so
a photo yields kilobytes.

That alone is not enough: in the wrong order, the reductions keep every tensor
they read alive until the whole network has run (9.4 GiB for the 364 tensors
equalisation reads in u2netp at 1024, against 3.2 GiB for plain inference);
:mod:`quantkit.graph.order` orders them so each tensor dies once measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from quantkit.errors import QuantkitError
from quantkit.graph.opset import ai_onnx_opset
from quantkit.graph.order import measured_graph_nodes
from quantkit.graph.shapes import tensor_dims
from quantkit.runtime.base import OptLevel, RuntimeSettings
from quantkit.runtime.ort import ort_session
from quantkit.statistics.types import BINS, ActivationStats, ChannelStats, Level, Projection, StatsRequest

# Memory patterns pre-plan one arena block for the whole run: no faster here, and
# roughly double the peak for these graphs.
STATS_SESSION = RuntimeSettings(mem_pattern=False)
# A pass of calibration's own (no rewrite carried the ranges: the naive recipe, histogram
# methods) runs with graph optimisations off, as onnxruntime's own calibrators do: fused and
# re-laid-out convolutions round differently, and with them on, 312 of u2netp's 377 ranges
# differ from onnxruntime's in the last bit. Off, all 377 are identical - the quantized model
# is the one onnxruntime would make itself. (Carried ranges are not: see ``_Run.calibrate``.)
CALIBRATION_SESSION = RuntimeSettings(mem_pattern=False, opt_level=OptLevel.DISABLE)
_AXES = "quantkit_stats_axes"

_PARTS: dict[Level, tuple[str, ...]] = {
    Level.TENSOR: ("min", "max"),
    Level.CHANNEL: ("min", "max"),
    Level.MOMENTS: ("min", "max", "mean", "meansq"),
}


def _reductions(
    name: str, index: int, level: Level, axes_as_input: bool
) -> tuple[list[onnx.NodeProto], list[str]]:
    per_channel = level >= Level.CHANNEL
    nodes: list[onnx.NodeProto] = []
    outputs: list[str] = []

    def reduce(op: str, source: str, part: str) -> None:
        out = f"quantkit_stats/{index}/{part}"
        if not per_channel:
            nodes.append(helper.make_node(op, [source], [out], keepdims=0))
        elif axes_as_input:
            nodes.append(helper.make_node(op, [source, _AXES], [out], keepdims=0))
        else:
            nodes.append(helper.make_node(op, [source], [out], axes=[0, 2, 3], keepdims=0))
        outputs.append(out)

    reduce("ReduceMin", name, "min")
    reduce("ReduceMax", name, "max")
    if level is Level.MOMENTS:
        reduce("ReduceMean", name, "mean")
        square = f"quantkit_stats/{index}/sq"
        nodes.append(helper.make_node("Mul", [name, name], [square]))
        reduce("ReduceMean", square, "meansq")
    return nodes, outputs


def _projection_node(
    projection: Projection, name: str, weight: str, weights: list[onnx.TensorProto]
) -> onnx.NodeProto:
    if projection.weight is None:
        return helper.make_node("Identity", [projection.source], [name])
    weights.append(numpy_helper.from_array(projection.weight.astype(np.float32), weight))
    return helper.make_node("Conv", [projection.source, weight], [name], kernel_shape=[1, 1])


# A distribution is sampled on a strided grid of at most about SAMPLE_SIDE x SAMPLE_SIDE
# pixels per channel (every channel): 262,144 values of a 64-channel 512x512 IS-Net tensor
# instead of 16.8 million. Percentiles need the bulk of the values, which a regular grid
# samples fairly; the extremes come from the exact min and max measured beside it.
SAMPLE_SIDE = 64


def _sample_node(
    name: str, index: int, dims: list[int] | None
) -> tuple[list[onnx.NodeProto], str, list[onnx.TensorProto]]:
    """Nodes that take every ``stride``-th row and column of a [N, C, H, W] tensor (or all of it)."""
    out = f"quantkit_stats/{index}/sample"
    stride = max(1, min(dims[2:]) // SAMPLE_SIDE) if dims and len(dims) == 4 and all(dims[2:]) else 1
    if stride == 1:
        return [helper.make_node("Identity", [name], [out])], out, []
    constants = [
        numpy_helper.from_array(np.array(values, dtype=np.int64), f"quantkit_stats/{index}/{part}")
        for part, values in (
            ("starts", [0, 0]),
            ("ends", [2**62, 2**62]),
            ("axes", [2, 3]),
            ("steps", [stride] * 2),
        )
    ]
    node = helper.make_node("Slice", [name, *(c.name for c in constants)], [out])
    return [node], out, constants


def augment(model: onnx.ModelProto, request: StatsRequest) -> tuple[onnx.ModelProto, list[tuple[str, Level]]]:
    """A graph whose outputs are the requested reductions, ordered to free tensors early."""
    axes_as_input = ai_onnx_opset(model) >= 18
    plan = list(request.tensors.items())
    dims = tensor_dims(model) if request.distributions else {}
    known = {i.name for i in model.graph.input} | {o for n in model.graph.node for o in n.output}
    groups: list[tuple[str, list[onnx.NodeProto]]] = []
    outputs: list[str] = []
    weights: list[onnx.TensorProto] = []
    for index, (name, level) in enumerate(plan):
        projection = request.projections.get(name)
        source = projection.source if projection is not None else name
        if source not in known:
            raise QuantkitError(f"statistics requested for unknown tensor {source!r}")
        if projection is not None and name in known:
            raise QuantkitError(f"projection {name!r} has the name of a tensor of the model")
        nodes, outs = _reductions(name, index, level, axes_as_input)
        if name in request.distributions:
            sampling, sample, constants = _sample_node(name, index, dims.get(source))
            nodes += sampling
            outs.append(sample)
            weights += constants
        if projection is not None:  # computed next to its reductions: it lives no longer than they do
            nodes.insert(0, _projection_node(projection, name, f"quantkit_stats/{index}/w", weights))
        groups.append((source, nodes))
        outputs += outs
    kept, needed = measured_graph_nodes(model.graph.node, groups, outputs)
    initializers = [i for i in model.graph.initializer if i.name in needed] + weights
    if axes_as_input:
        initializers.append(numpy_helper.from_array(np.array([0, 2, 3], dtype=np.int64), _AXES))
    graph = helper.make_graph(
        kept,
        "quantkit_stats",
        list(model.graph.input),
        [helper.make_empty_tensor_value_info(o) for o in outputs],
        initializers,
        value_info=[v for v in model.graph.value_info if v.name in needed],
    )
    augmented = helper.make_model(graph, opset_imports=list(model.opset_import))
    augmented.ir_version = model.ir_version
    return augmented, plan


def collect(
    model: onnx.ModelProto,
    request: StatsRequest,
    samples: Iterable[dict[str, np.ndarray]],
    work: Path,
    *,
    tick: Callable[[], None] = lambda: None,
    settings: RuntimeSettings = STATS_SESSION,
) -> ActivationStats:
    """Run ``model`` on each sample and accumulate the statistics ``request`` asks for."""
    augmented, plan = augment(model, request)
    path = work / "statistics.onnx"
    onnx.save(augmented, str(path))
    del augmented
    session = ort_session(path, settings)
    names = [o.name for o in session.get_outputs()]
    stats = ActivationStats()
    for feed in samples:
        values = dict(zip(names, session.run(names, feed), strict=True))
        for index, (name, level) in enumerate(plan):
            _accumulate(stats, name, level, index, values)
            sample = values.get(f"quantkit_stats/{index}/sample")
            if sample is not None:
                entry = stats.tensors[name]
                counts = BINS.histogram(sample)
                entry.histogram = counts if entry.histogram is None else entry.histogram + counts
        stats.images += 1
        tick()
    path.unlink()
    return stats


def _accumulate(
    stats: ActivationStats, name: str, level: Level, index: int, values: dict[str, np.ndarray]
) -> None:
    part = {p: values[f"quantkit_stats/{index}/{p}"].astype(np.float64) for p in _PARTS[level]}
    if not (np.all(np.isfinite(part["min"])) and np.all(np.isfinite(part["max"]))):
        raise QuantkitError(
            f"the model produces NaN or infinite values (tensor {name!r}) on a calibration photo"
        )
    entry = stats.tensors.get(name)
    if entry is None:
        stats.tensors[name] = ChannelStats(
            level, part["min"], part["max"], part.get("mean"), part.get("meansq"), 1
        )
        return
    entry.minimum = np.minimum(entry.minimum, part["min"])
    entry.maximum = np.maximum(entry.maximum, part["max"])
    if entry.total is not None and entry.total_sq is not None:
        entry.total = entry.total + part["mean"]
        entry.total_sq = entry.total_sq + part["meansq"]
    entry.images += 1
