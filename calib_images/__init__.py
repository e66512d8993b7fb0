"""The bundled calibration photos, installed as the package data ``quantkit.calib_images``.

This folder is the photos' source of truth (see SOURCES.md, and build.py to rebuild
them); pyproject.toml maps it into the wheel so ``quantkit quantize MODEL`` works
from any folder after a plain ``pip install``.
"""
