"""Rebuild this folder from the permissively licensed packages it was taken from.

The calibration photos are committed, so nobody needs to run this; it exists so
that every file here can be traced to its source (see SOURCES.md) and rebuilt
byte-for-byte where the source is a file, or pixel-for-pixel where it is raw data
or a crop.

Needs: scikit-image 0.25, matplotlib, scikit-learn, and the scipy 1.11.1 wheel
(the last one whose ``scipy/misc`` still carries ``face.dat``/``ascent.dat``):
``pip download --no-deps scipy==1.11.1`` and pass its path.

    python calib_images/build.py path/to/scipy-1.11.1-*.whl
"""

from __future__ import annotations

import bz2
import io
import pickle
import shutil
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent

# (name in this folder, package, path inside the package)
COPIES = [
    ("astronaut.png", "skimage", "data/astronaut.png"),
    ("camera.png", "skimage", "data/camera.png"),
    ("chelsea.png", "skimage", "data/chelsea.png"),
    ("coffee.png", "skimage", "data/coffee.png"),
    ("coins.png", "skimage", "data/coins.png"),
    ("clock_motion.png", "skimage", "data/clock_motion.png"),
    ("rocket.jpg", "skimage", "data/rocket.jpg"),
    ("grace_hopper.jpg", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ("china.jpg", "sklearn", "datasets/images/china.jpg"),
    ("flower.jpg", "sklearn", "datasets/images/flower.jpg"),
]

# (name, source file in this folder, crop box) - tighter framings of the same
# photos, because cutout inputs are often a single subject filling the frame.
CROPS = [
    ("crop_astronaut_portrait.jpg", "astronaut.png", (60, 0, 340, 280)),
    ("crop_shuttle_model.jpg", "astronaut.png", (320, 0, 512, 260)),
    ("crop_helmet.jpg", "astronaut.png", (260, 300, 512, 512)),
    ("crop_coffee_cup.jpg", "coffee.png", (180, 0, 480, 300)),
    ("crop_cat_face.jpg", "chelsea.png", (150, 0, 451, 300)),
    ("crop_raccoon_face.jpg", "raccoon.jpg", (520, 50, 950, 450)),
    ("crop_rocket.jpg", "rocket.jpg", (220, 80, 420, 427)),
    ("crop_pagoda.jpg", "china.jpg", (60, 20, 380, 420)),
    ("crop_dahlia.jpg", "flower.jpg", (170, 80, 470, 380)),
    ("crop_hopper_portrait.jpg", "grace_hopper.jpg", (60, 30, 400, 400)),
]


def _package_dir(name: str) -> Path:
    module = __import__(name)
    return Path(module.__file__).resolve().parent


def main(scipy_wheel: str) -> None:
    for target, package, inner in COPIES:
        shutil.copyfile(_package_dir(package) / inner, HERE / target)

    with zipfile.ZipFile(scipy_wheel) as wheel:
        face = wheel.read("scipy/misc/face.dat")
        ascent = wheel.read("scipy/misc/ascent.dat")
    raccoon = np.frombuffer(bz2.decompress(face), dtype=np.uint8).reshape(768, 1024, 3)
    Image.fromarray(raccoon).save(HERE / "raccoon.jpg", quality=92)
    stairs = np.asarray(pickle.load(io.BytesIO(ascent))).astype(np.uint8)
    Image.fromarray(stairs).save(HERE / "ascent.png")

    for target, source, box in CROPS:
        with Image.open(HERE / source) as image:
            image.convert("RGB").crop(box).save(HERE / target, quality=92)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
