"""How quantkit signs what it writes, and recognises it later.

``--force`` may replace an existing output only when quantkit wrote it: a report
folder carries a marker file, a model carries quantkit's key in its
``metadata_props``, a JSON file a top-level ``quantkit`` object (with the version
and command that wrote it), a Markdown table a first-line comment, a PNG a
``Software`` text chunk. Anything else - a user's file that merely sits where an
output should go - is refused even with ``--force``: a typo in ``--report`` must
never delete a folder of photos. A report folder is replaced whole, so besides
the marker it may hold only the files quantkit writes there: a user's notes
saved into an old report are not deleted with it.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from typing import Any

from quantkit import __version__

MODEL_KEY = "quantkit.version"  # metadata_props key of every model quantkit writes
FAMILY_KEY = "quantkit.family"  # ...and the family it was quantized as, read back by detection
TARGET_CPU_KEY = "quantkit.target_cpu"  # ...the CPUs it is made for, read back by the runtime (quantkit.isa)
WEIGHT_BITS_KEY = "quantkit.weight_bits"  # ...and what that meant for its weights: 7 or 8
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
    mark = data.get("quantkit") if isinstance(data, dict) else None
    return isinstance(mark, dict) and {"version", "command"} <= mark.keys()


def _markdown(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.readline().decode("utf-8", "replace").strip() == MARKDOWN_HEADER


def _png(path: Path) -> bool:
    from PIL import Image

    with Image.open(path) as image:
        return str(image.info.get("Software", "")).startswith("quantkit")


# What quantkit.accuracy.html puts in a report folder. A name it does not write means the
# folder holds something of the user's; if the page ever gains files, the cost of
# forgetting this list is a refusal, never a deletion.
_REPORT_FILE = re.compile(r"index\.html|m\d+_.*_(photo\.jpg|(ref|model|diff|noise)\.png)", re.DOTALL)


def _report(path: Path) -> bool:
    if path.is_symlink() or not (path / REPORT_MARKER).is_file():
        return False
    for entry in path.iterdir():
        if entry.name == REPORT_MARKER:
            continue
        if entry.is_symlink() or not entry.is_file() or not _REPORT_FILE.fullmatch(entry.name):
            return False
    return True


_CHECKS = {
    OutputKind.MODEL: _model,
    OutputKind.JSON: _json,
    OutputKind.MARKDOWN: _markdown,
    OutputKind.PNG: _png,
    OutputKind.REPORT: _report,
}
