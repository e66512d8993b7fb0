"""Every rembg model family, pre- and post-processed exactly as rembg 2.0.86 does.

The reference is rembg itself: each family's stand-in from ``family_models.py`` is stored where rembg
looks for it (``rembg_harness.py``: a throw-away rembg home, checksums off, network blocked), rembg's
own session cuts out four awkward photos (RGBA, greyscale, non-square, EXIF-rotated JPEG), and quantkit
must return the same masks - found by rembg's file name alone, or by ``family=`` for rembg's custom
sessions. The stand-ins are random, so their masks are not pictures of anything; what they do prove is
that every number between the photo and the mask (input size, mean/std, activation, normalisation,
resizing) is rembg's. The same models then go through ``quantize``, ``compare``, ``remove`` and
``bench`` on the command line, once per architecture, and through rembg's own HTTP server.

Only u2netp has real weights here; the ``slow`` test quantizes it and runs rembg on the INT8 file.
Real-u2netp interop beyond that (rembg's cutout alpha, ...) lives in ``test_rembg_interop.py``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from io import BytesIO, StringIO
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from PIL import Image

import quantkit
from quantkit.accuracy.agreement import agreement
from quantkit.cli import main as cli_main
from quantkit.errors import QuantkitError
from quantkit.model.family import FAMILIES as QUANTKIT_FAMILIES
from quantkit.model.family import Activation, DetectedBy, by_file_name, get_family
from quantkit.model.images import open_image
from quantkit.model.spec import read_spec
from quantkit.progress import NullProgress
from quantkit.ptq.pipeline import plan_quantize

from .cli_helpers import Result, assert_one_line_error
from .cli_helpers import quantkit as quantkit_process
from .conftest import CALIB, U2NETP
from .family_models import FAMILIES, cloth_like, isnet_like, u2net_like
from .rembg_harness import model_file, offline_rembg_home

TOLERANCE = 2 / 255  # mean |diff| against rembg's mask, in [0, 1] units
NOT_PORTED = ("u2net_cloth_seg",)  # refused: its output is an argmax over classes, not a mask
MASK_FAMILIES = [name for name in FAMILIES if name not in NOT_PORTED]
RELEASE_NAMED = [n for n in MASK_FAMILIES if FAMILIES[n].release not in (None, FAMILIES[n].fname)]

needs_rembg = pytest.mark.skipif(importlib.util.find_spec("rembg") is None, reason="rembg not installed")


# ----------------------------------------------------------------------------- photos and models


def _write_photos(folder: Path) -> list[Path]:
    """Four small photos that each exercise a different branch of the image handling."""
    folder.mkdir(parents=True, exist_ok=True)
    lanczos = Image.Resampling.LANCZOS
    with Image.open(CALIB / "astronaut.png") as src:
        rgba = src.convert("RGB").resize((192, 192), lanczos)
    rgba.putalpha(Image.linear_gradient("L").resize((192, 192)))  # alpha 0..255: rembg drops it
    rgba.save(folder / "rgba.png")
    with Image.open(CALIB / "camera.png") as src:
        src.convert("L").crop((64, 96, 288, 256)).save(folder / "grey.png")  # greyscale, 224x160
    with Image.open(CALIB / "chelsea.png") as src:
        src.convert("RGB").resize((225, 150), lanczos).save(folder / "wide.png")
    with Image.open(CALIB / "crop_rocket.jpg") as src:
        upright = src.convert("RGB").resize((120, 208), lanczos)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation 6: stored sideways, viewed rotated 90° clockwise
    upright.transpose(Image.Transpose.ROTATE_90).save(folder / "exif.jpg", quality=92, exif=exif)
    return sorted(folder.iterdir())


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("family_photos")
    _write_photos(folder)
    return folder


@pytest.fixture(scope="module")
def photos(photo_dir: Path) -> list[Path]:
    files = sorted(photo_dir.iterdir())
    modes = {}
    for path in files:
        with Image.open(path) as image:
            modes[path.name] = image.mode
    assert modes == {"exif.jpg": "RGB", "grey.png": "L", "rgba.png": "RGBA", "wide.png": "RGB"}
    assert open_image(photo_dir / "exif.jpg").size == (120, 208)  # the EXIF rotation is real
    return files


def _photo(path: Path) -> Image.Image:
    """A fresh, loaded PIL image with its EXIF data, as a caller would pass it to rembg.remove."""
    image = Image.open(path)
    image.load()
    return image


@functools.cache
def stand_in(family: str) -> onnx.ModelProto:
    """The family's tiny model, built once per builder (families of one architecture share it)."""
    return _built(FAMILIES[family].build)


