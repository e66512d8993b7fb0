"""Where the gate's thresholds come from: the command line over ``[tool.quantkit.gate]``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from quantkit.accuracy.gate import Thresholds, from_pyproject
from quantkit.errors import QuantkitError


def thresholds_from(cli: Thresholds, config: Path | None, no_config: bool, *, has_masks: bool) -> Thresholds:
    """Command-line thresholds over the config file's; a pyproject max-F bar waits for --masks."""
    source = config if config is not None else Path("pyproject.toml")
    thresholds = cli
    if not no_config and (config is not None or source.is_file()):
        if config is not None and not config.is_file():
            raise QuantkitError(f"--config {config} is not a file")
        thresholds = cli.merged_over(from_pyproject(source))
    if thresholds.max_maxf_drop is not None and not has_masks:
        if cli.max_maxf_drop is not None:
            raise QuantkitError("--max-maxf-drop needs ground-truth masks (--masks DIR)")
        thresholds = replace(thresholds, max_maxf_drop=None)  # from the config: only checkable with masks
    return thresholds
