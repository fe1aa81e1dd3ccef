"""Bytes in, model tensor out: the one preprocessing used by ingestion, queries, local mode and evaluation.

Two steps, kept apart so a caller can keep the facts about the image (size, format) for metadata:

- ``decode_image`` turns untrusted bytes into an upright RGB ``PIL.Image`` or raises a typed error.
  Limits are checked before any pixel is decoded: the byte size first, then the size the header
  declares, so a decompression bomb costs a header parse, not gigabytes.
- ``to_tensor`` reproduces torchvision's ``Resize(resize)``, ``CenterCrop(input_size)``, ``ToTensor()``
  and ``Normalize(mean, std)`` on PIL images bit for bit (checked against torchvision's own output in
  ``tests/unit/test_preprocess.py``), with every number read from the model manifest.

What users get (each case is a test in ``tests/unit/test_bad_images.py``):

- accepted: the formats of ``simsearch.formats``, any size from 1x1 (upsampled like torchvision would)
  up to the limits; animations give their first frame; EXIF orientation is applied; transparency is
  composited on white; 16-bit and float images are rescaled, not clipped. Embedded ICC profiles are
  ignored, as in torchvision training pipelines, so pixels mean what the model learned them to mean.
- ``ImageTooLargeError``: too many bytes, or a header declaring too many pixels (decompression bombs:
  they are refused for their size, which is what they are, not reported as corrupt).
- ``UnsupportedImageError`` (a kind of ``InvalidImageError``): a real image we do not decode, named in
  the message (HEIC, SVG, JPEG XL, ICO, ...), so a user knows converting it will help.
- ``InvalidImageError``: empty, truncated or corrupt data, or bytes that are no image at all.

Pillow releases the GIL while it decodes and resizes, so callers may run these functions in threads.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import ExifTags, Image, ImageOps

from simsearch.errors import ConfigError, ImageTooLargeError, InvalidImageError, UnsupportedImageError
from simsearch.formats import PILLOW_FORMATS
from simsearch.manifest import ModelManifest
from simsearch.settings import Settings

Tensor = npt.NDArray[np.float32]
"""A CHW image tensor, or an NCHW batch of them, normalised for the model."""

_WHITE = (255, 255, 255)

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
"""What Pillow raises on corrupt or truncated data (``UnidentifiedImageError`` is an ``OSError``)."""

_HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
"""ISO-BMFF major brands of HEIF files; AVIF files also use ``mif1`` but Pillow opens those first."""

_JPEG_XL_SIGNATURES = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")
"""A bare JPEG XL codestream, and the ISO-BMFF container Pillow has no plugin for."""

_HIGH_DEPTH_FULL_SCALE: dict[str, float] = {
    "I;16": 65535.0,
    "I;16L": 65535.0,
    "I;16B": 65535.0,
    "I;16N": 65535.0,
    "I": 65535.0,  # 32-bit integer TIFFs nearly always hold 16-bit samples; wider values are clipped
    "F": 1.0,  # floating-point images conventionally hold 0..1
}
"""The sample value that maps to 255 for modes Pillow would otherwise clip at 255.

Pillow's own ``convert("L")`` clips a 16-bit value of 65535 to 255 and 300 to 255 alike, which turns
most 16-bit photos white; a linear rescale keeps the picture.
"""

DRAFT_FACTOR = 3
"""A draft decode keeps at least three times the model's resize on the shorter side (``draft_min_side``).