@functools.cache
def _built(build: Any) -> onnx.ModelProto:
    model: onnx.ModelProto = build()
    return model


def mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean() / 255.0)


def mask_of(image: Image.Image) -> np.ndarray:
    assert image.mode == "L", image.mode
    return np.asarray(image)


# ----------------------------------------------------------------------------- rembg as the reference


@dataclass
class RembgHome:
    """One offline rembg home per module; rembg's masks for each (session, model file) computed once."""

    root: Path

    @property
    def home(self) -> Path:
        return self.root / "rembg"

    def install(self, family: str, model: onnx.ModelProto | Path, name: str | None = None) -> Path:
        """Store ``model`` where rembg finds ``family`` (custom sessions: any file under the home)."""
        path = model_file(family, self.home) if name is None else self.home / "models" / family / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(model, Path):
            shutil.copyfile(model, path)
        else:
            onnx.save(model, path)
        return path

    def masks(
        self, session: str, path: Path, photos: Sequence[Path], sess_opts: Any = None
    ) -> list[np.ndarray]:
        """``rembg.remove(photo, session=new_session(session, ...), only_mask=True)`` for each photo."""
        key = (session, str(path), tuple(map(str, photos)), sess_opts is not None)
        if key not in _REMBG_MASKS:
            import rembg

            extras = {"model_path": str(path)} if FAMILIES[session].custom else {}
            with offline_rembg_home(self.root):
                rembg_session = rembg.new_session(session, sess_opts=sess_opts, **extras)
                _REMBG_MASKS[key] = [
                    mask_of(rembg.remove(_photo(p), session=rembg_session, only_mask=True)) for p in photos
                ]
        return _REMBG_MASKS[key]


_REMBG_MASKS: dict[tuple[Any, ...], list[np.ndarray]] = {}


@pytest.fixture(scope="module")
def rembg_home(tmp_path_factory: pytest.TempPathFactory) -> RembgHome:
    return RembgHome(tmp_path_factory.mktemp("rembg_root"))


def quantkit_masks(session: quantkit.Session, photos: Sequence[Path]) -> list[np.ndarray]:
    return [mask_of(quantkit.cutout(_photo(p), session=session, mask_only=True)) for p in photos]


# ----------------------------------------------------------------------------- the family table


def test_family_table_is_rembgs() -> None:
    """quantkit's table and the harness's (both read from rembg 2.0.86's sessions) agree, family by family."""
    ported = {f.name for f in QUANTKIT_FAMILIES if f.unsupported is None}
    assert ported == set(MASK_FAMILIES)
    for name, theirs in FAMILIES.items():
        ours = get_family(name)
        assert (ours.size, ours.mean, ours.std) == (theirs.size, theirs.mean, theirs.std), name
        assert (ours.activation is Activation.SIGMOID) == theirs.sigmoid, name
        assert ours.mask_output == 0, name
        named = {n for n in (theirs.fname, theirs.release) if n}
        assert named == set(ours.file_names), name


