"""The pixel check of near duplicates: its correlation against scikit-image's, and what it tells apart.

``match`` must be the normalised cross-correlation of ``skimage.feature.match_template`` (the reference
implementation the check was prototyped with), computed without SciPy so that the query bundle can run it.
The copies below are made by the near-duplicate benchmark's own edits (``evaluation.edits``); the threshold
they are judged against is the shipped one, chosen on that benchmark (docs/evaluation.md).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage.feature import match_template

from evaluation.edits import KINDS, draw_edit
from model.images import photograph
from simsearch.preprocess import ImageLimits, decode_image
from simsearch.same_picture import (
    THUMBNAIL_SIDE,
    _centre,
    _rescaled,
    correlation,
    match,
    thumbnail,
    thumbnail_of,
)
from simsearch.settings import Settings
from tests.image_factories import another_frame, encode, jpeg_with_orientation

LIMITS = ImageLimits.deployed()
SAME_PICTURE = Settings.picture_match_threshold


@pytest.fixture(scope="module")
def china() -> Image.Image:
    return decode_image(photograph("china.jpg"), limits=LIMITS).rgb


@pytest.mark.parametrize("seed", range(3))
def test_match_is_scikit_images_normalised_cross_correlation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    image = rng.random((64, 85)).astype(np.float32)
    template = image[10:50, 12:70] + rng.normal(0, 0.05, (40, 58)).astype(np.float32)

    ours = match(image, template)

    assert ours.shape == (25, 28)
    np.testing.assert_allclose(ours, match_template(image, template), atol=1e-5)


def test_match_on_a_photographs_thumbnail_is_scikit_images_too(china: Image.Image) -> None:
    image = thumbnail(china)
    template = thumbnail(china.resize((china.width * 9 // 10, china.height * 9 // 10)))[5:50, 8:70]
    np.testing.assert_allclose(match(image, template), match_template(image, template), atol=1e-5)


def test_a_uniform_image_or_template_matches_nothing_rather_than_dividing_by_zero() -> None:
    flat = np.full((64, 64), 0.5, dtype=np.float32)
    textured = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    assert not match(flat, textured[:40, :40]).any()
    assert not match(textured, flat[:40, :40]).any()
    assert correlation(flat, textured) <= 0.0


def test_a_thumbnail_is_grey_with_the_shorter_side_fixed_and_the_orientation_applied() -> None:
    wide = Image.new("RGB", (640, 480), "red")
    assert thumbnail(wide).shape == (THUMBNAIL_SIDE, round(640 * THUMBNAIL_SIDE / 480))
    assert thumbnail(wide).dtype == np.float32
    upright = np.asarray(Image.open(io.BytesIO(photograph("china.jpg"))).convert("RGB"))
    stored_sideways = Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=-1)))  # 90° clockwise
    turned_back = thumbnail_of(jpeg_with_orientation(stored_sideways, 8), limits=LIMITS)  # 8: 90° back
    assert turned_back.shape == thumbnail(Image.fromarray(upright)).shape
    assert correlation(turned_back, thumbnail(Image.fromarray(upright))) > 0.99
    assert correlation(thumbnail(stored_sideways), thumbnail(Image.fromarray(upright))) < 0.8


@pytest.mark.parametrize("kind", KINDS)
def test_every_edit_of_the_benchmark_keeps_the_picture(china: Image.Image, kind: str) -> None:
    original = thumbnail_of(photograph("china.jpg"), limits=LIMITS)
    for seed in range(3):
        edit = draw_edit(kind, seed=seed, key="china.jpg")  # type: ignore[arg-type]
        assert correlation(original, thumbnail_of(edit.apply(china), limits=LIMITS)) >= SAME_PICTURE, edit


def test_a_moved_part_of_the_scene_or_another_photograph_is_another_picture(china: Image.Image) -> None:
    original = thumbnail_of(photograph("china.jpg"), limits=LIMITS)
    frame = thumbnail_of(another_frame(china), limits=LIMITS)
    assert correlation(original, frame) < SAME_PICTURE
    assert correlation(original, thumbnail_of(photograph("flower.jpg"), limits=LIMITS)) < 0.8


def test_the_correlation_is_symmetric_and_one_for_the_same_pixels(china: Image.Image) -> None:
    original = thumbnail(china)
    copy = thumbnail_of(encode(china.crop((40, 20, 600, 420)), "PNG"), limits=LIMITS)
    assert correlation(original, original) == pytest.approx(1.0)
    assert correlation(original, copy) == pytest.approx(correlation(copy, original), abs=1e-9)


def document() -> Image.Image:
    """A page of text: blank margins wider than the template, the case where rounding once mattered."""
    page = Image.new("RGB", (1200, 900), "white")
    draw = ImageDraw.Draw(page)
    for line in range(30):
        draw.text(
            (40, 20 + line * 28), f"Line {line}: the quick brown fox jumps over the lazy dog", fill="black"
        )
    return page


def test_blank_windows_match_nothing_and_no_correlation_leaves_minus_1_to_1() -> None:
    """A float32 mean once left the centred template summing to 1e-5, and a blank window's near-zero
    variance turned that into a correlation of 144 (scikit-image, in float32, is no oracle there)."""
    page = thumbnail(document())
    copy = thumbnail_of(encode(document(), "JPEG", quality=70), limits=LIMITS)
    template = _centre(_rescaled(copy, (0.85, 0.85)))

    ours = match(page, template)

    assert ours.min() >= -1.0 and ours.max() <= 1.0
    height, width = template.shape
    blank = page[-height:, -width:]  # the bottom right corner of the page holds no text
    assert blank.std() == 0.0 and ours[-1, -1] == 0.0
    assert SAME_PICTURE <= correlation(page, copy) <= 1.0
