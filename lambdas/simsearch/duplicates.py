"""Exact and near duplicates: the same bytes, and the same picture in other bytes, kept apart from "similar".

- **Exact**: documents with the same content id (``content_sha256``, ``simsearch.ids.content_id``): a
  copy, a rename, a re-upload. Found by the content id alone, never by a similarity.
- **Near**: other content showing the same picture: resized, re-compressed, slightly cropped, rotated
  by EXIF or in another format. Found through the k-NN index, and decided one of two ways:

  - with a ``PictureCheck`` (the default of the API and the CLI): candidates at least the model's
    *gate* similar (a low cosine that lets nearly every duplicate through) are kept when their
    thumbnails' pixels line up (``simsearch.same_picture.correlation`` ≥ the check's threshold).
    Another frame of the same shoot, which a global embedding scores as high as a crop, fails there.
    A pair whose pictures cannot be read (deleted, unreadable) falls back to the cosine threshold;
  - by cosine alone: at least a threshold (the model's measured ``near_duplicate_threshold``, or one a
    caller gives), without reading any image.

  An exact duplicate is never also listed as near, whatever its similarity (1, by construction: the
  same bytes give the same vector).

A search is "similar", with no threshold; its results only say which of them are exact duplicates of
an earlier one (``duplicate_of``), or fold them into it (``collapse``).

Over a whole index (``imgsearch duplicates``), images are grouped in three steps a caller can follow
with a progress bar each: ``contents`` (one scan: the images of each content id), ``near_groups`` (one
k-NN search per content, joined transitively with union-find: if A is near B and B near C, all three
are one picture) and ``clusters`` (the groups of more than one image, with the bytes they take twice).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from simsearch.errors import InvalidRequestError, NotFoundError, SimsearchError
from simsearch.index.port import IndexedImage, check_search_arguments
from simsearch.same_picture import correlation, thumbnail_of

if TYPE_CHECKING:
    from simsearch.index.port import Hit, ImageMetadata, VectorIndex
    from simsearch.preprocess import ImageLimits
    from simsearch.same_picture import Thumbnail
    from simsearch.storage import ImageStore

logger = logging.getLogger(__name__)

MAX_DUPLICATES = 100
"""The most exact, and the most near, duplicates one answer lists for an image."""

NEAR_NEIGHBOURS = 100
"""Neighbours asked per content when an index is clustered; a larger group still joins transitively."""

PICTURE_READS = 8
"""Images read (and made into thumbnails) at once for one image's candidates: S3 GETs wait, not work."""

PICTURE_CHECK_S = 2.0
"""The longest the query API waits for the images of one picture check; candidates not read by then
are judged by the cosine. It is part of the query function's reserve (``infra.config.QUERY_RESERVE_S``)."""

KEPT_THUMBNAILS = 20_000
"""Thumbnails a whole-index comparison keeps (~20 KB each): a content's neighbours are compared with
it while it is fresh, so older ones are rarely needed again."""

ThumbnailSource = Callable[["ImageMetadata"], "Thumbnail | None"]
"""An indexed image's thumbnail (``same_picture.thumbnail_of`` its stored bytes), or None when its
picture cannot be had: the object was deleted, or cannot be read or decoded."""


def stored_thumbnails(images: ImageStore, *, limits: ImageLimits) -> ThumbnailSource:
    """Thumbnails of indexed images read from the store (one GET each), decoded as ingestion decodes.

    None, so that the pair falls back to the cosine, for an object that is gone, too large, not a
    decodable image, refused (access denied: logged, as a misconfigured role), unreachable right now,
    or no longer the bytes that were indexed (another ETag): its vector and its current pixels would
    describe two different pictures.
    """

    def thumbnail(image: ImageMetadata) -> Thumbnail | None:
        try:
            stored, data = images.fetch(image.bucket, image.key, max_bytes=limits.max_bytes)
            if data is None or (image.etag is not None and stored.etag != image.etag):
                return None
            return thumbnail_of(data, limits=limits)
        except NotFoundError:
            return None
        except SimsearchError as error:  # too large, not an image, S3 refusing or out of reach
            logger.warning(
                "no picture check for s3://%s/%s: %s (%s)", image.bucket, image.key, error, error.code
            )
            return None

    return thumbnail


@dataclass(frozen=True, kw_only=True)
class PictureCheck:
    """How near duplicates are decided where pixels can be compared (module docstring).

    ``gate``: the cosine a candidate needs (the model's, measured to keep nearly every duplicate);
    ``threshold``: the correlation of thumbnails that makes it the same picture; ``thumbnails``: where
    thumbnails come from (the image store, through ``same_picture.thumbnail_of``); ``budget_s``: how
    long to wait for them (an API call must end inside its function's timeout).
    """

    gate: float
    threshold: float
    thumbnails: ThumbnailSource
    budget_s: float | None = None  # the longest to wait for images; None: as long as they take

    def __post_init__(self) -> None:
        for name in ("gate", "threshold"):
            value = getattr(self, name)
            if not -1.0 <= value <= 1.0:
                raise InvalidRequestError(
                    f"the picture check's {name} is {value}; it must be between -1 and 1"
                )

    def matches(self, image: ImageMetadata, candidates: Sequence[Hit]) -> list[float | None]:
        """Each candidate's correlation with ``image``: None where either picture could not be had, or
        was not read within ``budget_s``. Images are read ``PICTURE_READS`` at a time."""
        if not candidates:
            return []
        pool = ThreadPoolExecutor(max_workers=min(PICTURE_READS, len(candidates) + 1))
        try:
            reads = [
                pool.submit(self.thumbnails, each) for each in (image, *(hit.metadata for hit in candidates))
            ]
            wait(reads, timeout=self.budget_s)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)  # a read still under way is not waited for
        reference, *thumbs = (
            read.result() if read.done() and not read.cancelled() else None for read in reads
        )
        if reference is None:
            return [None] * len(candidates)
        return [None if thumb is None else correlation(reference, thumb) for thumb in thumbs]


