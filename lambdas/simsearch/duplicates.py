"""Exact and near duplicates: the same bytes, and the same picture in other bytes, kept apart from "similar".

- **Exact**: documents with the same content id (``content_sha256``, ``simsearch.ids.content_id``): a
  copy, a rename, a re-upload. Found by the content id alone, never by a similarity.
- **Near**: other content whose cosine similarity to the image is at least a threshold
  (``Settings.near_duplicate_threshold``): the same picture resized, re-compressed, slightly cropped,
  rotated by EXIF or in another format. Found through the k-NN index. An exact duplicate is never also
  listed as near, whatever its similarity (1, by construction: the same bytes give the same vector).

A search is "similar", with no threshold; its results only say which of them are exact duplicates of
an earlier one (``duplicate_of``), or fold them into it (``collapse``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simsearch.index.port import IndexedImage, check_search_arguments

if TYPE_CHECKING:
    from simsearch.index.port import Hit, VectorIndex

MAX_DUPLICATES = 100
"""The most exact, and the most near, duplicates one answer lists for an image."""


@dataclass(frozen=True, kw_only=True)
class Duplicates:
    """An indexed image, its exact duplicates (by image id) and its near ones (most similar first)."""

    image: IndexedImage
    exact: tuple[IndexedImage, ...]
    near: tuple[Hit, ...]
    threshold: float


def find_duplicates(
    index: VectorIndex, image_id: str, *, threshold: float, limit: int = MAX_DUPLICATES
) -> Duplicates:
    """The exact and near duplicates of ``image_id`` in ``index`` (``NotFoundError`` for an unknown id).

    Three requests: the document, the documents of its content id, and one k-NN search that leaves
    the image and its exact duplicates out and keeps what is at least ``threshold`` similar.
    """
    check_search_arguments(k=limit, min_similarity=threshold)
    document = index.get(image_id)
    content = document.metadata.content_sha256
    exact = [] if content is None else index.with_content(content, limit=limit + 1)
    exact = [image for image in exact if image.image_id != image_id][:limit]
    hits = index.search(
        document.vector,
        k=limit,
        min_similarity=threshold,
        exclude_ids=[image_id, *(image.image_id for image in exact)],
    )
    return Duplicates(
        image=IndexedImage(image_id=image_id, metadata=document.metadata),
        exact=tuple(exact),
        near=tuple(hit for hit in hits if not _same_content(hit.metadata.content_sha256, content)),
        threshold=threshold,
    )


def duplicate_of(hits: Sequence[Hit]) -> list[str | None]:
    """For each hit, the id of the first earlier hit with the same content id; None for the first of
    its content, and for a document indexed before content ids were recorded."""
    first: dict[str, str] = {}
    marks: list[str | None] = []
    for hit in hits:
        content = hit.metadata.content_sha256
        earlier = hit.image_id if content is None else first.setdefault(content, hit.image_id)
        marks.append(None if earlier == hit.image_id else earlier)
    return marks


def collapse(hits: Sequence[Hit]) -> list[tuple[Hit, tuple[str, ...]]]:
    """The first hit of each content, in order, with the ids of the later hits of that content."""
    kept: dict[str, tuple[Hit, list[str]]] = {}
    for hit, of in zip(hits, duplicate_of(hits), strict=True):
        if of is None:
            kept[hit.image_id] = (hit, [])
        else:
            kept[of][1].append(hit.image_id)
    return [(hit, tuple(folded)) for hit, folded in kept.values()]


def _same_content(one: str | None, other: str | None) -> bool:
    return one is not None and one == other
