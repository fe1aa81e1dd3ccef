"""JPEG draft decoding (``decode_image(min_side=...)``): smaller, never below what preprocessing needs.

Ingestion asks for it so that a batch of phone photos never holds ten full-resolution images; the
embedding it gives stays within cosine 0.999 of a full decode (measured by ``devtools.bench_decode``,
not asserted here: tests assert behaviour, not the model's numbers).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from simsearch.errors import ConfigError, ImageTooLargeError
from simsearch.ingestion.service import _draft_side
from simsearch.preprocess import DRAFT_FACTOR, ImageLimits, decode_image, draft_min_side, to_tensor
from tests.fakes import StubEmbedder
from tests.image_factories import encode, manifest_for

LIMITS = ImageLimits(max_bytes=50_000_000, max_pixels=40_000_000)


def gradient(width: int, height: int) -> Image.Image:
    """A smooth picture (cheap to encode at any size) with something to tell its orientation by."""
    x = np.linspace(0, 255, width, dtype=np.float32)[np.newaxis, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, np.newaxis]
    pixels = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


@pytest.mark.parametrize(
    ("size", "min_side"),
    [((4000, 3000), 512), ((3000, 4000), 512), ((2049, 1025), 512), ((1023, 4095), 256), ((5000, 600), 256)],
)
def test_a_drafted_jpeg_keeps_at_least_min_side_on_its_shorter_side(
    size: tuple[int, int], min_side: int
) -> None:
    data = encode(gradient(*size), "JPEG", quality=80)

    decoded = decode_image(data, limits=LIMITS, min_side=min_side)

    assert min(decoded.rgb.size) >= min_side
    assert decoded.rgb.size != size  # each of these is large enough to be reduced
    assert (decoded.width, decoded.height) == size  # the metadata keeps the full size


@pytest.mark.parametrize("size", [(1023, 700), (640, 480), (1, 1), (600, 2000)])
def test_an_image_under_twice_min_side_decodes_exactly_as_without_a_draft(size: tuple[int, int]) -> None:
    data = encode(gradient(*size), "JPEG", quality=80)

    drafted = decode_image(data, limits=LIMITS, min_side=512)
    full = decode_image(data, limits=LIMITS)

    assert drafted.rgb.size == full.rgb.size == size
    assert drafted.rgb.tobytes() == full.rgb.tobytes()


def test_formats_that_cannot_draft_decode_in_full() -> None:
    data = encode(gradient(2048, 1536), "PNG")

    decoded = decode_image(data, limits=LIMITS, min_side=256)

    assert decoded.rgb.size == (decoded.width, decoded.height) == (2048, 1536)


def test_an_exif_rotated_photo_is_upright_and_reports_its_upright_full_size() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, displayed portrait
    data = encode(gradient(4000, 3000), "JPEG", quality=80, exif=exif)

    decoded = decode_image(data, limits=LIMITS, min_side=512)

    assert (decoded.width, decoded.height) == (3000, 4000)
    assert decoded.rgb.width < decoded.rgb.height and min(decoded.rgb.size) >= 512


def test_the_pixel_limit_applies_to_the_full_image_not_the_draft() -> None:
    data = encode(gradient(4000, 3000), "JPEG", quality=50)

    with pytest.raises(ImageTooLargeError):
        decode_image(data, limits=ImageLimits(max_bytes=50_000_000, max_pixels=11_000_000), min_side=256)


def test_a_drafted_decode_gives_the_model_its_full_input() -> None:
    manifest = manifest_for(resize=256, input_size=224)
    data = encode(gradient(4000, 3000), "JPEG", quality=80)

    decoded = decode_image(data, limits=LIMITS, min_side=draft_min_side(manifest))

    assert to_tensor(decoded.rgb, manifest).shape == (3, 224, 224)
    assert min(decoded.rgb.size) >= DRAFT_FACTOR * manifest.resize


def test_the_draft_keeps_three_times_the_model_resize() -> None:
    manifest = manifest_for(resize=256, input_size=224)

    assert DRAFT_FACTOR == 3
    assert draft_min_side(manifest) == 768
    assert draft_min_side(manifest, factor=1) == 256
    with pytest.raises(ConfigError):
        draft_min_side(manifest, factor=0)


def test_ingestion_drafts_only_for_a_model_whose_preprocessing_it_knows() -> None:
    class WithManifest(StubEmbedder):
        manifest = manifest_for(resize=160, input_size=128)

    assert _draft_side(WithManifest()) == 480
    assert _draft_side(StubEmbedder()) is None
