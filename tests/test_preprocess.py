from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from quantkit.model.family import IMAGENET_MEAN, IMAGENET_STD, Activation, DetectedBy, Detection, get_family
from quantkit.model.preprocess import mask_array, postprocess, preprocess
from quantkit.model.spec import ModelSpec

from .conftest import CALIB


def spec(size: int, family: str = "u2netp") -> ModelSpec:
    """A square model of ``family`` without a file: preprocessing needs only these facts."""
    return ModelSpec(
        path=Path(f"{family}.onnx"),
        input_name="input.1",
        height=size,
        width=size,
        dynamic_size=False,
        detection=Detection(get_family(family), DetectedBy.EXPLICIT),
        opset=13,
        quantized=False,
    )


def test_preprocess_matches_hand_computed_tensor() -> None:
    # 2x2 RGB photo at the model's own size, so the LANCZOS resize is the identity.
    pixels = np.array([[[200, 100, 0], [50, 25, 10]], [[0, 0, 0], [100, 200, 50]]], dtype=np.uint8)
    tensor = preprocess(Image.fromarray(pixels), spec(2))
    # Divide by the image's own maximum (200), subtract ImageNet mean, divide by std.
    expected_r = [
        [(1.0 - 0.485) / 0.229, (0.25 - 0.485) / 0.229],
        [(0.0 - 0.485) / 0.229, (0.5 - 0.485) / 0.229],
    ]
    expected_g = [
        [(0.5 - 0.456) / 0.224, (0.125 - 0.456) / 0.224],
        [(0.0 - 0.456) / 0.224, (1.0 - 0.456) / 0.224],
    ]
    expected_b = [
        [(0.0 - 0.406) / 0.225, (0.05 - 0.406) / 0.225],
        [(0.0 - 0.406) / 0.225, (0.25 - 0.406) / 0.225],
    ]
    assert tensor.dtype == np.float32
    assert tensor.shape == (1, 3, 2, 2)
    np.testing.assert_allclose(tensor[0], np.array([expected_r, expected_g, expected_b]), rtol=0, atol=1e-6)


def rembg_normalize(
    img: Image.Image, mean: tuple[float, ...], std: tuple[float, ...], size: tuple[int, int]
) -> np.ndarray:
    """rembg 2.0.x ``BaseSession.normalize``, transcribed line by line."""
    im = img.convert("RGB").resize(size, Image.Resampling.LANCZOS)
    im_ary = np.array(im)
    im_ary = im_ary / max(np.max(im_ary), 1e-6)
    tmp = np.zeros((im_ary.shape[0], im_ary.shape[1], 3))
    tmp[:, :, 0] = (im_ary[:, :, 0] - mean[0]) / std[0]
    tmp[:, :, 1] = (im_ary[:, :, 1] - mean[1]) / std[1]
    tmp[:, :, 2] = (im_ary[:, :, 2] - mean[2]) / std[2]
    tmp = tmp.transpose((2, 0, 1))
    return np.expand_dims(tmp, 0).astype(np.float32)


@pytest.mark.parametrize("name", ["chelsea.png", "camera.png", "rocket.jpg"])
def test_preprocess_is_bit_identical_to_rembg_on_real_photos(name: str) -> None:
    with Image.open(CALIB / name) as image:
        ours = preprocess(image, spec(320))
        theirs = rembg_normalize(image, IMAGENET_MEAN, IMAGENET_STD, (320, 320))
    assert np.array_equal(ours, theirs)


def test_preprocess_agrees_with_installed_rembg() -> None:
    base = pytest.importorskip("rembg.sessions.base")
    with Image.open(CALIB / "coffee.png") as image:
        theirs = base.BaseSession.normalize(_FakeSession(), image, IMAGENET_MEAN, IMAGENET_STD, (320, 320))[
            "input.1"
        ]
        assert np.array_equal(preprocess(image, spec(320)), theirs)


class _FakeSession:
    class inner_session:
        @staticmethod
        def get_inputs() -> list[object]:
            class _Input:
                name = "input.1"

            return [_Input()]


def test_black_image_does_not_divide_by_zero() -> None:
    tensor = preprocess(Image.new("RGB", (5, 5)), spec(4))
    assert np.isfinite(tensor).all()


def test_family_mean_and_std_are_used() -> None:
    """isnet-general-use normalises with mean 0.5 and std 1, not ImageNet's."""
    pixels = np.array([[[255, 0, 51]]], dtype=np.uint8)
    tensor = preprocess(Image.fromarray(pixels), spec(1, "isnet-general-use"))
    np.testing.assert_allclose(tensor[0, :, 0, 0], [0.5, -0.5, 0.2 - 0.5], atol=1e-6)


def test_postprocess_normalises_truncates_and_resizes() -> None:
    output = np.array([[[[0.1, 0.35], [0.6, 1.1]]]], dtype=np.float32)
    mask = postprocess(output, (2, 2), Activation.NONE)
    # min-max to 0, .25, .5, 1; times 255 is 0, 63.75, 127.5, 255; truncated, not rounded
    assert np.array_equal(np.asarray(mask), np.array([[0, 63], [127, 255]], dtype=np.uint8))
    assert postprocess(output, (7, 3), Activation.NONE).size == (7, 3)


def test_postprocess_sigmoid_comes_before_the_min_max() -> None:
    """BiRefNet's logits: sigmoid first (in float32, as rembg), then min-max, then truncation."""
    logits = np.array([[[[-2.0, 0.0], [1.0, 3.0]]]], dtype=np.float32)
    squashed = (np.float32(1) / (np.float32(1) + np.exp(-logits)))[0, 0]
    expected = ((squashed - squashed.min()) / (squashed.max() - squashed.min()) * 255).astype(np.uint8)
    mask = np.asarray(postprocess(logits, (2, 2), Activation.SIGMOID))
    assert np.array_equal(mask, expected)
    assert not np.array_equal(mask, np.asarray(postprocess(logits, (2, 2), Activation.NONE)))


def test_postprocess_constant_or_non_finite_prediction_is_black_not_nan() -> None:
    mask = postprocess(np.full((1, 1, 4, 4), 0.3, dtype=np.float32), (4, 4), Activation.NONE)
    assert np.asarray(mask).max() == 0
    assert mask_array(mask).dtype == np.float32
    broken = np.array([[[[np.nan, 1.0], [np.inf, 0.0]]]], dtype=np.float32)
    assert np.array_equal(
        np.asarray(postprocess(broken, (2, 2), Activation.NONE)), np.array([[0, 255], [0, 0]], np.uint8)
    )
