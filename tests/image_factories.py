"""Images built in memory for the preprocessing and embedder tests: no binary files in the repository.

Each builder returns encoded bytes as an upload would deliver them; the two real photographs come from
scikit-learn's package data (china.jpg, flower.jpg), which torchvision's golden outputs were made from.
``manifest_for`` describes the preprocessing those tests ask for, without a model on disk.
"""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from simsearch.manifest import ModelManifest
from simsearch.preprocess import ImageLimits, decode_image

Colour = tuple[int, int, int]

RED, GREEN, BLUE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (0, 0, 0)

SVG = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
    b'<rect width="64" height="64" fill="red"/></svg>\n'
)


def encode(image: Image.Image, image_format: str, **params: Any) -> bytes:
    """``image`` saved as ``image_format`` with Pillow's ``save`` parameters."""
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def block_jpeg(seed: int, *, blocks: tuple[int, int], size: tuple[int, int]) -> bytes:
    """A JPEG of seeded random colours in ``blocks`` (rows, columns) stretched to ``size``; seeds differ."""
    colours = np.random.default_rng(seed).integers(0, 256, size=(*blocks, 3), dtype=np.uint8)
    return encode(Image.fromarray(colours).resize(size, Image.Resampling.NEAREST), "JPEG", quality=90)


def photo(seed: int, *, size: tuple[int, int] = (96, 72)) -> bytes:
    """A JPEG of coloured blocks, different for every seed (so every vector differs): an upload."""
    return block_jpeg(seed, blocks=(6, 8), size=size)


def reframed(data: bytes, *, keep: float, scale: float, quality: int) -> bytes:
    """What a re-upload often is: the centre ``keep`` of the photo, rescaled by ``scale``, re-compressed."""
    image = decode_image(data, limits=ImageLimits.deployed()).rgb
    dx, dy = int(image.width * (1 - keep) / 2), int(image.height * (1 - keep) / 2)
    cropped = image.crop((dx, dy, image.width - dx, image.height - dy))
    size = (int(cropped.width * scale), int(cropped.height * scale))
    return encode(cropped.resize(size, Image.Resampling.LANCZOS), "JPEG", quality=quality)


def another_frame(picture: Image.Image, *, share: float = 1 / 3, by: float = 0.1) -> bytes:
    """A stand-in for another frame of the same shoot: a ``share`` × ``share`` block from a third of the
    way in, moved right by ``by`` of the width, the rest of ``picture`` unchanged (JPEG, quality 90).

    With the defaults and china.jpg, MobileNetV2 scores it 0.978 against the original (above the cosine
    threshold of near duplicates), while the pixel check's correlation is 0.925 (below its threshold).
    """
    pixels = np.asarray(picture).copy()
    height, width = pixels.shape[:2]
    top, left = height // 3, width // 3
    rows, columns, shift = int(height * share), int(width * share), int(width * by)
    block = np.asarray(picture)[top : top + rows, left : left + columns]
    pixels[top : top + rows, left + shift : left + shift + columns] = block
    return encode(Image.fromarray(pixels), "JPEG", quality=90)


def two_halves(width: int, height: int, *, left: Colour, right: Colour) -> Image.Image:
    """An RGB image whose left half is ``left`` and right half is ``right``: shows every rotation."""
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = left
    pixels[:, width // 2 :] = right
    return Image.fromarray(pixels)


def gray_ramp(width: int, height: int) -> npt.NDArray[np.uint8]:
    """A horizontal 8-bit ramp 0..255, the reference picture for the high-bit-depth encodings."""
    row = np.linspace(0, 255, width).round().astype(np.uint8)
    return np.tile(row, (height, 1))


def jpeg_with_orientation(image: Image.Image, orientation: int) -> bytes:
    """A JPEG storing ``image`` as is, with an EXIF Orientation tag asking viewers to transpose it."""
    exif = Image.Exif()
    exif[0x0112] = orientation  # EXIF tag 274, Orientation
    return encode(image, "JPEG", quality=95, exif=exif)


def png_declaring(width: int, height: int) -> bytes:
    """A small, valid-looking PNG whose header declares ``width`` x ``height`` RGB pixels.

    The pixel data is one empty compressed row: the file is a few dozen bytes, like a decompression bomb's
    header, and nothing the size of the declared image is ever allocated by this builder.
    """

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    pixels = zlib.compress(b"\x00")  # far too little data for the declared size
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def animated_gif(colors: list[Colour], *, size: tuple[int, int] = (16, 16)) -> bytes:
    """A looping GIF with one solid frame per colour, in order."""
    frames = [Image.new("RGB", size, color) for color in colors]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def heif_like() -> bytes:
    """The start of an iPhone HEIC file: an ISO-BMFF ``ftyp`` box with brand ``heic``, then a ``meta`` box."""
    ftyp = struct.pack(">I", 24) + b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic"
    return ftyp + struct.pack(">I", 40) + b"meta" + bytes(32)


def manifest_for(*, resize: int, input_size: int, embedding_dim: int = 8, **overrides: Any) -> ModelManifest:
    """A manifest for a model that does not exist on disk: what preprocessing and the tiny test models read.

    Mean and std default to ImageNet's, like every torchvision classifier; ``overrides`` sets any other field.
    """
    fields: dict[str, Any] = {
        "model_id": f"test-r{resize}-c{input_size}",
        "arch": "test",
        "weights": "none",
        "converter_version": "0",
        "embedding_dim": embedding_dim,
        "input_size": input_size,
        "resize": resize,
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "opset": 17,
        "onnx_sha256": "",
        "weights_file": "",
        "weights_sha256": "",
    }
    return ModelManifest(**(fields | overrides))
