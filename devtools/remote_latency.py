"""S3 and OpenSearch as AWS shows them to a function: answers that take milliseconds but no local CPU.

On a developer's machine moto and the OpenSearch JVM burn the same cores the model needs, so a
benchmark against them mixes our overhead with theirs. The stand-ins here keep everything in
dictionaries and sleep for a latency drawn from a configurable range on every round trip (a sleep
releases the GIL and costs no CPU), which is how a remote service looks from inside a Lambda
function: time, not load. They implement the ports (``ImageStore``, ``VectorIndex``) with the
contract ingestion relies on (ETags change with the content, ``read`` honours ``If-Match``, a batch
write reports every id), so the real ingestion service runs on them unchanged.

Used by ``devtools.bench_ingest --remote``; the default ranges are what S3 (HEAD/GET within a region)
and a small OpenSearch domain (a bulk write, a document read) typically answer in.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simsearch.errors import NotFoundError
from simsearch.index.port import (
    SCAN_PAGE_SIZE,
    Document,
    Filters,
    Hit,
    IndexedImage,
    Vector,
    WriteResult,
    unit_vector,
)
from simsearch.storage import StoredObject


@dataclass(frozen=True)
class Latency:
    """A round trip's duration, drawn uniformly from ``[low_ms, high_ms]``; ``sleep`` waits it out."""

    low_ms: float
    high_ms: float

    def __post_init__(self) -> None:
        if not 0 <= self.low_ms <= self.high_ms:
            raise ValueError(f"latency range {self.low_ms}..{self.high_ms} ms: need 0 ≤ low ≤ high")

    @classmethod
    def parse(cls, text: str) -> Latency:
        """``"15-30"`` (a range in ms) or ``"20"`` (a fixed latency)."""
        low, _, high = text.partition("-")
        return cls(float(low), float(high or low))

    def __str__(self) -> str:
        return f"{self.low_ms:g}-{self.high_ms:g} ms"


@dataclass(frozen=True, kw_only=True)
class RemoteLatencies:
    """Every round trip's latency; ``s3_mb_per_s`` adds transfer time to a GET of many bytes."""

    s3_head: Latency = Latency(15, 30)
    s3_get: Latency = Latency(15, 30)
    s3_mb_per_s: float = 80.0
    index_read: Latency = Latency(5, 15)
    index_bulk: Latency = Latency(20, 50)
    knn_query: Latency = Latency(5, 15)

    def describe(self) -> str:
        return (
            f"S3 HEAD {self.s3_head}, GET {self.s3_get} + {self.s3_mb_per_s:g} MB/s; "
            f"index read {self.index_read}, bulk {self.index_bulk}, k-NN {self.knn_query}"
        )


class _Clock:
    """A thread-safe random source for latencies (``random.Random`` is not safe to share unlocked)."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def wait(self, latency: Latency, *, extra_seconds: float = 0.0) -> None:
        with self._lock:
            seconds = self._rng.uniform(latency.low_ms, latency.high_ms) / 1000 + extra_seconds
        time.sleep(seconds)


@dataclass
class _Object:
    data: bytes
    etag: str
    metadata: Mapping[str, str]
    content_type: str | None


@dataclass
class RemoteImageStore:
    """An ``ImageStore`` in a dict that answers after S3's latency; ``round_trips`` counts by kind."""

    latencies: RemoteLatencies = field(default_factory=RemoteLatencies)
    seed: int = 0
    round_trips: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._objects: dict[tuple[str, str], _Object] = {}
        self._clock = _Clock(self.seed)
        self._lock = threading.Lock()

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> str:
        """Store ``data`` at once (uploads are not what is measured); returns its ETag."""
        etag = hashlib.md5(data).hexdigest()
        with self._lock:
            self._objects[(bucket, key)] = _Object(data, etag, dict(metadata or {}), content_type)
        return etag

    def head(self, bucket: str, key: str) -> StoredObject:
        self._count("head")
        self._clock.wait(self.latencies.s3_head)
        return self._stored(bucket, key, self._found(bucket, key))

    def read(self, obj: StoredObject) -> bytes:
        self._count("get")
        found = self._objects.get((obj.bucket, obj.key))
        size = len(found.data) if found is not None else 0
        self._clock.wait(self.latencies.s3_get, extra_seconds=self._transfer_seconds(size))
        if found is None or found.etag != obj.etag:  # If-Match
            raise NotFoundError(f"s3://{obj.bucket}/{obj.key} changed since it was announced")
        return found.data

    def fetch(self, bucket: str, key: str, *, max_bytes: int) -> tuple[StoredObject, bytes | None]:
        """One GET: the headers, and the bytes unless there are more than ``max_bytes`` (left unread)."""
        self._count("get")
        found = self._objects.get((bucket, key))
        size = len(found.data) if found is not None and len(found.data) <= max_bytes else 0
        self._clock.wait(self.latencies.s3_get, extra_seconds=self._transfer_seconds(size))
        found = self._found(bucket, key)
        stored = self._stored(bucket, key, found)
        return stored, (found.data if len(found.data) <= max_bytes else None)

    def list(self, bucket: str, prefix: str) -> Iterator[StoredObject]:
        self._count("list")
        self._clock.wait(self.latencies.s3_get)
        for (each_bucket, key), found in sorted(self._objects.items()):
            if each_bucket == bucket and key.startswith(prefix):
                yield self._stored(bucket, key, found)

    def presigned_get(self, bucket: str, key: str, *, ttl_seconds: int) -> str:
        return f"https://{bucket}.s3.example/{key}?ttl={ttl_seconds}"

    def presigned_post(self, bucket: str, key: str, *, max_bytes: int, ttl_seconds: int) -> dict[str, Any]:
        fields = {"key": key, "max_bytes": str(max_bytes), "ttl": str(ttl_seconds)}
        return {"url": f"https://{bucket}.s3.example", "fields": fields}

    def close(self) -> None:
        """Nothing to release."""

    def _found(self, bucket: str, key: str) -> _Object:
        found = self._objects.get((bucket, key))
        if found is None:
            raise NotFoundError(f"s3://{bucket}/{key} does not exist")
        return found

    def _transfer_seconds(self, size: int) -> float:
        return size / (self.latencies.s3_mb_per_s * 1e6) if self.latencies.s3_mb_per_s > 0 else 0.0

    def _count(self, kind: str) -> None:
        with self._lock:
            self.round_trips[kind] = self.round_trips.get(kind, 0) + 1

    @staticmethod
    def _stored(bucket: str, key: str, found: _Object) -> StoredObject:
        return StoredObject(
            bucket=bucket,
            key=key,
            etag=found.etag,
            size=len(found.data),
            content_type=found.content_type,
            metadata=found.metadata,
        )


