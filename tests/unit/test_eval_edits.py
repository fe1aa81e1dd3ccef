"""The near-duplicate edits: drawn deterministically, within their ranges, decoded as the ingestion does."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from evaluation.edits import KINDS, Edit, EditKind, draw_edit, kinds_for
from simsearch.preprocess import ImageLimits, decode_image
from tests.image_factories import two_halves

LIMITS = ImageLimits.deployed()
PICTURE = two_halves(120, 80, left=(200, 40, 40), right=(40, 40, 200))


def decoded(data: bytes) -> Image.Image:
    return decode_image(data, limits=LIMITS).rgb


def params(edit: Edit) -> dict[str, float]:
    return dict(edit.params)


@pytest.mark.parametrize("kind", KINDS)
def test_the_same_seed_and_key_give_the_same_copy_byte_for_byte(kind: EditKind) -> None:
    first, second = draw_edit(kind, seed=3, key="a/1.jpg"), draw_edit(kind, seed=3, key="a/1.jpg")
    assert first == second
    assert first.apply(PICTURE) == second.apply(PICTURE)


def test_another_seed_or_key_draws_other_parameters() -> None:
    drawn = {
        draw_edit("crop", seed=seed, key=key).recipe for seed in (0, 1) for key in ("a/1.jpg", "a/2.jpg")
    }
    assert len(drawn) == 4


def test_a_recipe_names_the_kind_and_every_parameter() -> None:
    edit = Edit(kind="jpeg", params=(("quality", 42),))
    assert edit.recipe == "jpeg(quality=42)"


@pytest.mark.parametrize("seed", range(40))
def test_parameters_stay_in_their_ranges(seed: int) -> None:
    key = f"p/{seed}.jpg"
    resize = params(draw_edit("resize", seed=seed, key=key))
    crop = params(draw_edit("crop", seed=seed, key=key))
    assert 0.3 <= resize["scale"] <= 0.8
    assert 30 <= params(draw_edit("jpeg", seed=seed, key=key))["quality"] <= 95
    assert 0.05 - 1e-3 <= crop["left"] + crop["right"] <= 0.15 + 1e-3  # each side rounded to 0.001
    assert 0.05 - 1e-3 <= crop["top"] + crop["bottom"] <= 0.15 + 1e-3
    assert params(draw_edit("exif_rotation", seed=seed, key=key))["orientation"] in (3, 6, 8)
    assert 0.85 <= params(draw_edit("colour", seed=seed, key=key))["brightness"] <= 1.15


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_an_exif_rotated_copy_decodes_upright_as_the_ingestion_decodes_it(orientation: int) -> None:
    copy = Edit(kind="exif_rotation", params=(("orientation", orientation), ("quality", 95))).apply(PICTURE)
    with Image.open(io.BytesIO(copy)) as stored:
        assert stored.getexif()[0x0112] == orientation
        assert stored.size == (PICTURE.size if orientation == 3 else PICTURE.size[::-1])
    upright = np.asarray(decoded(copy), dtype=np.int16)
    assert upright.shape == (80, 120, 3)
    assert np.abs(upright - np.asarray(PICTURE, dtype=np.int16)).mean() < 3  # red still left, blue right


def test_a_png_copy_holds_the_same_pixels() -> None:
    copy = draw_edit("png", seed=0, key="k").apply(PICTURE)
    assert copy.startswith(b"\x89PNG")
    assert np.array_equal(np.asarray(decoded(copy)), np.asarray(PICTURE))


@pytest.mark.parametrize(
    ("edit", "size", "image_format"),
    [
        (Edit(kind="resize", params=(("filter", 2), ("quality", 90), ("scale", 0.5))), (60, 40), "JPEG"),
        (
            Edit(
                kind="crop",
                params=(("bottom", 0.05), ("left", 0.1), ("quality", 90), ("right", 0.0), ("top", 0.05)),
            ),
            (108, 72),
            "JPEG",
        ),
        (Edit(kind="webp", params=(("quality", 60),)), (120, 80), "WEBP"),
        (Edit(kind="jpeg", params=(("quality", 30),)), (120, 80), "JPEG"),
    ],
)
def test_each_edit_gives_the_size_and_format_it_says(
    edit: Edit, size: tuple[int, int], image_format: str
) -> None:
    data = edit.apply(PICTURE)
    assert decode_image(data, limits=LIMITS).format == image_format
    assert decoded(data).size == size


def test_a_colour_change_is_light() -> None:
    edit = Edit(
        kind="colour", params=(("brightness", 1.15), ("contrast", 0.85), ("quality", 95), ("saturation", 1.2))
    )
    changed = np.asarray(decoded(edit.apply(PICTURE)), dtype=np.int16)
    difference = np.abs(changed - np.asarray(PICTURE, dtype=np.int16)).mean()
    assert 1 < difference < 40


def test_each_image_gets_distinct_kinds_and_every_kind_is_used() -> None:
    drawn = [kinds_for(f"a/{n}.jpg", seed=0, count=2) for n in range(70)]
    assert all(len(set(kinds)) == 2 for kinds in drawn)
    assert {kind for kinds in drawn for kind in kinds} == set(KINDS)
    assert drawn == [kinds_for(f"a/{n}.jpg", seed=0, count=2) for n in range(70)]
    assert kinds_for("a/0.jpg", seed=0, count=99) == list(KINDS)
