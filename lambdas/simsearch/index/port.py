"""What the system needs from a vector store, whichever store it is.

Two adapters implement these ports: ``opensearch.py`` (the deployed path) and ``embedded.py`` (SQLite +
faiss, the local default). One contract suite (``tests/integration/test_index_contract.py``) runs
against both, so the service code above them cannot tell which one it has.

Vectors: the embedder emits L2-normalised float32 vectors. Adapters check dimension and finiteness and
re-normalise (a no-op for embedder output), because inner product ranks like cosine only on unit
vectors; a zero vector has no direction and is rejected. Everything is checked before anything is
written, so a bad document never leaves half a batch behind.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from simsearch.errors import InvalidRequestError, InvalidVectorError
from simsearch.index.naming import Pointer

Vector = npt.NDArray[np.float32]  # shape (dim,), L2-normalised

MAX_K = 10_000  # OpenSearch's k-NN query accepts k in [1, 10000]
SCAN_PAGE_SIZE = 500  # documents per request of a scan: its memory and each request's size stay bounded


@dataclass(frozen=True, kw_only=True)
class ImageMetadata:
    """What we know about an indexed image besides its vector; stored beside it and returned with hits.

    ``sequencer`` is the S3 event sequencer of the newest event announcing the indexed ETag, kept for
    diagnosis: ingestion decides from the object's current state, never from sequencers.
    """

    bucket: str
    key: str
    label: str | None = None
    etag: str | None = None
    content_sha256: str | None = None
    content_type: str | None = None
    model_id: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    indexed_at: datetime | None = None
    sequencer: str | None = None

    def to_source(self) -> dict[str, Any]:
        """JSON-ready fields, without the unset ones (the OpenSearch mapping is strict)."""
        source = {name: value for name, value in asdict(self).items() if value is not None}
        if self.indexed_at is not None:
            source["indexed_at"] = self.indexed_at.isoformat()
        return source

    @classmethod
    def from_source(cls, source: Mapping[str, Any]) -> ImageMetadata:
        """Read back what ``to_source`` wrote; other keys (the vector, the id) are ignored."""
        values = {f.name: source[f.name] for f in fields(cls) if source.get(f.name) is not None}
        if "indexed_at" in values:
            values["indexed_at"] = datetime.fromisoformat(values["indexed_at"])
        return cls(**values)


@dataclass(frozen=True, kw_only=True)
class Document:
    image_id: str
    vector: Vector
    metadata: ImageMetadata


@dataclass(frozen=True, kw_only=True)
class IndexedImage:
    """A document without its vector: what ``VectorIndex.scan`` lists, to compare with the bucket."""

    image_id: str
    metadata: ImageMetadata


@dataclass(frozen=True, kw_only=True)
class Filters:
    """Restrict a search to one label and/or to keys under a prefix; ``None`` means no restriction."""

    label: str | None = None
    key_prefix: str | None = None


@dataclass(frozen=True, kw_only=True)
class Hit:
    """One neighbour: ``similarity`` is the cosine in [-1, 1]; ``score`` is the engine's raw score."""

    image_id: str
    similarity: float
    score: float
    metadata: ImageMetadata


@dataclass(frozen=True, kw_only=True)
class WriteResult:
    """Which ids were written and which were not, with the store's reason; nothing is dropped silently."""

    succeeded: tuple[str, ...] = ()
    failed: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class FailureRecord:
    """An object that could not be indexed, kept so an operator can see why without reading logs."""

    key: str
    etag: str | None
    reason_code: str
    message: str
    at: datetime


class VectorIndex(Protocol):
    """A k-NN store of image vectors for one model, reached through an alias.

    ``name`` is what reads and writes target: the alias ``<prefix>-<model_id>`` for the handle the
    service uses, or one concrete ``<alias>-v<N>`` for a handle from ``IndexCollection.index``.
    """

    @property
    def dim(self) -> int: ...

    @property
    def name(self) -> str: ...

    def ensure(self) -> str:
        """Create the index (and alias) if missing; idempotent. Returns the concrete index name."""
        ...

    def upsert(self, docs: Sequence[Document]) -> WriteResult:
        """Insert or replace documents by ``image_id``; raise ``InvalidVectorError`` before writing any."""
        ...

    def delete(self, image_ids: Sequence[str]) -> WriteResult:
        """Remove documents; an id that is not there counts as deleted (deleting is idempotent)."""
        ...

    def get(self, image_id: str) -> Document:
        """The stored document, vector included; ``NotFoundError`` if there is none."""
        ...

    def lookup(self, image_ids: Sequence[str]) -> dict[str, IndexedImage]:
        """What the index holds for these ids, vectors left out, in one read (a multi-get); an id
        without a document is absent from the answer. ``NotFoundError`` if the index does not exist."""
        ...

    def search(
        self,
        vector: Vector,
        *,
        k: int,
        filters: Filters | None = None,
        min_similarity: float | None = None,
        exclude_ids: Collection[str] = (),
    ) -> list[Hit]:
        """Up to ``k`` nearest documents, most similar first.

        Filters and ``exclude_ids`` restrict the candidates before the k nearest are chosen, so up to
        ``k`` matching documents come back; ``min_similarity`` then drops the hits below it.
        """
        ...

    def vectors_by_content(self, content_ids: Collection[str], *, model_id: str) -> dict[str, Vector]:
        """A stored vector for each of ``content_ids`` that a document of ``model_id`` here was embedded
        from, in one request; the ids no document has are left out.

        The embedding cache: the same bytes through the same model give the same vector, so a copy,
        rename or re-upload of indexed bytes needs no inference (``simsearch.ingestion.cache``).
        """
        ...

    def with_content(self, content_id: str, *, limit: int) -> list[IndexedImage]:
        """Up to ``limit`` documents whose bytes have ``content_id`` (exact duplicates of each other),
        vectors left out, in order of ``image_id``."""
        ...

    def count(self) -> int: ...

    def scan(self, *, page_size: int = SCAN_PAGE_SIZE) -> Iterator[IndexedImage]:
        """Every document, vector left out, in order of ``image_id``, read ``page_size`` at a time.

        Each document present for the whole scan is listed once; one written or removed meanwhile may
        or may not be. For reconciling the index with its bucket, and for re-indexing.
        """
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


