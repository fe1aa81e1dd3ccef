"""Exact and near duplicates: the same bytes, and the same picture in other bytes, kept apart from "similar".

- **Exact**: documents with the same content id (``content_sha256``, ``simsearch.ids.content_id``): a
  copy, a rename, a re-upload. Found by the content id alone, never by a similarity.
- **Near**: other content whose cosine similarity to the image is at least a threshold
  (``Settings.near_duplicate_threshold``): the same picture resized, re-compressed, slightly cropped,
  rotated by EXIF or in another format. Found through the k-NN index. An exact duplicate is never also
  listed as near, whatever its similarity (1, by construction: the same bytes give the same vector).

A search is "similar", with no threshold; its results only say which of them are exact duplicates of
an earlier one (``duplicate_of``), or fold them into it (``collapse``).

Over a whole index (``imgsearch duplicates``), images are grouped in three steps a caller can follow
with a progress bar each: ``contents`` (one scan: the images of each content id), ``near_groups`` (one
k-NN search per content, joined transitively with union-find: if A is near B and B near C, all three
are one picture) and ``clusters`` (the groups of more than one image, with the bytes they take twice).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simsearch.index.port import IndexedImage, check_search_arguments

if TYPE_CHECKING:
    from simsearch.index.port import Hit, VectorIndex

MAX_DUPLICATES = 100
"""The most exact, and the most near, duplicates one answer lists for an image."""

NEAR_NEIGHBOURS = 100
"""Neighbours asked per content when an index is clustered; a larger group still joins transitively."""


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


# clusters over a whole index -----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Content:
    """The images stored with one content id: exact copies of each other, in order of key.

    An image indexed before content ids were recorded is a content of its own (``content_id`` None).
    """

    content_id: str | None
    images: tuple[IndexedImage, ...]

    @property
    def key(self) -> str:
        """What identifies this content among the others of an index."""
        return _content_key(self.images[0])

    @property
    def size(self) -> int:
        """The bytes of one copy (0 when the index does not know them)."""
        return self.images[0].metadata.bytes or 0

    @property
    def wasted(self) -> int:
        """The bytes every copy but one takes."""
        return (len(self.images) - 1) * self.size


@dataclass(frozen=True, kw_only=True)
class Cluster:
    """Images of one picture: one content stored more than once, or near-duplicate contents.

    ``contents`` come largest first: keeping that one file and deleting the rest reclaims
    ``reclaimable`` bytes, ``exact_reclaimable`` of them by deleting copies of the same bytes alone.
    """

    contents: tuple[Content, ...]

    @property
    def images(self) -> int:
        return sum(len(content.images) for content in self.contents)

    @property
    def exact_reclaimable(self) -> int:
        return sum(content.wasted for content in self.contents)

    @property
    def reclaimable(self) -> int:
        return self.exact_reclaimable + sum(content.size for content in self.contents[1:])


def contents(images: Iterable[IndexedImage]) -> list[Content]:
    """The images grouped by content id, in order of their first image (``VectorIndex.scan`` order)."""
    grouped: dict[str, list[IndexedImage]] = {}
    for image in images:
        grouped.setdefault(_content_key(image), []).append(image)
    return [
        Content(
            content_id=group[0].metadata.content_sha256,
            images=tuple(sorted(group, key=lambda image: image.metadata.key)),
        )
        for group in grouped.values()
    ]


def near_groups(
    index: VectorIndex,
    found: Sequence[Content],
    *,
    threshold: float,
    neighbours: int = NEAR_NEIGHBOURS,
    on_compared: Callable[[Content], None] = lambda _: None,
) -> list[list[Content]]:
    """The contents joined into groups of near duplicates (one k-NN search per content; every
    content is in exactly one group, most of them alone), in the order of ``found``."""
    check_search_arguments(k=neighbours, min_similarity=threshold)
    by_image = {image.image_id: content.key for content in found for image in content.images}
    joined = _UnionFind(content.key for content in found)
    for content in found:
        vector = index.get(content.images[0].image_id).vector
        for hit in index.search(vector, k=neighbours, min_similarity=threshold):
            if hit.image_id in by_image:  # a document written since the scan is not in the report
                joined.union(content.key, by_image[hit.image_id])
        on_compared(content)
    groups: dict[str, list[Content]] = {}
    for content in found:
        groups.setdefault(joined.find(content.key), []).append(content)
    return list(groups.values())


def clusters(groups: Iterable[Sequence[Content]]) -> list[Cluster]:
    """The groups of more than one image, most images first (then most bytes to reclaim)."""
    made = (
        Cluster(
            contents=tuple(sorted(group, key=lambda content: (-content.size, content.images[0].metadata.key)))
        )
        for group in groups
    )
    return sorted(
        (cluster for cluster in made if cluster.images > 1),
        key=lambda cluster: (
            -cluster.images,
            -cluster.reclaimable,
            cluster.contents[0].images[0].metadata.key,
        ),
    )


def _content_key(image: IndexedImage) -> str:
    """An image's content id; one made of its own id when it was indexed before content ids were kept."""
    return image.metadata.content_sha256 or f"image:{image.image_id}"


class _UnionFind:
    """Disjoint sets of keys, with path halving (the sets stay shallow on any input order)."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._parent = {key: key for key in keys}

    def find(self, key: str) -> str:
        while self._parent[key] != key:
            self._parent[key] = self._parent[self._parent[key]]
            key = self._parent[key]
        return key

    def union(self, one: str, other: str) -> None:
        self._parent[self.find(one)] = self.find(other)