@dataclass
class RemoteIndex:
    """A ``VectorIndex`` in a dict that answers after OpenSearch's latency; exact search, no engine."""

    dim: int
    name: str = "remote"
    latencies: RemoteLatencies = field(default_factory=RemoteLatencies)
    seed: int = 1
    round_trips: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._documents: dict[str, Document] = {}
        self._clock = _Clock(self.seed)
        self._lock = threading.Lock()

    def ensure(self) -> str:
        return f"{self.name}-v1"

    def upsert(self, docs: Sequence[Document]) -> WriteResult:
        self._count("bulk")
        latest = {doc.image_id: doc for doc in docs}
        checked = {
            image_id: Document(
                image_id=image_id, vector=unit_vector(doc.vector, dim=self.dim), metadata=doc.metadata
            )
            for image_id, doc in latest.items()
        }
        self._clock.wait(self.latencies.index_bulk)
        with self._lock:
            self._documents.update(checked)
        return WriteResult(succeeded=tuple(latest))

    def delete(self, image_ids: Sequence[str]) -> WriteResult:
        self._count("bulk")
        self._clock.wait(self.latencies.index_bulk)
        with self._lock:
            for image_id in image_ids:
                self._documents.pop(image_id, None)
        return WriteResult(succeeded=tuple(dict.fromkeys(image_ids)))

    def get(self, image_id: str) -> Document:
        self._count("get")
        self._clock.wait(self.latencies.index_read)
        found = self._documents.get(image_id)
        if found is None:
            raise NotFoundError(f"no image with id {image_id!r} in index {self.name!r}")
        return found

    def lookup(self, image_ids: Sequence[str]) -> dict[str, IndexedImage]:
        """One multi-get: what exists of these ids, vectors left out."""
        self._count("mget")
        self._clock.wait(self.latencies.index_read)
        return {
            image_id: IndexedImage(image_id=image_id, metadata=self._documents[image_id].metadata)
            for image_id in image_ids
            if image_id in self._documents
        }

    def vectors_by_content(self, content_ids: Collection[str], *, model_id: str) -> dict[str, Vector]:
        """One search by content id (the embedding cache's look-up)."""
        self._count("search")
        self._clock.wait(self.latencies.index_read)
        wanted = set(content_ids)
        return {
            doc.metadata.content_sha256: doc.vector
            for doc in list(self._documents.values())
            if doc.metadata.content_sha256 in wanted and doc.metadata.model_id == model_id
        }

    def with_content(self, content_id: str, *, limit: int) -> list[IndexedImage]:
        """One search by content id: the exact duplicates."""
        self._count("search")
        self._clock.wait(self.latencies.index_read)
        found = sorted(
            (doc for doc in list(self._documents.values()) if doc.metadata.content_sha256 == content_id),
            key=lambda doc: doc.image_id,
        )
        return [IndexedImage(image_id=doc.image_id, metadata=doc.metadata) for doc in found[:limit]]

    def search(
        self,
        vector: Vector,
        *,
        k: int,
        filters: Filters | None = None,
        min_similarity: float | None = None,
        exclude_ids: Collection[str] = (),
    ) -> list[Hit]:
        """Exact inner-product search; ``filters`` restrict by label and key prefix."""
        self._count("search")
        self._clock.wait(self.latencies.knn_query)
        query = unit_vector(vector, dim=self.dim)
        candidates = [
            doc
            for doc in self._documents.values()
            if doc.image_id not in exclude_ids and _matches(doc, filters or Filters())
        ]
        scored = sorted(
            ((float(np.dot(query, doc.vector)), doc) for doc in candidates), key=lambda pair: -pair[0]
        )[:k]
        return [
            Hit(image_id=doc.image_id, similarity=score, score=(1 + score) / 2, metadata=doc.metadata)
            for score, doc in scored
            if min_similarity is None or score >= min_similarity
        ]

    def count(self) -> int:
        return len(self._documents)

    def scan(self, *, page_size: int = SCAN_PAGE_SIZE) -> Iterator[IndexedImage]:
        """Every document in id order; one read's latency per ``page_size`` documents."""
        for position, image_id in enumerate(sorted(self._documents)):
            if position % page_size == 0:
                self._clock.wait(self.latencies.index_read)
            yield IndexedImage(image_id=image_id, metadata=self._documents[image_id].metadata)

    def close(self) -> None:
        """Nothing to release."""

    def _count(self, kind: str) -> None:
        with self._lock:
            self.round_trips[kind] = self.round_trips.get(kind, 0) + 1


def _matches(document: Document, filters: Filters) -> bool:
    metadata = document.metadata
    return (filters.label is None or metadata.label == filters.label) and (
        filters.key_prefix is None or metadata.key.startswith(filters.key_prefix)
    )
