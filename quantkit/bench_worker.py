"""The child process ``quantkit bench`` measures one model in.

A fresh interpreter per model means each model's peak RSS is its own: nothing
another model allocated (or onnxruntime's arena kept) can inflate it. The parent
drives the child over stdin/stdout with one JSON object per line, so it can
interleave the models' timed runs round by round.

Commands: ``{"load": {...}}`` -> load time; ``{"run": n}`` -> n latencies in
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
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB


def _inputs(spec_path: Path, images: list[str], count: int) -> tuple[str, list[np.ndarray]]:
    from quantkit.images import SkipLog, iter_images
    from quantkit.preprocess import preprocess
    from quantkit.spec import read_spec

    spec = read_spec(spec_path)
    tensors = [
        preprocess(image, spec) for _, image in iter_images([Path(p) for p in images[:count]], SkipLog())
    ]
    if not tensors:  # no photos given: a fixed pseudo-photo, the same for every model
        rng = np.random.default_rng(0)
        tensors = [rng.standard_normal((1, 3, spec.height, spec.width)).astype(np.float32)]
    return spec.input_name, tensors


def main() -> None:
    import onnxruntime as ort

    from quantkit.session import OptLevel, SessionSettings, make_session

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
            name, tensors = _inputs(Path(spec["model"]), spec["images"], spec["max_images"])
            feeds = [{name: t} for t in tensors]
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
            first = [session.get_outputs()[0].name]
            seconds = []
            for _ in range(int(command["run"])):
                feed = feeds[cursor % len(feeds)]
                cursor += 1
                started = time.perf_counter()
                session.run(first, feed)
                seconds.append(time.perf_counter() - started)
            reply = {"seconds": seconds}
        elif "rss" in command:
            reply = {"peak_rss_bytes": peak_rss_bytes()}
        else:
            break
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