Measured with ``devtools.bench_decode`` (MobileNetV2): at three times, the least cosine between a
drafted and a full decode's embedding was 0.99930 (12 MP photos: 0.99994; the celebrity set is never
drafted); at twice, a 1365x1024 photo halved to 683x512 fell to 0.998, under the 0.999 we allow."""

_DRAFTABLE = frozenset({"JPEG", "MPO"})
"""Formats whose decoder can scale while decoding (an MPO is a JPEG with more pictures after it)."""

_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
"""EXIF orientations that turn the stored image by 90°: the displayed width is the stored height."""

_MAX_EXACT_ASPECT = 16
"""Beyond this aspect ratio only the cropped window is resized (see ``_resize_and_center_crop``)."""


@dataclass(frozen=True, kw_only=True)
class ImageLimits:
    """The largest input ``decode_image`` accepts (``Settings.max_image_bytes`` and ``max_image_pixels``)."""

    max_bytes: int
    max_pixels: int

    @classmethod
    def of(cls, settings: Settings) -> ImageLimits:
        """The limits ``settings`` configure."""
        return cls(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)

    @classmethod
    def deployed(cls) -> ImageLimits:
        """The deployed defaults, for tools that decode what the functions would accept without settings."""
        return cls(max_bytes=Settings.max_image_bytes, max_pixels=Settings.max_image_pixels)

    def __post_init__(self) -> None:
        pillow_limit = Image.MAX_IMAGE_PIXELS or 0
        if self.max_bytes < 1 or not 1 <= self.max_pixels <= pillow_limit:
            # Above Pillow's own limit, Pillow would warn or refuse before our check could run.
            raise ConfigError(
                f"image limits max_bytes={self.max_bytes}, max_pixels={self.max_pixels}: both must be ≥ 1 "
                f"and max_pixels ≤ {pillow_limit} (PIL.Image.MAX_IMAGE_PIXELS)"
            )


@dataclass(frozen=True, kw_only=True)
class DecodedImage:
    """An upright RGB image and the facts worth keeping as metadata.

    ``width``/``height`` are the displayed size, after EXIF orientation; ``format`` is Pillow's name
    of the encoding (``"JPEG"``, ``"PNG"``, ``"MPO"``, ...).
    """

    rgb: Image.Image
    width: int
    height: int
    format: str


def decode_image(data: bytes, *, limits: ImageLimits, min_side: int | None = None) -> DecodedImage:
    """Decode untrusted bytes into an upright RGB image; animations give their first frame.

    Any size works down to 1x1: the resize upsamples small images, as torchvision would.

    ``min_side`` lets a JPEG decode at a reduced size (libjpeg's DCT scaling by 1/2, 1/4 or 1/8,
    Pillow's ``draft``): the largest reduction whose shorter side is still at least ``min_side``,
    none when the image is smaller than twice that. A 12 MP photo then never exists at full
    resolution, which saves memory and time; its pixels differ slightly from a full decode (so
    ingestion asks for it only where embeddings stay within the measured tolerance, see
    ``draft_min_side``). ``width`` and ``height`` stay the full image's.

    Raises:
        ImageTooLargeError: more than ``limits.max_bytes`` bytes, or a header declaring more than
            ``limits.max_pixels`` pixels (decompression bombs included).
        UnsupportedImageError: a real image in a format we do not decode (HEIC, SVG, PSD, ...).
        InvalidImageError: empty, truncated or corrupt data, or bytes that are not an image at all.
    """
    _check_byte_size(data, limits)
    image = _open(data, limits)  # not closed: the returned image may be this very object, and it owns no file
    _check_pixel_count(image, limits)
    full_size = image.size  # before a draft makes it smaller
    drafted = min_side is not None and _draft(image, min_side)
    upright_size = _upright(image, full_size) if drafted else None  # before exif_transpose drops the tag
    rgb = _decode_upright_rgb(image, data)
    width, height = upright_size or rgb.size
    return DecodedImage(rgb=rgb, width=width, height=height, format=str(image.format))


def draft_min_side(manifest: ModelManifest, *, factor: int = DRAFT_FACTOR) -> int:
    """The shorter side a draft decode must keep for ``manifest``'s model: ``factor`` × its resize.

    ``to_tensor`` resizes the shorter side to ``manifest.resize``; decoding at no less than
    ``factor`` times that leaves the final antialiased resize most of the work, so the drafted and
    the full decode end up in nearly the same tensor (``DRAFT_FACTOR`` says how nearly).
    """
    if factor < 1:
        raise ConfigError(f"draft factor {factor}: a draft must keep at least the model's resize")
    return factor * manifest.resize


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB: transparency is composited on white, high bit depths rescaled."""
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_DEPTH_FULL_SCALE:
        return _rescale_to_8bit(image).convert("RGB")
    if _has_transparency(image):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*_WHITE, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def to_tensor(image: Image.Image, manifest: ModelManifest) -> Tensor:
    """The CHW float32 tensor torchvision's eval transform would give for this image.

    Resize the shorter side to ``manifest.resize`` (bilinear, antialiased), centre-crop
    ``manifest.input_size``, scale to [0, 1], then ``(x - mean) / std`` per channel, all in float32
    and in torchvision's order of operations so the result is bit-identical.
    """
    if manifest.resize < manifest.input_size:
        raise ConfigError(
            f"manifest {manifest.model_id}: resize={manifest.resize} "
            f"must be ≥ input_size={manifest.input_size}"
        )
    cropped = _resize_and_center_crop(to_rgb(image), resize=manifest.resize, crop=manifest.input_size)
    chw = np.ascontiguousarray(np.asarray(cropped, dtype=np.uint8).transpose(2, 0, 1))
    mean = np.asarray(manifest.mean, dtype=np.float32).reshape(3, 1, 1)
    std = np.asarray(manifest.std, dtype=np.float32).reshape(3, 1, 1)
    scaled: Tensor = chw.astype(np.float32) / np.float32(255)
    return (scaled - mean) / std


def to_batch(images: Sequence[Image.Image], manifest: ModelManifest) -> Tensor:
    """Stack ``to_tensor`` of each image into one NCHW batch (shape ``(0, 3, S, S)`` when empty)."""
    size = manifest.input_size
    if not images:
        return np.empty((0, 3, size, size), dtype=np.float32)
    return np.stack([to_tensor(image, manifest) for image in images])


def resized_size(width: int, height: int, *, resize: int) -> tuple[int, int]:
    """torchvision's ``Resize(int)`` size: the short side becomes ``resize``, the long one is truncated."""
    if width <= height:
        return resize, int(resize * height / width)
    return int(resize * width / height), resize


def _check_byte_size(data: bytes, limits: ImageLimits) -> None:
    if not data:
        raise InvalidImageError("the image is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageTooLargeError(f"the image is {len(data)} bytes; the limit is {limits.max_bytes} bytes")


def _open(data: bytes, limits: ImageLimits) -> Image.Image:
    """Parse the header only (Pillow decodes lazily), restricted to ``PILLOW_FORMATS``."""
    try:
        return Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
    except Image.DecompressionBombError as error:  # Pillow refuses twice its limit before we see the size
        raise ImageTooLargeError(
            f"the image is refused as a likely decompression bomb ({error}); "
            f"at most {limits.max_pixels} pixels are accepted"
        ) from error
    except _DECODE_ERRORS as error:
        raise _refusal(data) from error


def _check_pixel_count(image: Image.Image, limits: ImageLimits) -> None:
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}x{height} = {width * height} pixels; "
            f"the limit is {limits.max_pixels} pixels"
        )


