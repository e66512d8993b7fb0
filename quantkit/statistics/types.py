"""What a pass asks to be measured, and what comes back.

Levels, cheapest first: ``TENSOR`` (one min and max for the whole tensor - what
MinMax calibration needs), ``CHANNEL`` (min and max per channel - equalisation),
``MOMENTS`` (per channel also the mean and mean square, over images - offset
absorption's safety margin). A higher level answers every lower one, so merged
requests take the highest level asked per tensor.

Orthogonal to the level, a tensor can also have its value *distribution* measured:
a histogram over fixed, logarithmically spaced bins (:class:`Bins`) of a strided
sample of its values, which range estimators read percentiles from
(:mod:`quantkit.ptq.ranges`). Fixed bins need no range measured beforehand, so the
distribution costs no pass of its own, and histograms of different photos simply add.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class Level(IntEnum):
    TENSOR = 1
    CHANNEL = 2
    MOMENTS = 3


@dataclass(frozen=True)
class Bins:
    """Fixed histogram bins for any float tensor, read off float32's bit pattern: each
    power of two from ``2**low`` to ``2**high`` split into ``2**mantissa_bits`` equal steps,
    on each side of zero, and one bin for |x| below ``2**low`` (zeros). A bin is 1.6-3.1%
    of its value wide, so a percentile read from them is that close to the sample's own;
    binning is a shift of the bits, about 10x faster than taking logarithms (the 383
    tensors of IS-Net's calibration pass: 3 s of histograms instead of 28 s)."""

    low: int = -30
    high: int = 30
    mantissa_bits: int = 5

    @property
    def side(self) -> int:
        return (self.high - self.low) << self.mantissa_bits

    @property
    def count(self) -> int:
        return 2 * self.side + 1  # negative magnitudes (descending), zero, positive (ascending)

    @property
    def _shift(self) -> int:
        return 23 - self.mantissa_bits

    def histogram(self, values: np.ndarray) -> np.ndarray:
        flat = np.ascontiguousarray(values, dtype=np.float32).ravel()
        bits = flat.view(np.int32)
        step = ((bits & 0x7FFFFFFF) >> self._shift) - ((127 + self.low) << self.mantissa_bits)
        step = np.minimum(step, self.side - 1)  # beyond 2**high (and inf, nan): the last bin
        index = np.where(step < 0, self.side, np.where(bits < 0, self.side - 1 - step, self.side + 1 + step))
        return np.bincount(index, minlength=self.count).astype(np.int64)

    def upper_edges(self) -> np.ndarray:
        """The largest value each bin holds (bins in histogram order)."""
        first = (127 + self.low) << self.mantissa_bits
        codes = np.arange(first, first + self.side + 1, dtype=np.int64) << self._shift
        magnitudes = codes.astype(np.int32).view(np.float32).astype(np.float64)  # bottom of each step
        bottom, top = magnitudes[:-1], magnitudes[1:]
        return np.concatenate([-bottom[::-1], [magnitudes[0]], top])


BINS = Bins()


@dataclass(frozen=True, eq=False)
class Projection:
    """A tensor measured without being in the model: a 1×1 convolution (no bias) of one that
    is, or with no weight an exact copy of it.

    It lets a rewrite have a tensor it will only create later measured in an earlier
    pass, when that tensor is a fixed linear map of one that exists (the tap maps of
    :mod:`quantkit.passes.taps`, which would otherwise cost a pass of their own); and
    a copy keeps a tensor's statistics as measured, under a name no later rewrite
    rescales, so the rewrite can tell whether its tensor kept its values.
    """

    source: str
    weight: np.ndarray | None = None  # [outputs, source channels, 1, 1], float32; None: a copy

    def digest(self) -> str:
        import hashlib

        if self.weight is None:
            return hashlib.sha256(b"copy:" + self.source.encode()).hexdigest()
        data = np.ascontiguousarray(self.weight, dtype=np.float32)
        return hashlib.sha256(self.source.encode() + str(data.shape).encode() + data.tobytes()).hexdigest()


@dataclass(frozen=True)
class StatsRequest:
    """Tensors to measure and at which level; ``a | b`` asks for both.

    A name in ``projections`` is measured as that projection's output; it must also be
    in ``tensors`` (with its level) and must not name a tensor of the model.
    """

    tensors: Mapping[str, Level] = field(default_factory=dict)
    projections: Mapping[str, Projection] = field(default_factory=dict)
    distributions: frozenset[str] = frozenset()  # tensors whose value histogram is sampled too

    def __post_init__(self) -> None:
        missing = [name for name in [*self.projections, *self.distributions] if name not in self.tensors]
        if missing:
            raise ValueError(f"projections or distributions without a level: {missing}")

    @classmethod
    def of(cls, names: Iterable[str], level: Level) -> StatsRequest:
        return cls(dict.fromkeys(names, level))

    def __or__(self, other: StatsRequest) -> StatsRequest:
        merged = dict(self.tensors)
        for name, level in other.tensors.items():
            merged[name] = max(merged.get(name, level), level)
        for name, projection in other.projections.items():
            mine = self.projections.get(name)
            if mine is not None and mine.digest() != projection.digest():
                raise ValueError(f"two different projections named {name!r}")
        return StatsRequest(
            merged, {**self.projections, **other.projections}, self.distributions | other.distributions
        )

    def key(self) -> str:
        """What the request measures, as text for a cache key (projections by digest)."""
        projections = sorted((name, p.digest()) for name, p in self.projections.items())
        if not self.distributions:  # the key of a request without distributions is as it always was
            return repr((sorted(self.tensors.items()), projections))
        return repr((sorted(self.tensors.items()), projections, sorted(self.distributions), BINS))

    def __bool__(self) -> bool:
        return bool(self.tensors)

    def covered_by(self, stats: ActivationStats) -> bool:
        """Whether ``stats`` already answers every tensor of this request at its level."""
        return all(
            name in stats and stats[name].level >= level for name, level in self.tensors.items()
        ) and all(stats[name].histogram is not None for name in self.distributions)


@dataclass
class ChannelStats:
    """Statistics of one tensor accumulated over images; per channel unless ``level`` is TENSOR."""

    level: Level
    minimum: np.ndarray
    maximum: np.ndarray
    total: np.ndarray | None = None  # MOMENTS: sum over images of the per-image channel mean
    total_sq: np.ndarray | None = None  # MOMENTS: sum over images of the per-image channel mean of x²
    images: int = 0
    histogram: np.ndarray | None = None  # counts over ``BINS`` of sampled values, all channels together

    @property
    def mean(self) -> np.ndarray:
        if self.total is None:
            raise ValueError("moments were not measured for this tensor")
        return self.total / max(self.images, 1)

    @property
    def std(self) -> np.ndarray:
        if self.total_sq is None:
            raise ValueError("moments were not measured for this tensor")
        variance = self.total_sq / max(self.images, 1) - self.mean**2
        return np.asarray(np.sqrt(np.maximum(variance, 0.0)), dtype=np.float64)

    @property
    def absmax(self) -> np.ndarray:
        return np.asarray(np.maximum(np.abs(self.minimum), np.abs(self.maximum)), dtype=np.float64)

    def take(self, channels: Iterable[int]) -> ChannelStats:
        """The statistics of a tensor made of these channels of this one: repeats allowed, and
        every channel must occur (a whole-tensor range is then returned unchanged)."""
        if self.level < Level.CHANNEL:
            return self
        pick = np.asarray(list(channels))
        repeats = np.bincount(pick, minlength=len(self.minimum))
        return ChannelStats(
            self.level,
            self.minimum[pick],
            self.maximum[pick],
            None if self.total is None else self.total[pick],
            None if self.total_sq is None else self.total_sq[pick],
            self.images,
            # Every channel repeated equally: the same values in the same proportions.
            self.histogram if np.all(repeats == repeats[0]) else None,
        )

    @property
    def tensor_range(self) -> tuple[np.float32, np.float32]:
        """The whole tensor's min and max, exactly as float32 (what calibration stores)."""
        return np.float32(np.min(self.minimum)), np.float32(np.max(self.maximum))


@dataclass
class ActivationStats:
    tensors: dict[str, ChannelStats] = field(default_factory=dict)
    images: int = 0

    def __getitem__(self, name: str) -> ChannelStats:
        return self.tensors[name]

    def __contains__(self, name: object) -> bool:
        return name in self.tensors


def encode_stats(stats: ActivationStats) -> bytes:
    """``stats`` as bytes (an .npz archive) for the cache."""
    import io
    import json

    arrays: dict[str, np.ndarray] = {}
    index = []
    for k, (name, entry) in enumerate(stats.tensors.items()):
        index.append([name, int(entry.level), entry.images])
        arrays[f"{k}.min"], arrays[f"{k}.max"] = entry.minimum, entry.maximum
        if entry.total is not None and entry.total_sq is not None:
            arrays[f"{k}.total"], arrays[f"{k}.total_sq"] = entry.total, entry.total_sq
        if entry.histogram is not None:
            arrays[f"{k}.histogram"] = entry.histogram
    arrays["index"] = np.frombuffer(json.dumps([stats.images, index]).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub reads **kwds as allow_pickle
    return buffer.getvalue()


def decode_stats(data: bytes) -> ActivationStats:
    """The inverse of :func:`encode_stats`; raises on anything malformed."""
    import io
    import json

    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        images, index = json.loads(archive["index"].tobytes())
        stats = ActivationStats(images=int(images))
        for k, (name, level, count) in enumerate(index):
            moments = f"{k}.total" in archive
            stats.tensors[str(name)] = ChannelStats(
                Level(level),
                archive[f"{k}.min"],
                archive[f"{k}.max"],
                archive[f"{k}.total"] if moments else None,
                archive[f"{k}.total_sq"] if moments else None,
                int(count),
                archive.get(f"{k}.histogram"),
            )
    return stats
