"""The child process ``quantkit bench`` measures one model in.

A fresh interpreter per model means each model's peak RSS is its own: nothing
another model allocated (or onnxruntime's arena kept) can inflate it. The parent
drives the child over stdin/stdout with one JSON object per line, so it can
interleave the models' timed runs round by round.

Commands: ``{"load": {...}}`` -> load time (the inputs come preprocessed, as
``.npy``, so this process never imports PIL or onnx); ``{"run": n}`` -> n latencies in
seconds; ``{"rss": true}`` -> peak RSS in bytes; ``{"quit": true}``.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import numpy as np


def peak_rss_bytes() -> int:
    """Peak resident memory of this process.

    On Linux this reads ``VmHWM``: ``getrusage``'s ``ru_maxrss`` survives fork and
    exec, so a child of a 2 GB parent would report 2 GB however little it used.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def main() -> None:
    # Only numpy and onnxruntime here (no PIL, no onnx): the child's memory is the model's.
    import onnxruntime as ort

    from quantkit.session import OptLevel, SessionSettings, make_session
    from quantkit.timing import time_runs

    session: ort.InferenceSession | None = None
    feeds: list[dict[str, np.ndarray]] = []
    cursor = 0
    baseline = peak_rss_bytes()
    for line in sys.stdin:
        command = json.loads(line)
        reply: dict[str, object]
        if "load" in command:
            spec = command["load"]
            settings = SessionSettings(
                intra_threads=spec["intra_threads"],
                inter_threads=spec["inter_threads"],
                cpu_arena=spec["cpu_arena"],
                mem_pattern=spec["mem_pattern"],
                opt_level=OptLevel(spec["opt_level"]),
                provider=spec["provider"],
            )
            batch = np.load(spec["inputs"])
            feeds = [{spec["input_name"]: batch[k]} for k in range(batch.shape[0])]
            baseline = peak_rss_bytes()
            started = time.perf_counter()
            try:
                session = make_session(Path(spec["model"]), settings)
            except Exception as exc:  # reported to the parent as one line
                reply = {"error": str(exc)}
            else:
                reply = {"load_seconds": time.perf_counter() - started, "baseline_rss_bytes": baseline}
        elif "run" in command:
            assert session is not None
            count = int(command["run"])
            reply = {"seconds": time_runs(session, feeds, count, start=cursor)}
            cursor += count
        elif "rss" in command:
            reply = {"peak_rss_bytes": peak_rss_bytes()}
        else:
            break
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
