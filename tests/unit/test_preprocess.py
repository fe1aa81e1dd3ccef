"""Preprocessing reproduces torchvision's eval transform bit for bit, with every number from the manifest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from model.images import photograph
from simsearch.errors import ConfigError
from simsearch.manifest import ModelManifest
from simsearch.preprocess import ImageLimits, decode_image, resized_size, to_batch, to_tensor
from tests.image_factories import encode, manifest_for

GOLDEN: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "fixtures" / "golden_preprocess.json").read_text(encoding="utf-8")
)
LIMITS = ImageLimits(max_bytes=20 * 1024 * 1024, max_pixels=50_000_000)


def sha256(array: np.ndarray[Any, Any]) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def golden_manifest() -> ModelManifest:
    transform = GOLDEN["transform"]
    return manifest_for(
        resize=transform["resize"],
        input_size=transform["input_size"],
        mean=tuple(transform["mean"]),
        std=tuple(transform["std"]),
    )


@pytest.mark.parametrize("golden", GOLDEN["images"], ids=lambda golden: golden["file"])
def test_decoding_gives_the_pixels_torchvision_was_fed(golden: dict[str, Any]) -> None:
    data = photograph(golden["file"])
    assert hashlib.sha256(data).hexdigest() == golden["jpeg_sha256"], "scikit-learn ships a different photo"
    decoded = decode_image(data, limits=LIMITS)
    pixels = np.asarray(decoded.rgb)
    assert list(pixels.shape) == golden["decoded_uint8_shape_hwc"]
    assert sha256(pixels) == golden["decoded_uint8_sha256"]


@pytest.mark.parametrize("golden", GOLDEN["images"], ids=lambda golden: golden["file"])
def test_tensor_is_bit_identical_to_torchvision(
    golden: dict[str, Any], golden_manifest: ModelManifest
) -> None:
    tensor = to_tensor(decode_image(photograph(golden["file"]), limits=LIMITS).rgb, golden_manifest)
    assert tensor.dtype == np.float32
    assert tensor.shape == (3, golden_manifest.input_size, golden_manifest.input_size)
    # The statistics say how far off a failure is; the hash is the real check.
    np.testing.assert_allclose(tensor.mean(axis=(1, 2)), golden["per_channel_mean"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tensor.std(axis=(1, 2)), golden["per_channel_std_ddof0"], rtol=1e-5)
    np.testing.assert_allclose(tensor.min(axis=(1, 2)), golden["per_channel_min"], rtol=1e-6)
    np.testing.assert_allclose(tensor.max(axis=(1, 2)), golden["per_channel_max"], rtol=1e-6)
    np.testing.assert_allclose(tensor.ravel()[:10], golden["first10_flat"], rtol=1e-6)
    assert sha256(tensor) == golden["preprocessed_sha256_float32"]


def test_batch_is_bit_identical_to_torchvision_stack(golden_manifest: ModelManifest) -> None:
    images = [decode_image(photograph(golden["file"]), limits=LIMITS).rgb for golden in GOLDEN["images"]]
    batch = to_batch(images, golden_manifest)
    assert batch.shape == (2, 3, golden_manifest.input_size, golden_manifest.input_size)
    assert batch.flags.c_contiguous
    assert sha256(batch) == GOLDEN["batch_sha256_float32"]


def test_sizes_and_normalisation_come_from_the_manifest() -> None:
    manifest = manifest_for(resize=40, input_size=32, mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    tensor = to_tensor(Image.new("RGB", (90, 60), (255, 0, 51)), manifest)
    assert tensor.shape == (3, 32, 32)
    expected = [(1.0 - 0.5) / 0.5, (0.0 - 0.25) / 0.25, (51 / 255 - 0.0) / 1.0]
    np.testing.assert_allclose(tensor.mean(axis=(1, 2)), expected, rtol=1e-6)
    np.testing.assert_allclose(tensor.std(axis=(1, 2)), 0.0, atol=1e-6)


def test_an_empty_batch_has_the_model_shape() -> None:
    assert to_batch([], manifest_for(resize=40, input_size=32)).shape == (0, 3, 32, 32)


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [
        (640, 427, (383, 256)),  # int(256 * 640 / 427) = 383.6 truncated, as torchvision does
        (427, 640, (256, 383)),
        (300, 300, (256, 256)),
        (1, 1, (256, 256)),
        (1, 3, (256, 768)),
    ],
)
def test_resized_size_truncates_the_long_side_like_torchvision(
    width: int, height: int, expected: tuple[int, int]
) -> None:
    assert resized_size(width, height, resize=256) == expected


def test_crop_is_centred_with_torchvision_rounding() -> None:
    """Offsets are ``int(round((size - crop) / 2.0))``: round half to even, so 3.5 -> 4 but 2.5 -> 2."""
    columns, rows = np.meshgrid(np.arange(11), np.arange(9))
    pixels = np.stack([columns * 20, rows * 20, np.zeros_like(rows)], axis=-1).astype(np.uint8)
    manifest = manifest_for(resize=9, input_size=4, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    tensor = to_tensor(Image.fromarray(pixels), manifest)  # 11x9 stays 11x9: the short side is already 9
    assert np.rint(tensor[0, 0] * 255 / 20).tolist() == [4, 5, 6, 7]  # (11 - 4) / 2 = 3.5 -> 4
    assert np.rint(tensor[1, :, 0] * 255 / 20).tolist() == [2, 3, 4, 5]  # (9 - 4) / 2 = 2.5 -> 2


def test_a_very_elongated_image_gives_nearly_the_torchvision_tensor() -> None:
    """Beyond 16:1 only the cropped window is resized; the result stays within one uint8 step."""
    rng = np.random.default_rng(7)
    strip = Image.fromarray(rng.integers(0, 256, (10, 400, 3), dtype=np.uint8))
    manifest = manifest_for(resize=64, input_size=56, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    tensor = to_tensor(strip, manifest)
    full = strip.resize(resized_size(400, 10, resize=64), Image.Resampling.BILINEAR)  # 2560x64
    left = round((full.width - 56) / 2.0)
    reference = np.asarray(full.crop((left, 4, left + 56, 60)), dtype=np.float32).transpose(2, 0, 1) / 255
    assert tensor.shape == (3, 56, 56)
    assert np.abs(tensor - reference).max() <= 1 / 255 + 1e-6


def test_decoded_image_reports_displayed_size_and_format() -> None:
    decoded = decode_image(encode(Image.new("RGB", (30, 20), (1, 2, 3)), "PNG"), limits=LIMITS)
    assert (decoded.width, decoded.height, decoded.format, decoded.rgb.mode) == (30, 20, "PNG", "RGB")


def test_a_manifest_that_crops_more_than_it_resizes_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="resize=200 must be ≥ input_size=224"):
        to_tensor(Image.new("RGB", (300, 300)), manifest_for(resize=200, input_size=224))


@pytest.mark.parametrize(("max_bytes", "max_pixels"), [(0, 1000), (1000, 0), (1000, 10**12)])
def test_limits_outside_what_pillow_enforces_are_a_config_error(max_bytes: int, max_pixels: int) -> None:
    with pytest.raises(ConfigError, match="MAX_IMAGE_PIXELS"):
        ImageLimits(max_bytes=max_bytes, max_pixels=max_pixels)