@pytest.mark.parametrize("family", [n for n in FAMILIES if not FAMILIES[n].custom])
def test_detection_by_file_name(family: str) -> None:
    """rembg's stored name and its release download name find the family, whatever comes around them."""
    fam = FAMILIES[family]
    for name in {n for n in (fam.fname, fam.release, f"{family}.onnx") if n is not None}:
        stem = name[: -len(".onnx")]
        for variant in (
            name,
            f"{stem}.int8.onnx",
            f"{stem}-int8.onnx",
            f"my_{stem}.onnx",
            stem.upper() + ".ONNX",
        ):
            found = by_file_name(Path("/models") / variant)
            assert found is not None and found.name == family, (variant, found)


def test_file_names_of_no_family_are_not_guessed() -> None:
    for name in ("model.onnx", "u2netpp.onnx", "myu2net.onnx", "isnet.onnx", "birefnet.onnx", "u2netp2.onnx"):
        assert by_file_name(Path(name)) is None, name


# ----------------------------------------------------------------------------- masks equal rembg's


@needs_rembg
@pytest.mark.parametrize("family", MASK_FAMILIES)
def test_masks_equal_rembgs(family: str, photos: list[Path], rembg_home: RembgHome) -> None:
    """quantkit's mask for the model under rembg's file name (or with ``family=`` for rembg's custom
    sessions) is rembg's own mask, photo by photo."""
    custom = FAMILIES[family].custom
    path = rembg_home.install(family, stand_in(family))
    theirs = rembg_home.masks(family, path, photos)
    session = quantkit.new_session(path, family=family if custom else None)
    assert session.spec.family.name == family
    assert session.spec.detection.by is (DetectedBy.EXPLICIT if custom else DetectedBy.FILE_NAME)
    mine = quantkit_masks(session, photos)
    diffs = {p.name: mean_abs(m, t) for p, m, t in zip(photos, mine, theirs, strict=True)}
    assert max(diffs.values()) <= TOLERANCE, diffs
    assert all(float(m.std()) > 1.0 for m in theirs)  # the stand-in's masks are not blank


@needs_rembg
@pytest.mark.parametrize("family", RELEASE_NAMED)
def test_release_download_names(
    family: str, photos: list[Path], rembg_home: RembgHome, tmp_path: Path
) -> None:
    """The file as downloaded (``BiRefNet-general-epoch_244.onnx``, ``bria-rmbg-2.0.onnx``): same family."""
    stored = rembg_home.install(family, stand_in(family))
    release = Path(shutil.copyfile(stored, tmp_path / str(FAMILIES[family].release)))
    session = quantkit.new_session(release)
    assert (session.spec.family.name, session.spec.detection.by) == (family, DetectedBy.FILE_NAME)
    photo = photos[0]
    theirs = rembg_home.masks(family, stored, photos)[0]
    assert mean_abs(quantkit_masks(session, [photo])[0], theirs) <= TOLERANCE


# ----------------------------------------------------------------------------- the command line


def cli(*args: object) -> Result:
    """``quantkit ARGS`` in this process: the real entry point (parsing, exit codes), without the
    second of interpreter start-up per call."""
    out, err = StringIO(), StringIO()
    code: Any = 0
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(out))
        stack.enter_context(contextlib.redirect_stderr(err))
        try:
            cli_main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code
    return Result(int(code or 0), out.getvalue(), err.getvalue())


def ok(result: Result) -> Result:
    assert result.code == 0, (result.code, result.out, result.err)
    assert "Traceback" not in result.err
    return result


@dataclass(frozen=True)
class Arch:
    """One architecture driven through the CLI by one of its families."""

    family: str
    flag: tuple[str, ...] = ()  # --family for rembg's custom sessions

    @property
    def fp32_name(self) -> str:
        return f"{self.family}.onnx" if not self.flag else "ben.onnx"

    @property
    def quantizable(self) -> bool:
        return get_family(self.family).quantizable


ARCHES = [Arch("u2net"), Arch("isnet-general-use"), Arch("birefnet-general"), Arch("bria-rmbg")]
ARCHES.append(Arch("ben_custom", ("--family", "ben_custom")))
CUSTOM_SESSION = {"u2net": "u2net_custom", "isnet-general-use": "dis_custom"}  # how rembg runs an INT8 file


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("family_cli")


