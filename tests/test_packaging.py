"""What a user installing the wheel gets: photos, licences, every sub-package, a working main job.

A wheel install used to fail at the main job (``quantkit quantize model.onnx``
from any folder but a clone: the calibration photos were not in the package) and
lacked the LICENSE file. The wheel is built from this checkout here and looked
into; the slow test installs it apart from the source tree and quantizes u2netp
from an unrelated folder with no options.

Then a fresh install died at start: typer 0.26 stopped depending on click, which
quantkit imported without declaring it (the ``rembg`` extra happened to bring it,
so a development install hid it). Every package quantkit imports is now checked
against pyproject.toml here; ``.ci/run`` installs the bare wheel in a fresh venv,
and runs the quick tests on the lowest releases the bounds allow.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT, U2NETP


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (path,) = out.glob("quantkit-*.whl")
    return path


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "quantkit").rglob("__init__.py")} | {
        "quantkit.calib_images"
    }
    assert listed == found


def test_wheel_carries_photos_licences_and_types(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    photos = [n for n in names if n.startswith("quantkit/calib_images/") and n.endswith((".jpg", ".png"))]
    assert len(photos) == len([p for p in (ROOT / "calib_images").iterdir() if p.suffix in (".jpg", ".png")])
    assert "quantkit/calib_images/SOURCES.md" in names
    assert "quantkit/py.typed" in names
    licences = {Path(n).name for n in names if "/licenses/" in n}
    assert {"LICENSE", "LICENSE-U2Net-Apache-2.0.txt", "LICENSE-rembg.txt"} <= licences
    metadata = next(n for n in names if n.endswith("METADATA"))
    text = zipfile.ZipFile(wheel).read(metadata).decode()
    requires = [
        line for line in text.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line
    ]
    core = {_requirement_name(line.split(maxsplit=1)[1]) for line in requires}
    assert core == {"onnx", "onnxruntime", "numpy", "pillow", "typer", "rich"}


# Import names that differ from the distribution that provides them.
DISTRIBUTION_OF = {"PIL": "pillow"}


def _imported_packages() -> dict[str, set[str]]:
    """Top-level packages quantkit/ imports (``import``, ``from``, ``import_module("...")``) -> files."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "quantkit").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                names = [node.args[0].value]
            for name in names:
                top = name.split(".")[0]
                if top != "quantkit" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _requirement_name(requirement: str) -> str:
    name = re.split(r"[\[<>=!~;\s]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> tuple[list[str], list[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project["optional-dependencies"].values() for r in group]
    return list(project["dependencies"]), extras


def test_every_imported_package_is_declared() -> None:
    core, extras = _declared()
    declared = {_requirement_name(r) for r in [*core, *extras]}
    imported = _imported_packages()
    assert {"typer", "onnxruntime", "PIL", "openvino"} <= imported.keys()  # the scan sees them all
    missing = {
        name: sorted(files)
        for name, files in imported.items()
        if _requirement_name(DISTRIBUTION_OF.get(name, name)) not in declared
    }
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_dependencies_have_lower_bounds_and_no_upper_bounds() -> None:
    """.ci/run installs the lowest releases the bounds allow; a cap would need a known-broken release."""
    core, extras = _declared()
    for requirement in [*core, *extras]:
        spec = requirement.split(";")[0]
        assert ">=" in spec, requirement
        assert "<" not in spec.replace(">=", "") and "==" not in spec, requirement


@pytest.mark.slow
def test_installed_wheel_quantizes_from_an_unrelated_folder(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    folder = tmp_path / "somewhere"
    folder.mkdir()
    (folder / "u2netp.onnx").write_bytes(U2NETP.read_bytes())
    env = dict(os.environ, PYTHONPATH=str(site), QUANTKIT_CACHE_DIR=str(tmp_path / "cache"))
    probe = subprocess.run(
        [sys.executable, "-c", "import quantkit; print(quantkit.__file__)"],
        cwd=folder,  # not the checkout: `python -c` puts the working directory first on sys.path
        capture_output=True,
        text=True,
        env=env,
    )
    assert probe.stdout.startswith(str(site)), probe  # the wheel, not this checkout
    result = subprocess.run(
        [sys.executable, "-m", "quantkit", "quantize", "u2netp.onnx"],
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    assert "17 photos" in result.stdout  # the bundled 22, less the 5 held out for the check
    assert (folder / "u2netp.int8.onnx").is_file()
    assert sorted(p.name for p in folder.iterdir()) == ["u2netp.int8.onnx", "u2netp.onnx"]