@dataclass(frozen=True, kw_only=True)
class IndexInfo:
    """One concrete index of a deployment, and the model whose vectors it holds.

    The model travels with the index (OpenSearch keeps it in the mapping's ``_meta``), so whoever
    searches or writes an index embeds with that index's own model: a query embedded with one model is
    never searched in another model's index, whichever index a pointer names at that moment.
    """

    name: str
    model_id: str
    model_uri: str  # where the model can be loaded from: s3://bucket/prefix/ in AWS, a directory locally
    dim: int


@dataclass(frozen=True, kw_only=True)
class Pointers:
    """Which indexes answer queries (``serving``), take writes (``writing``: two while a re-index runs),
    and served before the last switch (``previous``, what a rollback returns to)."""

    serving: IndexInfo | None = None
    writing: tuple[IndexInfo, ...] = ()
    previous: IndexInfo | None = None

    @property
    def building(self) -> IndexInfo | None:
        """The index a re-index fills and a switch serves: taking writes, neither serving nor served
        before (after a switch the previous index still takes writes, for a rollback; it is not built)."""
        return next((info for info in self.writing if info not in (self.serving, self.previous)), None)


class IndexCollection(Protocol):
    """The indexes of one deployment (one index prefix) and the pointers that say what each is for.

    Every pointer change is one atomic step (an OpenSearch ``_aliases`` request, or one SQLite
    transaction), so a reader sees the pointers before or after it, never half-way.
    """

    def pointers(self) -> Pointers:
        """All three pointers (three reads on OpenSearch: for status and the re-index steps)."""
        ...

    def pointed(self, pointer: Pointer) -> tuple[IndexInfo, ...]:
        """The indexes one pointer names, each with its model, in one read: what a query or an
        ingestion batch asks before it embeds anything."""
        ...

    def create(self, *, model_id: str, model_uri: str, dim: int) -> IndexInfo:
        """The index for ``model_id`` (created with its model recorded if missing; idempotent)."""
        ...

    def index(self, info: IndexInfo) -> VectorIndex:
        """A handle that reads and writes exactly ``info``'s concrete index."""
        ...

    def refresh(self, name: str) -> None:
        """Make everything written to ``name`` visible to counts and searches (OpenSearch shows writes
        after its refresh interval; a second's lag is harmless, except to a gate counting at once)."""
        ...

    def add_writer(self, name: str) -> None: ...

    def remove_writer(self, name: str) -> None: ...

    def serve(self, name: str, *, remember: bool = True) -> None:
        """Point ``serving`` at ``name`` and, in the same step, ``previous`` at what served before
        (``remember``), or nowhere (a rollback: the index rolled back from is being built again)."""
        ...

    def drop(self, name: str) -> None:
        """Delete an index that neither serves nor takes writes (``ConfigError`` if it does)."""
        ...

    def close(self) -> None: ...


class FailureLog(Protocol):
    """Where ingestion records objects it gave up on."""

    def ensure(self) -> None: ...

    def record(self, failure: FailureRecord) -> None:
        """Store ``failure``; recording the same key and etag again replaces the earlier record."""
        ...

    def recent(self, limit: int) -> list[FailureRecord]:
        """Up to ``limit`` records, newest first."""
        ...

    def close(self) -> None: ...


def unit_vector(vector: npt.ArrayLike, *, dim: int) -> Vector:
    """``vector`` as a unit-length float32 array of ``dim`` values, or ``InvalidVectorError``.

    Any finite direction is kept, whatever its magnitude: the values are read as float64 and divided
    by the largest absolute one before the norm is taken, so the squares can neither overflow (JSON
    brings values up to 1.8e308) nor underflow, and nothing passes through float32 before it has unit
    length (a float32 norm of 3e38 values is infinite; values near 1e-45 keep only a few bits there).
    """
    array = np.asarray(vector, dtype=np.float64)
    if array.shape != (dim,):
        raise InvalidVectorError(
            f"vector has shape {array.shape}; this index holds vectors of shape ({dim},)"
        )
    if not np.all(np.isfinite(array)):
        raise InvalidVectorError("vector contains NaN or infinite values; every value must be finite")
    largest = float(np.max(np.abs(array)))
    if largest == 0.0:
        raise InvalidVectorError("vector has length 0; it must have a direction to be compared")
    scaled = array / largest
    unit: Vector = (scaled / np.linalg.norm(scaled)).astype(np.float32)
    return unit


def check_search_arguments(*, k: int, min_similarity: float | None) -> None:
    """Reject a ``k`` or ``min_similarity`` no adapter can honour, with the allowed range."""
    if not 1 <= k <= MAX_K:
        raise InvalidRequestError(f"k is {k}; it must be between 1 and {MAX_K}")
    if min_similarity is not None and not -1.0 <= min_similarity <= 1.0:
        raise InvalidRequestError(f"min_similarity is {min_similarity}; it must be between -1 and 1")