def _draft(image: Image.Image, min_side: int) -> bool:
    """Ask the JPEG decoder for the smallest scale whose shorter side is still ≥ ``min_side``.

    Pillow's ``draft`` picks the largest of 1/2, 1/4, 1/8 that keeps *both* sides at least as large
    as requested, so asking for a square of ``min_side`` keeps the shorter side, whichever it is, at
    ``min_side`` or more. Returns whether the image will decode smaller than it is.
    """
    if image.format not in _DRAFTABLE or min_side < 1:
        return False
    full = image.size
    try:
        image.draft(None, (min_side, min_side))
    except _DECODE_ERRORS:  # let the full decode report what is wrong with the data
        return False
    return image.size != full


def _upright(image: Image.Image, size: tuple[int, int]) -> tuple[int, int]:
    """``size`` as displayed, after the image's EXIF orientation (read from the header)."""
    width, height = size
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation)
    except _DECODE_ERRORS:  # exif_transpose will ignore what it cannot read, and so do we
        orientation = None
    return (height, width) if orientation in _TRANSPOSING_ORIENTATIONS else (width, height)


def _decode_upright_rgb(image: Image.Image, data: bytes) -> Image.Image:
    try:
        image.load()  # the first frame of an animation: Pillow opens on frame 0
        ImageOps.exif_transpose(image, in_place=True)  # in place: a 12 MP photo is not copied for nothing
        return to_rgb(image)
    except _DECODE_ERRORS as error:
        raise InvalidImageError(
            f"the {image.format} image ({len(data)} bytes) is truncated or corrupt: {error}"
        ) from error


def _refusal(data: bytes) -> InvalidImageError:
    """The error for bytes no accepted decoder recognised: name the format when it is a known one."""
    accepted = ", ".join(PILLOW_FORMATS)
    other = _foreign_format(data)
    if other is not None:
        return UnsupportedImageError(f"{other} images are not supported; accepted formats: {accepted}")
    return InvalidImageError(
        f"the {len(data)} bytes are not a complete image in an accepted format ({accepted})"
    )


def _foreign_format(data: bytes) -> str | None:
    """The name of a real image format we do not decode, or None when the bytes are not one we know."""
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return "HEIF/HEIC"
    if data.startswith(_JPEG_XL_SIGNATURES):
        return "JPEG XL"
    head = data[:1024].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "SVG"
    try:
        with Image.open(io.BytesIO(data)) as probe:  # every Pillow plugin, header only, to name the format
            return str(probe.format)
    except (*_DECODE_ERRORS, Image.DecompressionBombError):
        return None


def _has_transparency(image: Image.Image) -> bool:
    return "A" in image.getbands() or "transparency" in image.info


def _rescale_to_8bit(image: Image.Image) -> Image.Image:
    full_scale = _HIGH_DEPTH_FULL_SCALE[image.mode]
    samples = np.asarray(image, dtype=np.float64) * (255.0 / full_scale)
    return Image.fromarray(np.clip(np.rint(samples), 0, 255).astype(np.uint8), mode="L")


def _resize_and_center_crop(image: Image.Image, *, resize: int, crop: int) -> Image.Image:
    """torchvision's ``Resize(resize)`` then ``CenterCrop(crop)`` on a PIL image.

    For aspect ratios beyond ``_MAX_EXACT_ASPECT`` (a 1x100000 strip would otherwise be resized to
    256x25600000), only the source window behind the crop is resized. Pillow then computes its filter
    positions from the window, which can move a pixel by one uint8 step, so ordinary images keep the
    torchvision-exact path.
    """
    width, height = image.size
    new_width, new_height = resized_size(width, height, resize=resize)
    left, top = round((new_width - crop) / 2.0), round((new_height - crop) / 2.0)
    if max(width, height) <= _MAX_EXACT_ASPECT * min(width, height):
        resized = image.resize((new_width, new_height), Image.Resampling.BILINEAR)
        return resized.crop((left, top, left + crop, top + crop))
    scale_x, scale_y = width / new_width, height / new_height
    window = (left * scale_x, top * scale_y, (left + crop) * scale_x, (top + crop) * scale_y)
    return image.resize((crop, crop), Image.Resampling.BILINEAR, box=window)
