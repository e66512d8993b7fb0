"""What the CPU's integer dot-product instructions allow.

On x86 CPUs without VNNI, onnxruntime's U8S8 kernels use ``vpmaddubsw``, whose
16-bit intermediate sums can saturate; onnxruntime's documentation recommends
``reduce_range`` (7-bit weights) there. With AVX-512 VNNI or AVX-VNNI (and on
ARM with the dot-product extension) full 8-bit weights are exact, so quantkit
only reduces the range where it has to.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class IsaInfo:
    machine: str
    vnni: bool
    flags_seen: tuple[str, ...]

    @property
    def reduce_range(self) -> bool:
        x86 = self.machine.lower() in ("x86_64", "amd64", "i686", "x86")
        return x86 and not self.vnni

    def to_dict(self) -> dict[str, object]:
        return {
            "machine": self.machine,
            "vnni": self.vnni,
            "flags": list(self.flags_seen),
            "reduce_range": self.reduce_range,
        }


DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "avx_vnni_int8", "asimddp")


def detect(cpuinfo: Path = Path("/proc/cpuinfo")) -> IsaInfo:
    machine = platform.machine() or "unknown"
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    words = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            words.update(value.split())
    seen = tuple(flag for flag in DOT_PRODUCT_FLAGS if flag in words)
    return IsaInfo(machine=machine, vnni=bool(seen), flags_seen=seen)


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("model name", "hardware", "cpu model"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