Quantized = Callable[[str], Path]


@pytest.fixture(scope="module")
def int8_model(workdir: Path, photo_dir: Path) -> Quantized:
    """``quantkit quantize`` on a tiny conv stand-in (seconds), once per family, on demand."""

    @functools.cache
    def make(family: str) -> Path:
        fp32 = workdir / f"{family}.onnx"
        onnx.save(stand_in(family), fp32)
        out = workdir / f"{family}.int8.onnx"
        ok(cli("-q", "quantize", fp32, "--calib", photo_dir, "-o", out, "--search-seconds", 0, "--no-cache"))
        return out

    return make


@needs_rembg
@pytest.mark.parametrize("arch", ARCHES, ids=lambda a: a.family)
def test_commands_run_each_architecture(
    arch: Arch,
    photos: list[Path],
    photo_dir: Path,
    workdir: Path,
    rembg_home: RembgHome,
    int8_model: Quantized,
) -> None:
    """compare, remove and bench on the FP32 model (and the INT8 one for U²-Net and IS-Net);
    ``remove --mask-only`` writes rembg's masks, for the INT8 model too (rembg via its custom session)."""
    fp32 = workdir / arch.fp32_name
    onnx.save(stand_in(arch.family), fp32)
    models = [fp32]
    if arch.quantizable:
        models.append(int8_model(arch.family))
    else:
        out = cli("quantize", fp32, *arch.flag, "--calib", photo_dir, "-o", workdir / "never.onnx")
        assert_one_line_error(out, 2, "quantize supports the U²-Net and IS-Net families (convolutional)")
        assert f"{arch.family} is {get_family(arch.family).architecture.value}" in out.err
        assert not (workdir / "never.onnx").exists()
        # a copy whose name says nothing: compare gives it the reference's family
        models.append(Path(shutil.copyfile(fp32, workdir / f"candidate{ARCHES.index(arch)}.onnx")))

    compared = ok(cli("compare", *models, *arch.flag, "--images", photo_dir, "--no-config", "--json", "-"))
    report = json.loads(compared.out)
    assert report["images"] == len(photos)
    assert report["reference"]["family"] == arch.family
    assert [(m["model"], m["family"]) for m in report["models"]] == [(str(models[1]), arch.family)]
    assert "warning" not in compared.err, compared.err  # every family known, none assumed

    runnable = models if arch.quantizable else models[:1]  # the copy adds nothing to remove or bench
    for model in runnable:
        out_dir = workdir / f"masks-{model.stem}"
        ok(cli("remove", model, photo_dir, *arch.flag, "-o", out_dir, "--mask-only"))
        if model == fp32:
            stored = rembg_home.install(arch.family, stand_in(arch.family))
            theirs = rembg_home.masks(arch.family, stored, photos)
        else:
            session = CUSTOM_SESSION[arch.family]
            theirs = rembg_home.masks(session, rembg_home.install(session, model, model.name), photos)
        for photo, their in zip(photos, theirs, strict=True):
            with Image.open(out_dir / f"{photo.stem}.mask.png") as written:
                assert mean_abs(mask_of(written), their) <= TOLERANCE, (model.name, photo.name)

    benched = ok(cli("bench", *runnable, *arch.flag, "--runs", 1, "--warmup", 0))
    for k, model in enumerate(runnable, start=1):
        assert f"  {k}  {model} (ort)" in benched.out, benched.out


@needs_rembg
def test_int8_detected_from_quantkit_metadata(int8_model: Quantized, tmp_path: Path) -> None:
    """A renamed INT8 file keeps its family: quantkit records it in the model it writes."""
    renamed = Path(shutil.copyfile(int8_model("isnet-general-use"), tmp_path / "mine.onnx"))
    spec = read_spec(renamed)
    assert (spec.family.name, spec.detection.by) == ("isnet-general-use", DetectedBy.METADATA)


# ----------------------------------------------------------------------------- refusals and fallbacks


