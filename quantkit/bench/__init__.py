"""Size, peak memory and latency of models, side by side, measured fairly.

This package shares its name with the public function :func:`quantkit.bench`.
Importing any ``quantkit.bench.*`` module (``quantkit.api`` does, so every use of
the public API does) makes Python bind ``quantkit.bench`` to this package,
replacing the lazily exported function; so the package is callable and calling
it is calling :func:`quantkit.api.bench`.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any


class _CallablePackage(ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from quantkit.api import bench

        return bench(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
