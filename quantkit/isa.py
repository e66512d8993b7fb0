"""What the CPU's integer dot-product instructions allow, and which CPUs an INT8 file is made for.

onnxruntime's x86 U8S8 convolutions (u8 activations times s8 weights) multiply with
``vpmaddubsw`` on CPUs without VNNI: it adds two u8×s8 products into a *saturating*
16-bit sum. With 8-bit weights two products reach 2 × 255 × 127 = 64,770 > 32,767 and
the sum clips; with 7-bit weights (|w| <= 64, onnxruntime's ``reduce_range``) they stay
within 2 × 255 × 64 = 32,640 and the result is exact (onnxruntime issues #5849, #6004).
AVX-512 VNNI and AVX-VNNI (``vpdpbusd``) accumulate in 32 bits, as does ARM's dot-product
extension: 8-bit weights are exact there.

Quantization used to pick the weights' bits from the CPU that quantized: a file made on a
VNNI laptop had 8-bit weights, and served on an AVX2 server its masks collapsed (held-out
IoU 0.80 measured for 8-bit weights on an AVX2 EPYC). Now the file's target decides
(:class:`TargetCpu`): by default 7-bit weights, right on every CPU, the same bytes whoever
quantizes; 8-bit only when asked for (``--target-cpu vnni``), recorded in the file, and
refused by quantkit's own runtime on a CPU that would compute them wrong
(:func:`quantkit.runtime.open_runner`).

Features are read from ``/proc/cpuinfo`` on Linux and ``sysctl`` on macOS; where neither
answers (Windows), the CPU counts as one without VNNI and the description says the
features were not read.
"""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path


class TargetCpu(str, Enum):
    """The CPUs an INT8 file is made for; it decides the weights' bits and nothing else."""

    ANY = "any"  # 7-bit weights (|w| <= 64): exact on every CPU onnxruntime and OpenVINO run on
    VNNI = "vnni"  # 8-bit weights: x86 with AVX-512 VNNI or AVX-VNNI, ARM with the dot-product extension

    @property
    def weight_bits(self) -> int:
        return 8 if self is TargetCpu.VNNI else 7

    @property
    def reduce_range(self) -> bool:
        """onnxruntime's name for 7-bit weights."""
        return self is TargetCpu.ANY


X86 = ("x86_64", "amd64", "i686", "i386", "x86")
ARM = ("aarch64", "arm64")
DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "avx_vnni_int8", "asimddp")
_NAMES = {"avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "avx_vnni_int8": "AVX-VNNI-INT8"}
_SYSCTL = {
    "hw.optional.avx512vnni": "avx512_vnni",
    "hw.optional.avx2_0": "avx2",
    "hw.optional.arm.FEAT_DotProd": "asimddp",
}


@dataclass(frozen=True)
class IsaInfo:
    """The integer dot-product features of one CPU."""

    machine: str
    vnni: bool  # VNNI on x86, the dot-product extension on ARM: 8-bit weights are exact here
    flags_seen: tuple[str, ...]
    source: str  # where the features were read from; "unknown" if nowhere
    avx2: bool = False

    @property
    def x86(self) -> bool:
        return self.machine.lower() in X86

    def runs(self, target: TargetCpu) -> bool:
        """Whether onnxruntime's integer kernels compute a file made for ``target`` right here."""
        return target is TargetCpu.ANY or self.vnni

    def describe(self) -> str:
        """One line for a report: 'x86_64, AVX-512 VNNI', 'x86_64, AVX2, no VNNI', 'aarch64, dot product'."""
        if self.source == "unknown":
            return f"{self.machine}, features not read (counted as without VNNI)"
        if self.x86:
            found = [_NAMES[f] for f in self.flags_seen if f in _NAMES]
            if found:
                return f"{self.machine}, {found[0]}"
            return f"{self.machine}, {'AVX2' if self.avx2 else 'no AVX2'}, no VNNI"
        if self.machine.lower() in ARM:
            return f"{self.machine}, {'dot product' if self.vnni else 'no dot product'}"
        return f"{self.machine}, {'integer dot product' if self.vnni else 'no integer dot product known'}"

    def to_dict(self) -> dict[str, object]:
        return {
            "machine": self.machine,
            "description": self.describe(),
            "vnni": self.vnni,
            "avx2": self.avx2,
            "flags": list(self.flags_seen),
            "source": self.source,
        }


def _cpuinfo_words(cpuinfo: Path) -> set[str] | None:
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    words: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            words.update(value.split())
    return words


def _sysctl_words() -> set[str] | None:
    words: set[str] = set()
    for key, flag in _SYSCTL.items():
        try:
            out = subprocess.run(
                ["sysctl", "-n", key], capture_output=True, text=True, timeout=5, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        if out.stdout.strip() == "1":
            words.add(flag)
    return words


def detect(cpuinfo: Path = Path("/proc/cpuinfo"), machine: str | None = None) -> IsaInfo:
    """The features of this CPU (of ``cpuinfo``, a file in /proc/cpuinfo's format, if given)."""
    machine = machine or platform.machine() or "unknown"
    words, source = _cpuinfo_words(cpuinfo), str(cpuinfo)
    if words is None and sys.platform == "darwin":
        words, source = _sysctl_words(), "sysctl"
    if words is None:
        return IsaInfo(machine=machine, vnni=False, flags_seen=(), source="unknown")
    seen = tuple(flag for flag in DOT_PRODUCT_FLAGS if flag in words)
    return IsaInfo(machine=machine, vnni=bool(seen), flags_seen=seen, source=source, avx2="avx2" in words)


@functools.cache
def host_isa() -> IsaInfo:
    """This machine's features, read once per process."""
    return detect()
