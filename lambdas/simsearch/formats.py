"""The image formats the service accepts, with their file suffixes and media types: one table for all.

``preprocess`` decodes exactly these Pillow formats; the query API takes these media types as raw
image bodies (``handlers/openapi.json`` lists them, and ``tests/unit/test_formats.py`` holds it, the
web page and the command line to this table); local mode and the evaluation pick files by these
suffixes. Standard library only, like ``settings``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath
from typing import Final


@dataclass(frozen=True, slots=True)
class ImageFormat:
    """One accepted format: Pillow's name for it, its media type, the file suffixes it is saved with."""

    pillow: str
    media_type: str
    suffixes: tuple[str, ...]


FORMATS: Final = (
    ImageFormat(
        "JPEG", "image/jpeg", (".jpg", ".jpeg")
    ),  # Pillow's JPEG includes MPO, which some cameras write
    ImageFormat("PNG", "image/png", (".png",)),
    ImageFormat("GIF", "image/gif", (".gif",)),
    ImageFormat("WEBP", "image/webp", (".webp",)),
    ImageFormat("AVIF", "image/avif", (".avif",)),
    ImageFormat("BMP", "image/bmp", (".bmp",)),
    ImageFormat("TIFF", "image/tiff", (".tif", ".tiff")),
)
"""A short list on purpose: every other Pillow plugin (EPS runs Ghostscript, PSD, ICO, ...) is parser
surface that users do not need."""

PILLOW_FORMATS: Final = tuple(image_format.pillow for image_format in FORMATS)
MEDIA_TYPES: Final = tuple(image_format.media_type for image_format in FORMATS)
IMAGE_SUFFIXES: Final = frozenset(suffix for image_format in FORMATS for suffix in image_format.suffixes)


def media_type_for(name: str) -> str | None:
    """The media type of an accepted format that a file ``name`` says by its suffix (any case), or None."""
    suffix = PurePath(name).suffix.lower()
    return next((f.media_type for f in FORMATS if suffix in f.suffixes), None)


def is_image_name(name: str) -> bool:
    """Whether the file ``name`` has the suffix of an accepted format (any case)."""
    return PurePath(name).suffix.lower() in IMAGE_SUFFIXES
