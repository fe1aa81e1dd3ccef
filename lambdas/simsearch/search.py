"""The query side: the indexed images most similar to an image, a stored object, an indexed image or a vector.

``SearchService`` knows only ports (``Serving``, which names the index and its model per request, and
``ImageStore``): the query handler and local mode build it with real adapters, and it never sees HTTP.
Every result carries a presigned GET, so a browser fetches images straight from the bucket and the
bucket stays private.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, assert_never

from simsearch import duplicates
from simsearch.duplicates import PICTURE_CHECK_S, PictureCheck, stored_thumbnails
from simsearch.errors import (
    ImageTooLargeError,
    IndexUnavailableError,
    InvalidRequestError,
    InvalidVectorError,
    NotFoundError,
)
from simsearch.index.port import MAX_K, Filters, Hit, Vector, check_search_arguments, unit_vector
from simsearch.manifest import manifest_of
from simsearch.preprocess import ImageLimits, decode_image
from simsearch.settings import Settings

if TYPE_CHECKING:
    from simsearch.embedder import Embedder
    from simsearch.index.port import IndexedImage
    from simsearch.storage import ImageStore
    from simsearch.targets import Serving, Target

MAX_RESULTS = 100
"""The largest ``k`` a query may ask for: every result costs a presigned URL and a thumbnail download."""

COLLAPSE_FETCH_MAX = 1_000
"""The most neighbours a collapsing search fetches to find ``k`` distinct contents (it doubles up to it)."""


@dataclass(frozen=True, kw_only=True)
class ImageQuery:
    """An encoded image sent with the request."""

    data: bytes


@dataclass(frozen=True, kw_only=True)
class StoredImageQuery:
    """An object in the images bucket, typically one uploaded through a presigned POST."""

    key: str


@dataclass(frozen=True, kw_only=True)
class IndexedImageQuery:
    """More like an indexed image: its stored vector is the query, and it is left out of the results."""

    image_id: str


@dataclass(frozen=True, kw_only=True)
class VectorQuery:
    """An embedding computed elsewhere with the same model."""

    values: Sequence[float]


Query = ImageQuery | StoredImageQuery | IndexedImageQuery | VectorQuery


@dataclass(frozen=True, kw_only=True)
class SearchOptions:
    """How many neighbours, which ones may come back, and whether exact duplicates fold into one."""

    k: int = 10
    filters: Filters | None = None
    min_similarity: float | None = None
    collapse_duplicates: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.k <= MAX_RESULTS:
            raise InvalidRequestError(f"k is {self.k}; it must be between 1 and {MAX_RESULTS}")
        check_search_arguments(k=self.k, min_similarity=self.min_similarity)


@dataclass(frozen=True, kw_only=True)
class QueryConfig:
    """The settings the query side reads: where images live and how long presigned links stay valid."""

    bucket: str
    upload_prefix: str
    presign_ttl_seconds: int
    limits: ImageLimits
    near_duplicate_threshold: float = Settings.near_duplicate_threshold
    near_duplicate_gate: float = Settings.near_duplicate_gate
    picture_match_threshold: float = Settings.picture_match_threshold

    @classmethod
    def from_settings(cls, settings: Settings) -> QueryConfig:
        return cls(
            bucket=settings.images_bucket,
            upload_prefix=settings.query_upload_prefix,
            presign_ttl_seconds=settings.presign_ttl_seconds,
            limits=ImageLimits.of(settings),
            near_duplicate_threshold=settings.near_duplicate_threshold,
            near_duplicate_gate=settings.near_duplicate_gate,
            picture_match_threshold=settings.picture_match_threshold,
        )


@dataclass(frozen=True, kw_only=True)
class Result:
    """One neighbour; ``content_sha256`` identifies its bytes, ``duplicate_of`` names an earlier result
    with the same bytes, ``collapsed`` the later ones folded into this one (``collapse_duplicates``)."""

    id: str
    key: str
    label: str | None
    similarity: float
    score: float
    url: str
    content_sha256: str | None = None
    duplicate_of: str | None = None
    collapsed: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class SearchResults:
    results: tuple[Result, ...]
    model_id: str
    index: str
    took_ms: float


@dataclass(frozen=True, kw_only=True)
class ImageView:
    """What ``GET /images/{id}`` shows of an indexed image (never its vector)."""

    id: str
    key: str
    label: str | None
    url: str
    width: int | None
    height: int | None
    bytes: int | None
    content_type: str | None
    indexed_at: str | None
    model_id: str | None


@dataclass(frozen=True, kw_only=True)
class Duplicate:
    """An exact or near duplicate of an image: ``similarity`` is 1 for the same bytes; ``match`` is the
    correlation of the two pictures' thumbnails where the picture check compared them."""

    id: str
    key: str
    label: str | None
    similarity: float
    bytes: int | None
    url: str
    match: float | None = None