@dataclass(frozen=True, kw_only=True)
class Duplicates:
    """An indexed image, its exact duplicates (by image id) and its near ones (most similar first).

    ``threshold`` is the cosine of the cosine-only decision (the fallback of a picture check);
    ``matches`` the correlation of each near duplicate a picture check compared, by image id.
    """

    image: IndexedImage
    exact: tuple[IndexedImage, ...]
    near: tuple[Hit, ...]
    threshold: float
    matches: Mapping[str, float] = field(default_factory=dict)


def find_duplicates(
    index: VectorIndex,
    image_id: str,
    *,
    threshold: float,
    check: PictureCheck | None = None,
    limit: int = MAX_DUPLICATES,
) -> Duplicates:
    """The exact and near duplicates of ``image_id`` in ``index`` (``NotFoundError`` for an unknown id).

    Three requests: the document, the documents of its content id, and one k-NN search that leaves
    the image and its exact duplicates out and keeps what is at least ``threshold`` similar, or with
    ``check``, at least its gate, then decided by pixels (one read of each candidate's image).
    """
    check_search_arguments(k=limit, min_similarity=threshold)
    document = index.get(image_id)
    content = document.metadata.content_sha256
    exact = [] if content is None else index.with_content(content, limit=limit + 1)
    exact = [image for image in exact if image.image_id != image_id][:limit]
    hits = index.search(
        document.vector,
        k=limit,
        min_similarity=threshold if check is None else min(check.gate, threshold),
        exclude_ids=[image_id, *(image.image_id for image in exact)],
    )
    hits = [hit for hit in hits if not _same_content(hit.metadata.content_sha256, content)]
    matches: dict[str, float] = {}
    if check is not None:
        found = check.matches(document.metadata, hits)
        matches = {hit.image_id: match for hit, match in zip(hits, found, strict=True) if match is not None}
        hits = [hit for hit in hits if _is_near(hit, matches.get(hit.image_id), check, threshold=threshold)]
    return Duplicates(
        image=IndexedImage(image_id=image_id, metadata=document.metadata),
        exact=tuple(exact),
        near=tuple(hits),
        threshold=threshold,
        matches={hit.image_id: matches[hit.image_id] for hit in hits if hit.image_id in matches},
    )


def _is_near(hit: Hit, match: float | None, check: PictureCheck, *, threshold: float) -> bool:
    """The check's verdict where both pictures were compared, the cosine threshold's where not."""
    if match is None:
        return hit.similarity >= threshold
    return hit.similarity >= check.gate and match >= check.threshold


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
    check: PictureCheck | None = None,
    neighbours: int = NEAR_NEIGHBOURS,
    on_compared: Callable[[Content], None] = lambda _: None,
) -> list[list[Content]]:
    """The contents joined into groups of near duplicates (one k-NN search per content; every
    content is in exactly one group, most of them alone), in the order of ``found``.

    Decided as ``find_duplicates`` decides, by ``check`` when given. Each pair of contents is checked at
    most once: not again from the other side once refused, not at all once the groups have joined them
    (they join transitively anyway), and through one image of each.
    """
    check_search_arguments(k=neighbours, min_similarity=threshold)
    by_image = {image.image_id: content.key for content in found for image in content.images}
    joined = _UnionFind(content.key for content in found)
    refused: set[frozenset[str]] = set()
    if check is not None:
        check = _remembering(check)
    floor = threshold if check is None else min(check.gate, threshold)
    for content in found:
        head = content.images[0]
        hits: dict[str, Hit] = {}  # one per other content still to decide, the most similar
        for hit in index.search(index.get(head.image_id).vector, k=neighbours, min_similarity=floor):
            other = by_image.get(hit.image_id)  # None: a document written since the scan, not reported
            pair = frozenset((content.key, other))
            if other is not None and joined.find(other) != joined.find(content.key) and pair not in refused:
                hits.setdefault(other, hit)
        verdicts = [None] * len(hits) if check is None else check.matches(head.metadata, list(hits.values()))
        for (other, hit), match in zip(hits.items(), verdicts, strict=True):
            if check is None or _is_near(hit, match, check, threshold=threshold):
                joined.union(content.key, other)
            else:
                refused.add(frozenset((content.key, other)))
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


def _remembering(check: PictureCheck) -> PictureCheck:
    """``check`` keeping the ``KEPT_THUMBNAILS`` most recently used thumbnails, by image (its metadata,
    bucket, key and ETag among them): over a whole index each image is a candidate of several others."""
    return replace(check, thumbnails=functools.lru_cache(maxsize=KEPT_THUMBNAILS)(check.thumbnails))


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
