"""What the CPU's integer dot-product instructions allow.

On x86 CPUs without VNNI, onnxruntime's U8S8 kernels use ``vpmaddubsw``, whose
16-bit intermediate sums can saturate; onnxruntime's documentation recommends
``reduce_range`` (7-bit weights) there. With AVX-512 VNNI or AVX-VNNI (and on
ARM with the dot-product extension) full 8-bit weights are exact, so quantkit
only reduces the range where it has to. Features are read from
``/proc/cpuinfo`` on Linux and ``sysctl`` on macOS; where neither answers
(Windows), an x86 CPU is assumed to lack VNNI - 7-bit weights are always safe,
8-bit ones only with VNNI - and the report says the features were not read.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class IsaInfo:
    machine: str
    vnni: bool
    flags_seen: tuple[str, ...]
    source: str  # where the features were read from; "unknown" if nowhere

    @property
    def reduce_range(self) -> bool:
        x86 = self.machine.lower() in ("x86_64", "amd64", "i686", "x86")
        return x86 and not self.vnni

    def to_dict(self) -> dict[str, object]:
        return {
            "machine": self.machine,
            "vnni": self.vnni,
            "flags": list(self.flags_seen),
            "source": self.source,
            "reduce_range": self.reduce_range,
        }


DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "avx_vnni_int8", "asimddp")
_SYSCTL = {"hw.optional.avx512vnni": "avx512_vnni", "hw.optional.arm.FEAT_DotProd": "asimddp"}


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


def detect(cpuinfo: Path = Path("/proc/cpuinfo")) -> IsaInfo:
    machine = platform.machine() or "unknown"
    words, source = _cpuinfo_words(cpuinfo), str(cpuinfo)
    if words is None and sys.platform == "darwin":
        words, source = _sysctl_words(), "sysctl"
    if words is None:
        return IsaInfo(machine=machine, vnni=False, flags_seen=(), source="unknown")
    seen = tuple(flag for flag in DOT_PRODUCT_FLAGS if flag in words)
    return IsaInfo(machine=machine, vnni=bool(seen), flags_seen=seen, source=source)
