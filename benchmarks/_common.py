"""What the benchmark scripts share: where the data is, and how results are written."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
U2NETP = ROOT / "models" / "u2netp.onnx"
CALIB = ROOT / "calib_images"


def ecssd(path: str | None) -> Path | None:
    """ECSSD from --ecssd, $QUANTKIT_ECSSD or ../shared/datasets/ECSSD; None if absent."""
    for candidate in (
        path,
        os.environ.get("QUANTKIT_ECSSD"),
        str(ROOT.parent / "shared" / "datasets" / "ECSSD"),
    ):
        if candidate and (Path(candidate) / "images").is_dir():
            return Path(candidate)
    return None


def write(name: str, payload: dict[str, Any], markdown: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    for suffix, text in ((".json", json.dumps(payload, indent=2) + "\n"), (".md", markdown)):
        target = RESULTS / f"{name}{suffix}"
        tmp = target.with_suffix(suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
        print(f"wrote {target.relative_to(ROOT)}")
