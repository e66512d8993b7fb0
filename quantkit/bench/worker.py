"""The child process ``quantkit bench`` measures one model on one runtime in.

A fresh interpreter per model means each model's peak RSS is its own: nothing
another model allocated (or a runtime's arena kept) can inflate it. The parent
drives the child over stdin/stdout with one JSON object per line, so it can
interleave the models' timed runs round by round.

Commands: ``{"load": {...}}`` -> load time (inputs arrive preprocessed as
``.npy``, so this process imports neither PIL nor onnx); ``{"run": n}`` -> n
latencies in seconds; ``{"rss": true}`` -> peak RSS in bytes; end of input or anything else ends it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def main() -> None:
    # Only numpy and the runtime here: the child's memory is the model's.
    from quantkit.bench.timing import time_runs
    from quantkit.runtime import open_runner
    from quantkit.runtime.base import OptLevel, Runner, RuntimeName, RuntimeSettings
    from quantkit.system import peak_rss_bytes

    runner: Runner | None = None
    inputs: list[np.ndarray] = []
    cursor = 0
    for line in sys.stdin:
        command = json.loads(line)
        reply: dict[str, Any]
        if "load" in command:
            spec = command["load"]
            raw = dict(spec["settings"])
            settings = RuntimeSettings(
                **{**raw, "runtime": RuntimeName(raw["runtime"]), "opt_level": OptLevel(raw["opt_level"])}
            )
            batch = np.load(spec["inputs"])
            inputs = [batch[k] for k in range(batch.shape[0])]
            baseline = peak_rss_bytes() or 0
            started = time.perf_counter()
            try:
                runner = open_runner(Path(spec["model"]), settings, int(spec["mask_output"]))
            except Exception as exc:  # reported to the parent as one line
                reply = {"error": str(exc)}
            else:
                reply = {"load_seconds": time.perf_counter() - started, "baseline_rss_bytes": baseline}
        elif "run" in command and runner is not None:
            count = int(command["run"])
            reply = {"seconds": time_runs(runner, inputs, count, start=cursor)}
            cursor += count
        elif "rss" in command:
            reply = {"peak_rss_bytes": peak_rss_bytes() or 0}
        else:
            break
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
