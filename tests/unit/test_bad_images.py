"""Awkward and hostile uploads: each gives a correct tensor or the documented typed error.

Every input is built in the test; the tensors use a small manifest (resize 40, crop 32) and identity
normalisation, so expected pixel values read directly as ``value / 255``.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from model.images import photograph
from simsearch.errors import ImageTooLargeError, InvalidImageError, UnsupportedImageError
from simsearch.preprocess import ImageLimits, Tensor, decode_image, to_tensor
from tests.image_factories import (
    BLACK,
    BLUE,
    GREEN,
    RED,
    SVG,
    animated_gif,
    encode,
    gray_ramp,
    heif_like,
    jpeg_with_orientation,
    manifest_for,
    png_declaring,
    two_halves,
)

LIMITS = ImageLimits(max_bytes=1_000_000, max_pixels=4_000_000)
MANIFEST = manifest_for(resize=40, input_size=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
WHITE = (255, 255, 255)


def tensor_of(data: bytes) -> Tensor:
    return to_tensor(decode_image(data, limits=LIMITS).rgb, MANIFEST)


def mean_colour(tensor: Tensor) -> list[float]:
    """The average RGB of a tensor made with identity normalisation, back on the 0..255 scale."""
    return [float(value) for value in tensor.mean(axis=(1, 2)) * 255]


# Refused: empty, corrupt, not an image, too large


def test_zero_bytes_is_invalid() -> None:
    with pytest.raises(InvalidImageError, match="empty"):
        decode_image(b"", limits=LIMITS)


@pytest.mark.parametrize("kept", [0.01, 0.5, 0.99])
def test_a_truncated_jpeg_is_invalid_not_half_a_picture(kept: float) -> None:
    photo = photograph("china.jpg")
    with pytest.raises(InvalidImageError, match=r"truncated|not a complete image") as raised:
        decode_image(photo[: int(len(photo) * kept)], limits=LIMITS)
    assert raised.value.code == "invalid_image"


def test_text_named_jpg_is_invalid() -> None:
    with pytest.raises(InvalidImageError, match="not a complete image in an accepted format") as raised:
        decode_image(b"holiday.jpg: this file only contains text\n", limits=LIMITS)
    assert raised.value.code == "invalid_image"


def test_svg_is_refused_as_an_unsupported_image() -> None:
    with pytest.raises(UnsupportedImageError, match="SVG images are not supported; accepted formats: JPEG"):
        decode_image(SVG, limits=LIMITS)


def test_more_bytes_than_the_limit_is_too_large_before_decoding() -> None:
    limits = ImageLimits(max_bytes=1000, max_pixels=4_000_000)
    with pytest.raises(ImageTooLargeError, match="the image is 1001 bytes; the limit is 1000 bytes"):
        decode_image(b"\xff\xd8" + bytes(999), limits=limits)


def test_a_png_declaring_30000x30000_is_refused_from_its_header() -> None:
    bomb = png_declaring(30000, 30000)
    assert len(bomb) < 100
    with pytest.raises(ImageTooLargeError, match=r"decompression bomb.*at most 4000000 pixels"):
        decode_image(bomb, limits=LIMITS)


def test_a_header_above_our_limit_but_below_pillows_is_refused_with_its_size() -> None:
    with pytest.raises(ImageTooLargeError, match="2001x2000 = 4002000 pixels; the limit is 4000000"):
        decode_image(png_declaring(2001, 2000), limits=LIMITS)


def test_a_png_whose_pixel_data_is_missing_is_invalid() -> None:
    with pytest.raises(InvalidImageError, match=r"PNG image .* truncated or corrupt"):
        decode_image(png_declaring(64, 64), limits=LIMITS)


# Refused: real images in formats we do not decode


def test_heic_is_unsupported_and_says_so() -> None:
    with pytest.raises(UnsupportedImageError, match="HEIF/HEIC images are not supported") as raised:
        decode_image(heif_like(), limits=LIMITS)
    assert raised.value.code == "unsupported_image"


@pytest.mark.parametrize("image_format", ["ICO", "TGA", "PPM"])
def test_other_formats_pillow_knows_are_named_and_unsupported(image_format: str) -> None:
    data = encode(Image.new("RGB", (16, 16), RED), image_format)
    with pytest.raises(UnsupportedImageError, match=f"{image_format} images are not supported"):
        decode_image(data, limits=LIMITS)


def test_jpeg_xl_is_unsupported() -> None:
    with pytest.raises(UnsupportedImageError, match="JPEG XL"):
        decode_image(b"\x00\x00\x00\x0cJXL \r\n\x87\n" + bytes(64), limits=LIMITS)


# Accepted: every mode and format becomes the RGB picture a viewer would show


def test_a_1x1_image_is_upsampled_to_a_uniform_tensor() -> None:
    tensor = tensor_of(encode(Image.new("RGB", (1, 1), (9, 99, 199)), "PNG"))
    assert tensor.shape == (3, 32, 32)
    np.testing.assert_allclose(mean_colour(tensor), [9, 99, 199], atol=1e-3)
    assert all(np.unique(channel).size == 1 for channel in tensor)


def test_a_cmyk_jpeg_is_converted_to_rgb() -> None:
    decoded = decode_image(encode(Image.new("CMYK", (48, 48), (0, 255, 255, 0)), "JPEG"), limits=LIMITS)
    assert decoded.format == "JPEG"
    np.testing.assert_allclose(np.asarray(decoded.rgb).reshape(-1, 3).mean(axis=0), RED, atol=2)


def test_a_16_bit_png_is_rescaled_not_clipped() -> None:
    ramp = gray_ramp(64, 48)
    sixteen_bit = Image.fromarray(ramp.astype(np.uint16) * 257)  # 0..65535, the same picture
    assert sixteen_bit.mode == "I;16"
    decoded = decode_image(encode(sixteen_bit, "PNG"), limits=LIMITS)
    np.testing.assert_array_equal(np.asarray(decoded.rgb), np.stack([ramp] * 3, axis=-1))


@pytest.mark.parametrize(
    ("samples", "mode"),
    [(lambda ramp: ramp.astype(np.int32) * 257, "I"), (lambda ramp: ramp.astype(np.float32) / 255, "F")],
    ids=["32-bit-int", "float-0-to-1"],
)
def test_integer_and_float_tiffs_map_their_full_scale_to_white(samples: object, mode: str) -> None:
    ramp = gray_ramp(64, 48)
    image = Image.fromarray(samples(ramp))  # type: ignore[operator]
    assert image.mode == mode
    decoded = decode_image(encode(image, "TIFF"), limits=LIMITS)
    np.testing.assert_array_equal(np.asarray(decoded.rgb)[..., 0], ramp)


def test_transparent_palette_pixels_become_white() -> None:
    palette = Image.new("P", (48, 48), 0)
    palette.putpalette([*BLACK, *RED])
    palette.paste(1, (0, 0, 24, 48))  # left half red, right half palette entry 0, declared transparent
    decoded = decode_image(encode(palette, "PNG", transparency=0), limits=LIMITS)
    pixels = np.asarray(decoded.rgb)
    assert pixels[:, :24].reshape(-1, 3).tolist() == [list(RED)] * (48 * 24)
    assert pixels[:, 24:].reshape(-1, 3).tolist() == [list(WHITE)] * (48 * 24)


@pytest.mark.parametrize(("mode", "colour"), [("RGBA", (0, 0, 0, 128)), ("LA", (0, 128))])
def test_half_transparent_black_is_composited_on_white(mode: str, colour: tuple[int, ...]) -> None:
    tensor = tensor_of(encode(Image.new(mode, (8, 8), colour), "PNG"))
    np.testing.assert_allclose(mean_colour(tensor), [127, 127, 127], atol=1e-3)


def test_an_animated_gif_gives_its_first_frame() -> None:
    tensor = tensor_of(animated_gif([GREEN, RED, BLUE]))
    np.testing.assert_allclose(mean_colour(tensor), GREEN, atol=1e-3)


def test_exif_orientation_is_applied_before_resizing() -> None:
    """Orientation 6 means "rotate 90° clockwise to view": the stored left half ends up on top."""
    stored = two_halves(80, 40, left=RED, right=BLUE)  # 80 wide, 40 high as stored
    decoded = decode_image(jpeg_with_orientation(stored, 6), limits=LIMITS)
    assert (decoded.width, decoded.height) == (40, 80)
    tensor = to_tensor(decoded.rgb, MANIFEST)
    np.testing.assert_allclose(mean_colour(tensor[:, :8]), RED, atol=4)  # top rows
    np.testing.assert_allclose(mean_colour(tensor[:, -8:]), BLUE, atol=4)  # bottom rows


@pytest.mark.parametrize(
    ("image_format", "params"),
    [("WEBP", {"lossless": True}), ("AVIF", {"quality": 100}), ("BMP", {}), ("TIFF", {}), ("GIF", {})],
)
def test_accepted_formats_decode_to_the_same_picture(image_format: str, params: dict[str, object]) -> None:
    decoded = decode_image(encode(Image.new("RGB", (24, 24), RED), image_format, **params), limits=LIMITS)
    assert decoded.format == image_format
    np.testing.assert_allclose(np.asarray(decoded.rgb).reshape(-1, 3).mean(axis=0), RED, atol=2)