@pytest.fixture(scope="module")
def cloth(workdir: Path) -> Path:
    path = workdir / "u2net_cloth_seg.onnx"
    onnx.save(cloth_like(size=768), path)
    return path


def test_cloth_seg_is_refused_by_every_command(cloth: Path, photo_dir: Path, tmp_path: Path) -> None:
    """u2net_cloth_seg's output is three palette masks, not one: one line and exit 2, everywhere."""
    why = "family u2net_cloth_seg is not supported (its output is a 4-class clothing map"
    for args in (
        ("quantize", cloth, "--calib", photo_dir, "-o", tmp_path / "c.int8.onnx"),
        ("compare", cloth, cloth, "--images", photo_dir, "--no-config"),
        ("remove", cloth, photo_dir, "-o", tmp_path / "out"),
        ("bench", cloth, "--runs", 1),
    ):
        assert_one_line_error(cli(*args), 2, why)
    assert not any(tmp_path.iterdir())
    anonymous = Path(shutil.copyfile(cloth, tmp_path / "clothes.onnx"))  # 768 px: assumed, and said so
    result = cli("remove", anonymous, photo_dir, "-o", tmp_path / "out")
    assert_one_line_error(result, 2, why)
    assert "assumed family u2net_cloth_seg from the model's 768x768 input" in result.err
    assert "pass --family NAME" in result.err
    with pytest.raises(QuantkitError, match="u2net_cloth_seg is not supported"):
        quantkit.new_session(cloth)
    real_process = quantkit_process("bench", cloth, "--family", "u2net_cloth_seg")
    assert_one_line_error(real_process, 2, why)


@pytest.mark.parametrize("family", ["birefnet-general", "bria-rmbg", "ben_custom"])
def test_quantize_refuses_transformer_families(family: str, tmp_path: Path, photo_dir: Path) -> None:
    name = "ben.onnx" if FAMILIES[family].custom else f"{family}.onnx"
    model = tmp_path / name
    onnx.save(stand_in(family), model)
    flag = ("--family", family) if FAMILIES[family].custom else ()
    result = quantkit_process("quantize", model, *flag, "--calib", photo_dir)
    assert_one_line_error(result, 2, "quantize supports the U²-Net and IS-Net families (convolutional)")
    assert f"{family} is {get_family(family).architecture.value}" in result.err
    assert "compare, remove and bench still work" in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


FALLBACKS = [  # (builder, size, the family assumed from the input size)
    (u2net_like, 320, "u2net"),
    (isnet_like, 1024, "isnet-general-use"),
    (FAMILIES["birefnet-general"].build, 1024, "birefnet-general"),  # attention ops: BiRefNet, not IS-Net
]


@pytest.mark.parametrize(("build", "size", "assumed"), FALLBACKS, ids=[f[2] for f in FALLBACKS])
def test_input_size_fallback_says_what_it_assumed(
    build: Any, size: int, assumed: str, photo_dir: Path, tmp_path: Path
) -> None:
    """A file name rembg never uses: every command says which family it assumed and how to override."""
    model = tmp_path / "mystery.onnx"
    onnx.save(_built(build), model)
    note = f"mystery.onnx: assumed family {assumed} from the model's {size}x{size} input"
    one = tmp_path / "one"
    one.mkdir()
    shutil.copyfile(photo_dir / "wide.png", one / "wide.png")
    other = Path(shutil.copyfile(model, tmp_path / "other.onnx"))
    for args in (
        ("remove", model, one, "-o", tmp_path / "out", "--mask-only"),
        ("compare", model, other, "--images", one, "--no-config", "--no-noise-floor"),
        ("bench", model, "--runs", 1, "--warmup", 0),
    ):
        result = ok(cli(*args))
        assert note in result.err and "pass --family NAME if that is wrong" in result.err, (args, result.err)
    explicit = ok(cli("remove", model, one, "-o", tmp_path / "out2", "--mask-only", "--family", assumed))
    assert "assumed" not in explicit.err
    if get_family(assumed).quantizable:
        warned: list[str] = []

        class Recorder(NullProgress):
            def warn(self, message: str) -> None:
                warned.append(message)

        plan_quantize(model, output=tmp_path / "q.onnx", progress=Recorder())
        assert any(f"assumed family {assumed}" in w and "--family" in w for w in warned), warned


