"""How quantkit signs what it writes, and recognises it later.

``--force`` may replace an existing output only when quantkit wrote it: a report
folder carries a marker file, a model carries quantkit's key in its
``metadata_props``, a JSON file a top-level ``quantkit`` object, a Markdown table a
first-line comment, a PNG a ``Software`` text chunk. Anything else - a user's
file that merely sits where an output should go - is refused even with
``--force``: a typo in ``--report`` must never delete a folder of photos.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

from quantkit import __version__

MODEL_KEY = "quantkit.version"  # metadata_props key of every model quantkit writes
FAMILY_KEY = "quantkit.family"  # ...and the family it was quantized as, read back by detection
REPORT_MARKER = ".quantkit-report"  # file inside every report folder
MARKDOWN_HEADER = "<!-- written by quantkit -->"
PNG_SOFTWARE = f"quantkit {__version__}"
JSON_SCHEMA_VERSION = 1


class OutputKind(str, Enum):
    MODEL = "model"
    JSON = "JSON file"
    MARKDOWN = "Markdown file"
    PNG = "PNG image"
    REPORT = "report folder"


def sign_json(payload: dict[str, Any], command: str) -> dict[str, Any]:
    """``payload`` with quantkit's signature first: what wrote it, and the schema version."""
    mark = {"version": __version__, "command": command, "schema_version": JSON_SCHEMA_VERSION}
    return {"quantkit": mark, **payload}


def written_by_quantkit(path: Path, kind: OutputKind) -> bool:
    """Whether ``path`` carries quantkit's mark for its kind (never raises)."""
    try:
        return _CHECKS[kind](path)
    except Exception:  # unreadable, truncated, foreign: not ours
        return False


def _model(path: Path) -> bool:
    import onnx

    model = onnx.load_model(str(path), load_external_data=False)
    return any(p.key == MODEL_KEY for p in model.metadata_props)


def _json(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(1 << 20)
    data = json.loads(head)
    return isinstance(data, dict) and isinstance(data.get("quantkit"), dict)


def _markdown(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.readline().decode("utf-8", "replace").strip() == MARKDOWN_HEADER


def _png(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as image:
        return str(image.info.get("Software", "")).startswith("quantkit")


def _report(path: Path) -> bool:
    return (path / REPORT_MARKER).is_file()


_CHECKS = {
    OutputKind.MODEL: _model,
    OutputKind.JSON: _json,
    OutputKind.MARKDOWN: _markdown,
    OutputKind.PNG: _png,
    OutputKind.REPORT: _report,
}
