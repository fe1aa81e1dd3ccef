"""From an existing object to its document: read the version HEAD saw, decode, embed, describe.

The objects of one batch are read and decoded in parallel (S3 and Pillow release the GIL) and embedded
in one ``Embedder.embed`` call; only when the model fails that call are the images embedded one by
one, to find the one it cannot embed, so a bad image fails alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from PIL import Image

from simsearch.errors import InvalidVectorError, SimsearchError
from simsearch.ids import content_id
from simsearch.index.port import Document, ImageMetadata, Vector
from simsearch.labels import label_for
from simsearch.preprocess import DecodedImage, ImageLimits, decode_image

if TYPE_CHECKING:
    from simsearch.embedder import Embedder
    from simsearch.ingestion.decision import Present
    from simsearch.storage import ImageStore, StoredObject


@dataclass(frozen=True, slots=True)
class Loaded:
    """An object read and decoded: its image, and the SHA-256 of the bytes it came from."""

    found: Present
    image: DecodedImage
    sha256: str


def load(
    images: ImageStore,
    found: Present,
    *,
    limits: ImageLimits,
    min_side: int | None,
    gate: AbstractContextManager[object],
    data: bytes | None = None,
) -> Loaded | SimsearchError:
    """Read exactly the version HEAD saw (unless the look brought its bytes, ``data``), and decode it
    inside ``gate`` (which bounds concurrent decodes), drafted to ``min_side`` if given (see
    ``decode_image``); the error instead when either fails."""
    try:
        if data is None:
            data = images.read(found.obj)
        with gate:
            image = decode_image(data, limits=limits, min_side=min_side)
    except SimsearchError as error:
        return error
    return Loaded(found=found, image=image, sha256=content_id(data))


def embed_each(embedder: Embedder, images: Sequence[Image.Image]) -> list[Vector | SimsearchError]:
    """All images in one inference call; if the model fails one of them, find which, one by one."""
    if not images:
        return []
    try:
        return list(embedder.embed(images))
    except InvalidVectorError:
        return [_embed_one(embedder, image) for image in images]


def document_for(item: Loaded, vector: Vector, *, model_id: str) -> Document:
    """The document to index: the vector and what we know of the object it describes."""
    target, obj = item.found.target, item.found.obj
    metadata = ImageMetadata(
        bucket=obj.bucket,
        key=obj.key,
        label=label_for(obj.key, obj.metadata),
        etag=obj.etag,
        content_sha256=item.sha256,
        content_type=_content_type(item.image, obj),
        model_id=model_id,
        width=item.image.width,
        height=item.image.height,
        bytes=obj.size,
        indexed_at=datetime.now(UTC),
        sequencer=target.sequencer_for(obj.etag),
    )
    return Document(image_id=target.image_id, vector=vector, metadata=metadata)


def _embed_one(embedder: Embedder, image: Image.Image) -> Vector | SimsearchError:
    try:
        vector: Vector = embedder.embed([image])[0]
    except InvalidVectorError as error:
        return error
    return vector


def _content_type(image: DecodedImage, obj: StoredObject) -> str | None:
    """The MIME type of the format we decoded; the object's header only if Pillow knows none for it."""
    return Image.MIME.get(image.format) or obj.content_type