def test_custom_family_needs_family_flag(tmp_path: Path) -> None:
    """rembg's custom sessions have no file name; without ``family=`` quantkit falls back and says so."""
    model = tmp_path / "model.onnx"
    onnx.save(stand_in("ben_custom"), model)
    guessed = quantkit.new_session(model)
    assert guessed.spec.detection.by is DetectedBy.INPUT_SIZE
    assert guessed.spec.detection.note is not None and "--family" in guessed.spec.detection.note
    assert quantkit.new_session(model, family="ben_custom").spec.family.name == "ben_custom"


# ----------------------------------------------------------------------------- rembg's own server


@dataclass(frozen=True)
class RembgServer:
    url: str
    home: Path

    def remove_mask(self, session: str, model: Path, photo: Path) -> np.ndarray:
        """POST /api/remove with ``model=session``, ``om=true`` and ``extras={"model_path": ...}``."""
        extras = urllib.parse.quote(json.dumps({"model_path": str(model)}))
        boundary = uuid.uuid4().hex
        body = b"".join(
            [
                *(
                    f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                    for k, v in (("model", session), ("om", "true"))
                ),
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{photo.name}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n".encode(),
                photo.read_bytes(),
                f"\r\n--{boundary}--\r\n".encode(),
            ]
        )
        request = urllib.request.Request(
            f"{self.url}/api/remove?extras={extras}",
            data=body,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        with _local_opener().open(request, timeout=120) as response:
            assert response.headers["content-type"] == "image/png"
            with Image.open(BytesIO(response.read())) as image:
                return mask_of(image.convert("L") if image.mode != "L" else image)


def _local_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only, never a proxy


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


SERVER_DEPS = ("click", "fastapi", "uvicorn", "asyncer", "aiohttp", "filetype")


@pytest.fixture(scope="module")
def rembg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RembgServer]:
    """``rembg s --no-ui`` on a free 127.0.0.1 port with its own offline home; always stopped."""
    missing = [m for m in SERVER_DEPS if importlib.util.find_spec(m) is None]
    if importlib.util.find_spec("rembg") is None or missing:
        pytest.skip(f"rembg's CLI dependencies are missing ({', '.join(missing) or 'rembg'})")
    if importlib.util.find_spec("python_multipart") is None and importlib.util.find_spec("multipart") is None:
        pytest.skip("rembg's CLI dependencies are missing (python-multipart)")
    root = tmp_path_factory.mktemp("rembg_server")
    env = {k: v for k, v in os.environ.items() if k not in ("U2NET_HOME", "DISPLAY", "WAYLAND_DISPLAY")}
    env.update(
        REMBG_HOME=str(root / "rembg"),
        XDG_DATA_HOME=str(root / "xdg"),
        MODEL_CHECKSUM_DISABLED="1",
        ORT_DISABLE_TELEMETRY="1",
        BROWSER=shutil.which("true") or "true",  # the server opens a browser on start-up; make it a no-op
        NO_PROXY="127.0.0.1,localhost",
    )
    port = _free_port()
    command = [sys.executable, "-c", "from rembg.cli import main; main(prog_name='rembg')"]
    args = ["s", "--host", "127.0.0.1", "--port", str(port), "--no-ui", "--log_level", "warning"]
    log = (root / "server.log").open("w+")
    proc = subprocess.Popen([*command, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                log.seek(0)
                text = log.read()
                if "ModuleNotFoundError" in text or "ImportError" in text:
                    pytest.skip(f"rembg's CLI dependencies are missing: {text.strip().splitlines()[-1]}")
                pytest.fail(f"rembg s exited with {proc.returncode}:\n{text}")
            with contextlib.suppress(OSError), _local_opener().open(f"{url}/api", timeout=2) as response:
                if response.status == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail("rembg s did not answer GET /api within 90 s")
            time.sleep(0.2)
        yield RembgServer(url, root / "rembg")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _served_matches_quantkit(server: RembgServer, session: str, model: Path, photos: Sequence[Path]) -> None:
    served = server.home / "models" / session / model.name  # custom models must lie under rembg's home
    served.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, served)
    ours = quantkit.new_session(model)
    for photo in photos:
        theirs = server.remove_mask(session, served, photo)
        mine = mask_of(quantkit.cutout(_photo(photo), session=ours, mask_only=True))
        assert mean_abs(mine, theirs) <= TOLERANCE, (model.name, photo.name)


@pytest.mark.parametrize("family", ["u2net", "isnet-general-use"])
def test_rembg_server_serves_the_int8_stand_in(
    family: str, rembg_server: RembgServer, int8_model: Quantized, photo_dir: Path
) -> None:
    """rembg's HTTP API (``u2net_custom`` / ``dis_custom`` + ``extras``) returns quantkit's own mask."""
    photos = [photo_dir / "exif.jpg", photo_dir / "rgba.png"]
    _served_matches_quantkit(rembg_server, CUSTOM_SESSION[family], int8_model(family), photos)


# ----------------------------------------------------------------------------- the real u2netp (slow)

REAL_PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "grace_hopper.jpg"]


