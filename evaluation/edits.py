"""The edits that turn a photo into a near-duplicate of itself: what a copy goes through on its way back.

Each edit starts from the upright RGB picture ``simsearch.preprocess.decode_image`` gives and returns
encoded bytes, as an upload of the copy would arrive. Its parameters are drawn once, from a generator
seeded by the benchmark's seed, the image's key and the edit's kind, so the same image always gets the
same copy, whatever else the benchmark holds. ``Edit.recipe`` names every drawn parameter: it is the
copy's identity in the embedding cache and in the report.

Kinds: ``resize`` to 0.3–0.8× (then JPEG 85–95), ``jpeg`` re-compression at quality
30–95, ``crop`` cutting 5–15 % of the width and, independently, of the height (split at random between
the two sides, then JPEG 85–95), ``exif_rotation`` (pixels stored rotated with the EXIF Orientation that
turns them upright again: 3, 6 or 8), ``png`` (lossless: the same pixels in another format), ``webp``
(lossy, quality 40–90), ``colour`` (brightness and contrast 0.85–1.15, saturation 0.8–1.2, then JPEG 85–95).
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from PIL import Image, ImageEnhance

EditKind = Literal["resize", "jpeg", "crop", "exif_rotation", "png", "webp", "colour"]
KINDS: tuple[EditKind, ...] = get_args(EditKind)

EDITS_VERSION = 1
"""Bump when an edit's meaning changes for the same parameters: the embedding cache keys copies by it."""

Params = Mapping[str, float]

_ORIENTATION_TAG = 0x0112  # EXIF tag 274
_STORED_FOR_ORIENTATION = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,  # a viewer applies ROTATE_270 for 6 (ImageOps.exif_transpose)
    8: Image.Transpose.ROTATE_270,  # ... and ROTATE_90 for 8
}
"""How to store an upright picture so that ``ImageOps.exif_transpose`` with the tag turns it upright again."""

_RESAMPLING = (Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS)


@dataclass(frozen=True, kw_only=True)
class Edit:
    """One drawn edit: its kind and parameters (a tuple of pairs, so edits are values)."""

    kind: EditKind
    params: tuple[tuple[str, float], ...]

    @property
    def recipe(self) -> str:
        """``crop(bottom=0.04,left=0.02,quality=91,...)``: every parameter, so a recipe names one copy."""
        return f"{self.kind}(" + ",".join(f"{name}={value:g}" for name, value in self.params) + ")"

    def apply(self, picture: Image.Image) -> bytes:
        """The copy's encoded bytes, from an upright RGB picture."""
        return _APPLY[self.kind](picture, dict(self.params))


def draw_edit(kind: EditKind, *, seed: int, key: str) -> Edit:
    """``kind``'s parameters for the image ``key``, the same on every run with this ``seed``."""
    rng = random.Random(f"{seed}:{key}:{kind}")
    return Edit(kind=kind, params=tuple(sorted(_DRAW[kind](rng).items())))


def kinds_for(key: str, *, seed: int, count: int, kinds: tuple[EditKind, ...] = KINDS) -> list[EditKind]:
    """Which ``count`` distinct kinds the image ``key`` gets (all of them when ``count`` ≥ their number)."""
    if count >= len(kinds):
        return list(kinds)
    return sorted(random.Random(f"{seed}:{key}:kinds").sample(kinds, count), key=kinds.index)


def _draw_resize(rng: random.Random) -> dict[str, float]:
    return {
        "scale": round(rng.uniform(0.3, 0.8), 3),
        "filter": rng.randrange(len(_RESAMPLING)),
        "quality": rng.randint(85, 95),
    }


def _draw_jpeg(rng: random.Random) -> dict[str, float]:
    return {"quality": rng.randint(30, 95)}


def _draw_crop(rng: random.Random) -> dict[str, float]:
    width_cut, height_cut = rng.uniform(0.05, 0.15), rng.uniform(0.05, 0.15)
    left, top = rng.uniform(0, width_cut), rng.uniform(0, height_cut)
    return {
        "left": round(left, 3),
        "right": round(width_cut - left, 3),
        "top": round(top, 3),
        "bottom": round(height_cut - top, 3),
        "quality": rng.randint(85, 95),
    }


def _draw_exif_rotation(rng: random.Random) -> dict[str, float]:
    return {"orientation": rng.choice(sorted(_STORED_FOR_ORIENTATION)), "quality": rng.randint(90, 95)}


def _draw_png(_: random.Random) -> dict[str, float]:
    return {}


def _draw_webp(rng: random.Random) -> dict[str, float]:
    return {"quality": rng.randint(40, 90)}


def _draw_colour(rng: random.Random) -> dict[str, float]:
    return {
        "brightness": round(rng.uniform(0.85, 1.15), 3),
        "contrast": round(rng.uniform(0.85, 1.15), 3),
        "saturation": round(rng.uniform(0.8, 1.2), 3),
        "quality": rng.randint(85, 95),
    }


def _resize(picture: Image.Image, params: dict[str, float]) -> bytes:
    scale = params["scale"]
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    resized = picture.resize(size, _RESAMPLING[int(params["filter"])])
    return _encode(resized, "JPEG", quality=int(params["quality"]))


def _jpeg(picture: Image.Image, params: dict[str, float]) -> bytes:
    return _encode(picture, "JPEG", quality=int(params["quality"]))


def _crop(picture: Image.Image, params: dict[str, float]) -> bytes:
    width, height = picture.size
    box = (
        round(width * params["left"]),
        round(height * params["top"]),
        width - round(width * params["right"]),
        height - round(height * params["bottom"]),
    )
    return _encode(picture.crop(box), "JPEG", quality=int(params["quality"]))


def _exif_rotation(picture: Image.Image, params: dict[str, float]) -> bytes:
    orientation = int(params["orientation"])
    exif = Image.Exif()
    exif[_ORIENTATION_TAG] = orientation
    stored = picture.transpose(_STORED_FOR_ORIENTATION[orientation])
    return _encode(stored, "JPEG", quality=int(params["quality"]), exif=exif)


def _png(picture: Image.Image, _: dict[str, float]) -> bytes:
    return _encode(picture, "PNG")


def _webp(picture: Image.Image, params: dict[str, float]) -> bytes:
    return _encode(picture, "WEBP", quality=int(params["quality"]))


def _colour(picture: Image.Image, params: dict[str, float]) -> bytes:
    changed = ImageEnhance.Brightness(picture).enhance(params["brightness"])
    changed = ImageEnhance.Contrast(changed).enhance(params["contrast"])
    changed = ImageEnhance.Color(changed).enhance(params["saturation"])
    return _encode(changed, "JPEG", quality=int(params["quality"]))


def _encode(picture: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, image_format, **options)
    return buffer.getvalue()


_DRAW: dict[EditKind, Callable[[random.Random], dict[str, float]]] = {
    "resize": _draw_resize,
    "jpeg": _draw_jpeg,
    "crop": _draw_crop,
    "exif_rotation": _draw_exif_rotation,
    "png": _draw_png,
    "webp": _draw_webp,
    "colour": _draw_colour,
}
_APPLY: dict[EditKind, Callable[[Image.Image, dict[str, float]], bytes]] = {
    "resize": _resize,
    "jpeg": _jpeg,
    "crop": _crop,
    "exif_rotation": _exif_rotation,
    "png": _png,
    "webp": _webp,
    "colour": _colour,
}