@dataclass(frozen=True, kw_only=True)
class PictureCheckView:
    """How near duplicates were decided: candidates at least ``gate`` similar, kept at a thumbnail
    correlation of at least ``threshold`` (the cosine threshold where pictures could not be compared)."""

    gate: float
    threshold: float


@dataclass(frozen=True, kw_only=True)
class DuplicatesView:
    """What ``GET /images/{id}/duplicates`` shows: the image, its exact and its near duplicates."""

    id: str
    key: str
    url: str
    content_sha256: str | None
    threshold: float
    picture_check: PictureCheckView | None
    exact: tuple[Duplicate, ...]
    near: tuple[Duplicate, ...]
    model_id: str
    index: str
    took_ms: float


@dataclass(frozen=True, kw_only=True)
class UploadForm:
    """A presigned POST for one query image, and the key to search with once it is uploaded."""

    url: str
    fields: Mapping[str, str]
    key: str
    max_bytes: int
    expires_in: int


@dataclass(frozen=True, kw_only=True)
class Health:
    status: Literal["ok"]
    model_id: str
    index: str
    documents: int


class SearchService:
    """Turns each kind of query into a vector, asks the index, and links every hit to its image."""

    def __init__(self, *, serving: Serving, images: ImageStore, config: QueryConfig) -> None:
        """``serving`` says, per request, which index answers and with which model (``simsearch.targets``)."""
        self._serving = serving
        self._images = images
        self._config = config

    def search(self, query: Query, options: SearchOptions) -> SearchResults:
        """The up to ``options.k`` most similar indexed images, most similar first.

        Raises:
            InvalidImageError, ImageTooLargeError: the image (inline or stored) cannot be used.
            InvalidVectorError: a vector of the wrong dimension, or with non-finite values.
            NotFoundError: no such stored object or indexed id.
            IndexUnavailableError, StorageUnavailableError: retry later.
        """
        started = time.perf_counter()
        target = self._serving.current()  # one index and its own model for the whole request
        vector, exclude = self._query_vector(query, target)
        if options.collapse_duplicates:
            results = [
                self._result(hit, collapsed=folded)
                for hit, folded in self._collapsed(target, vector, exclude, options)
            ]
        else:
            hits = self._neighbours(target, vector, exclude, options, k=options.k)
            results = [
                self._result(hit, duplicate_of=of)
                for hit, of in zip(hits, duplicates.duplicate_of(hits), strict=True)
            ]
        return SearchResults(
            results=tuple(results),
            model_id=target.embedder.model_id,
            index=target.index.name,
            took_ms=_since(started),
        )

    def duplicates(self, image_id: str, *, threshold: float | None = None) -> DuplicatesView:
        """An indexed image's exact duplicates (same bytes) and near ones; ``NotFoundError`` for an
        unknown id.

        Near duplicates are decided by the picture check (``simsearch.duplicates.PictureCheck``, with
        the serving model's gate), falling back to the serving model's cosine threshold where pictures
        cannot be compared. A caller's ``threshold`` asks for the cosine alone, at that value.
        """
        started = time.perf_counter()
        target = self._serving.current()
        check = None
        if threshold is None:
            threshold, check = self._near_rule(target)
        found = duplicates.find_duplicates(target.index, image_id, threshold=threshold, check=check)
        image = found.image.metadata
        return DuplicatesView(
            id=image_id,
            key=image.key,
            url=self._url(image.bucket, image.key),
            content_sha256=image.content_sha256,
            threshold=found.threshold,
            picture_check=None
            if check is None
            else PictureCheckView(gate=check.gate, threshold=check.threshold),
            exact=tuple(self._duplicate(each) for each in found.exact),
            near=tuple(self._near(hit, match=found.matches.get(hit.image_id)) for hit in found.near),
            model_id=target.embedder.model_id,
            index=target.index.name,
            took_ms=_since(started),
        )

    def close(self) -> None:
        """Release every part: the models' threads, the index connections, the S3 client."""
        for part in (self._serving, self._images):
            part.close()

    def image(self, image_id: str) -> ImageView:
        """An indexed image's metadata with a presigned GET; ``NotFoundError`` for an unknown id."""
        metadata = self._serving.current().index.get(image_id).metadata
        return ImageView(
            id=image_id,
            key=metadata.key,
            label=metadata.label,
            url=self._url(metadata.bucket, metadata.key),
            width=metadata.width,
            height=metadata.height,
            bytes=metadata.bytes,
            content_type=metadata.content_type,
            indexed_at=metadata.indexed_at.isoformat() if metadata.indexed_at else None,
            model_id=metadata.model_id,
        )

    def upload_form(self) -> UploadForm:
        """A presigned POST to a fresh key under the query-upload prefix, which ingestion ignores."""
        key = f"{self._config.upload_prefix}{uuid.uuid4().hex}"
        max_bytes, ttl = self._config.limits.max_bytes, self._config.presign_ttl_seconds
        post: dict[str, Any] = self._images.presigned_post(
            self._config.bucket, key, max_bytes=max_bytes, ttl_seconds=ttl
        )
        return UploadForm(
            url=str(post["url"]),
            fields={str(name): str(value) for name, value in post["fields"].items()},
            key=key,
            max_bytes=max_bytes,
            expires_in=ttl,
        )

    def health(self) -> Health:
        """The model and index in use and how many images the index holds; raises if it cannot answer."""
        target = self._serving.current()
        try:
            documents = target.index.count()
        except NotFoundError as error:  # not bootstrapped yet: the service is not ready, nothing is "missing"
            raise IndexUnavailableError(f"index {target.index.name!r} does not exist yet") from error
        return Health(
            status="ok", model_id=target.embedder.model_id, index=target.index.name, documents=documents
        )

    def _query_vector(self, query: Query, target: Target) -> tuple[Vector, tuple[str, ...]]:
        """The vector to search ``target`` with, and the ids to leave out of the results."""
        match query:
            case ImageQuery(data=data):
                return self._embed(data, target.embedder), ()
            case StoredImageQuery(key=key):
                return self._embed(self._read_stored(key), target.embedder), ()
            case IndexedImageQuery(image_id=image_id):
                return target.index.get(image_id).vector, (image_id,)
            case VectorQuery(values=values):
                return self._checked_vector(values, target.embedder), ()
            case _:
                assert_never(query)

    def _embed(self, data: bytes, embedder: Embedder) -> Vector:
        decoded = decode_image(data, limits=self._config.limits)
        vector: Vector = embedder.embed([decoded.rgb])[0]
        return vector

    def _read_stored(self, key: str) -> bytes:
        """The object's bytes; its size is checked from the headers before anything is downloaded."""
        stored = self._images.head(self._config.bucket, key)
        limit = self._config.limits.max_bytes
        if stored.size > limit:
            raise ImageTooLargeError(f"s3 object {key!r} is {stored.size} bytes; the limit is {limit} bytes")
        return self._images.read(stored)

    def _checked_vector(self, values: Sequence[float], embedder: Embedder) -> Vector:
        """The unit vector of the values as sent: cast to float32 first, 3e38s would become infinite."""
        if len(values) != embedder.dim:
            raise InvalidVectorError(
                f"vector has {len(values)} values; "
                f"model {embedder.model_id} embeds images into {embedder.dim}"
            )
        try:
            return unit_vector(values, dim=embedder.dim)
        except (OverflowError, TypeError, ValueError) as error:
            raise InvalidVectorError(f"vector values must be finite numbers: {error}") from error

    def _neighbours(
        self, target: Target, vector: Vector, exclude: tuple[str, ...], options: SearchOptions, *, k: int
    ) -> list[Hit]:
        return target.index.search(
            vector, k=k, filters=options.filters, min_similarity=options.min_similarity, exclude_ids=exclude
        )

    def _collapsed(
        self, target: Target, vector: Vector, exclude: tuple[str, ...], options: SearchOptions
    ) -> list[tuple[Hit, tuple[str, ...]]]:
        """The ``k`` nearest distinct contents: neighbours are fetched, twice as many each time, until
        ``k`` contents are among them, the index has no more, or ``COLLAPSE_FETCH_MAX`` is reached."""
        fetch = options.k
        while True:
            fetch = min(fetch * 2, COLLAPSE_FETCH_MAX, MAX_K)
            hits = self._neighbours(target, vector, exclude, options, k=fetch)
            kept = duplicates.collapse(hits)
            if len(kept) >= options.k or len(hits) < fetch or fetch >= COLLAPSE_FETCH_MAX:
                return kept[: options.k]

    def _result(
        self, hit: Hit, *, duplicate_of: str | None = None, collapsed: tuple[str, ...] = ()
    ) -> Result:
        return Result(
            id=hit.image_id,
            key=hit.metadata.key,
            label=hit.metadata.label,
            similarity=hit.similarity,
            score=hit.score,
            url=self._url(hit.metadata.bucket, hit.metadata.key),
            content_sha256=hit.metadata.content_sha256,
            duplicate_of=duplicate_of,
            collapsed=collapsed,
        )

    def _duplicate(self, image: IndexedImage) -> Duplicate:
        metadata = image.metadata
        return Duplicate(
            id=image.image_id,
            key=metadata.key,
            label=metadata.label,
            similarity=1.0,
            bytes=metadata.bytes,
            url=self._url(metadata.bucket, metadata.key),
        )

    def _near(self, hit: Hit, *, match: float | None) -> Duplicate:
        return Duplicate(
            id=hit.image_id,
            key=hit.metadata.key,
            label=hit.metadata.label,
            similarity=hit.similarity,
            bytes=hit.metadata.bytes,
            url=self._url(hit.metadata.bucket, hit.metadata.key),
            match=match,
        )

    def _near_rule(self, target: Target) -> tuple[float, PictureCheck]:
        """The serving model's cosine threshold and picture check (its manifest's values where it
        records them, the deployment's otherwise)."""
        threshold, gate = self._config.near_duplicate_threshold, self._config.near_duplicate_gate
        manifest = manifest_of(target.embedder)
        if manifest is not None:
            threshold, gate = manifest.near_rule(threshold=threshold, gate=gate)
        check = PictureCheck(
            gate=gate,
            threshold=self._config.picture_match_threshold,
            thumbnails=stored_thumbnails(self._images, limits=self._config.limits),
            budget_s=PICTURE_CHECK_S,
        )
        return threshold, check

    def _url(self, bucket: str, key: str) -> str:
        return self._images.presigned_get(bucket, key, ttl_seconds=self._config.presign_ttl_seconds)


def _since(started: float) -> float:
    """Milliseconds since ``started`` (a ``perf_counter`` reading), to a tenth."""
    return round((time.perf_counter() - started) * 1000, 1)
