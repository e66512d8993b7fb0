"""The bench table, one source for the terminal and for ``--markdown``.

Readable at 80 columns and when piped: models are listed on their own lines and
referred to by number in the table, units sit in the header, and no number is
ever cut. File sizes are in MB (10^6 bytes), memory in MiB (2^20 bytes) - the
units the values are computed in.
"""

from __future__ import annotations

from quantkit.bench.measure import BenchReport
from quantkit.files.ownership import MARKDOWN_HEADER

HEADER = ("#", "size MB", "x size", "peak RSS MiB", "load ms", "p50 ms", "p90 ms", "x p50", "img/s")


def rows(report: BenchReport) -> list[tuple[str, ...]]:
    ref = report.reference
    return [
        (
            str(k),
            f"{r.size_bytes / 1e6:.2f}",
            f"{r.size_bytes / ref.size_bytes:.3f}",
            f"{r.peak_rss_bytes / 2**20:.0f}",
            f"{r.load_seconds * 1000:.0f}",
            f"{r.latency.p50_ms:.1f}",
            f"{r.latency.p90_ms:.1f}",
            f"{r.latency.p50_ms / ref.latency.p50_ms:.3f}",
            f"{r.throughput:.2f}",
        )
        for k, r in enumerate(report.results, start=1)
    ]


def caption(report: BenchReport) -> str:
    env = report.environment
    versions = ", ".join(f"{name} {env[name]}" for name in ("onnxruntime", "openvino") if name in env)
    return (
        f"{env['cpu']} ({env['cpu_count']} logical cores; {report.isa.describe()}), {versions}; "
        f"{report.options.runs} timed runs per entry, interleaved; ratios against entry 1"
    )


def markdown(report: BenchReport) -> str:
    # The settings belong with the figures: tables that differ only in them must say so.
    # (The runtime is each entry's own, listed below.)
    settings = ", ".join(f"{k}={v}" for k, v in report.options.settings.to_dict().items() if k != "runtime")
    lines = [MARKDOWN_HEADER, f"{caption(report)}; settings: {settings}", ""]
    lines += [
        f"{k}. `{r.entry.model}` on {r.entry.runtime.value}" for k, r in enumerate(report.results, start=1)
    ]
    lines += ["", "| " + " | ".join(HEADER) + " |", "|" + "---:|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(report)]
    return "\n".join(lines) + "\n"
