"""Runtimes behind one seam: everything that runs a model for its masks or its speed.

``compare``, ``remove``, the held-out check and ``bench`` ask for a runner through
:func:`open_runner`; which engine runs it is a setting, not a branch in each
caller. Adding a runtime is one module and one entry in ``_OPENERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from quantkit.runtime.base import Runner, RuntimeName, RuntimeSettings


def _ort(model: Path, settings: RuntimeSettings, output: int) -> Runner:
    from quantkit.runtime.ort import OrtRunner

    return OrtRunner(model, settings, output)


def _openvino(model: Path, settings: RuntimeSettings, output: int) -> Runner:
    from quantkit.runtime.openvino import OpenVinoRunner

    return OpenVinoRunner(model, settings, output)


_OPENERS: dict[RuntimeName, Callable[[Path, RuntimeSettings, int], Runner]] = {
    RuntimeName.ORT: _ort,
    RuntimeName.OPENVINO: _openvino,
}


def open_runner(model: Path, settings: RuntimeSettings | None = None, output: int = 0) -> Runner:
    """Load ``model`` on the runtime ``settings`` names; read output ``output`` (the mask)."""
    settings = settings or RuntimeSettings()
    return _OPENERS[settings.runtime](model, settings, output)