@needs_rembg
@pytest.mark.slow
def test_rembg_runs_the_real_int8_u2netp(
    u2netp_int8: Path, photos: list[Path], rembg_home: RembgHome
) -> None:
    """rembg itself (``u2net_custom``, memory patterns off) on quantkit's default INT8 u2netp gives
    quantkit's masks, and masks close to rembg's own FP32 ones."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_mem_pattern = False
    files = [*(CALIB / n for n in REAL_PHOTOS), *photos]
    int8 = rembg_home.install("u2net_custom", u2netp_int8, "u2netp.int8.onnx")
    theirs = rembg_home.masks("u2net_custom", int8, files, sess_opts=opts)
    fp32 = rembg_home.masks("u2netp", rembg_home.install("u2netp", U2NETP), files, sess_opts=opts)
    mine = quantkit_masks(quantkit.new_session(u2netp_int8), files)
    for path, t, m, f in zip(files, theirs, mine, fp32, strict=True):
        assert agreement(t / 255.0, m / 255.0).iou >= 0.99, path.name  # same model, same pipeline
        assert mean_abs(t, m) <= TOLERANCE, path.name
        assert agreement(f / 255.0, t / 255.0).iou >= 0.9, path.name  # INT8 against rembg's FP32
    ious = [agreement(f / 255.0, t / 255.0).iou for f, t in zip(fp32, theirs, strict=True)]
    assert float(np.mean(ious)) >= 0.95, ious


@pytest.mark.slow
def test_rembg_server_serves_the_real_int8_u2netp(
    u2netp_int8: Path, photos: list[Path], rembg_server: RembgServer
) -> None:
    """The same file through ``rembg s``: ``u2net_custom`` + ``extras`` returns quantkit's mask."""
    _served_matches_quantkit(rembg_server, "u2net_custom", u2netp_int8, [CALIB / "chelsea.png", *photos[:2]])


def test_public_cutout_is_callable_after_new_session(tmp_path: Path) -> None:
    """``quantkit.cutout`` is also a sub-package; importing it must not hide the function."""
    model = tmp_path / "u2netp.onnx"
    onnx.save(stand_in("u2netp"), model)
    session = quantkit.new_session(model)
    image = Image.new("RGB", (40, 30), (200, 30, 30))
    assert quantkit.cutout(image, session=session, mask_only=True).size == (40, 30)
    assert quantkit.cutout(image, session=session).mode == "RGBA"
