"""In-memory stand-ins for the ports, so the services' logic runs in milliseconds, without moto or a model.

``MemoryImageStore`` is a bucket in a dict that keeps S3's contract where ingestion relies on it (ETags
change with the content, ``read`` refuses a version HEAD did not see); ``StubEmbedder`` turns each image
into a small unit vector of its colours. The index stays real: the embedded index on a temporary path
is fast enough, and a fake would test itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from PIL import Image

from simsearch.embedder import Embeddings
from simsearch.errors import InvalidVectorError, NotFoundError, SimsearchError
from simsearch.storage import StoredObject

Moment = Literal["read", "missing"]


@dataclass
class _Object:
    data: bytes
    metadata: Mapping[str, str]
    content_type: str | None


@dataclass
class MemoryImageStore:
    """An ``ImageStore`` over a dict; ``then(moment, action)`` lets another writer act at a chosen moment,
    and ``failing`` is raised by every HEAD (S3 unreachable, access denied)."""

    failing: SimsearchError | None = None
    objects: dict[tuple[str, str], _Object] = field(default_factory=dict)
    heads: list[str] = field(default_factory=list)
    closed: bool = False
    _pending: dict[Moment, Callable[[], object]] = field(default_factory=dict)

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> str:
        """Store ``data``; returns its ETag (the MD5 of the content, as S3 gives for a single PUT)."""
        self.objects[(bucket, key)] = _Object(data, dict(metadata or {}), content_type)
        return _etag(data)

    def delete(self, bucket: str, key: str) -> None:
        self.objects.pop((bucket, key), None)

    def then(self, moment: Moment, action: Callable[[], object]) -> None:
        """Run ``action`` once: after the next ``read``, or after the next HEAD that finds nothing."""
        self._pending[moment] = action

    def head(self, bucket: str, key: str) -> StoredObject:
        self.heads.append(key)
        if self.failing is not None:
            raise self.failing
        found = self.objects.get((bucket, key))
        if found is None:
            self._act("missing")
            raise NotFoundError(f"s3://{bucket}/{key} does not exist")
        return StoredObject(
            bucket=bucket,
            key=key,
            etag=_etag(found.data),
            size=len(found.data),
            content_type=found.content_type,
            metadata=found.metadata,
        )

    def read(self, obj: StoredObject) -> bytes:
        found = self.objects.get((obj.bucket, obj.key))
        if found is None or _etag(found.data) != obj.etag:  # S3's If-Match
            raise NotFoundError(f"s3://{obj.bucket}/{obj.key} changed since it was announced")
        self._act("read")
        return found.data

    def fetch(self, bucket: str, key: str, *, max_bytes: int) -> tuple[StoredObject, bytes | None]:
        """A HEAD and a read in one: the same moments (``then``) and failures, ``heads`` records it too."""
        obj = self.head(bucket, key)
        if obj.size > max_bytes:
            return obj, None
        return obj, self.read(obj)

    def list(self, bucket: str, prefix: str) -> Iterator[StoredObject]:
        for (each_bucket, key), found in sorted(self.objects.items()):
            if each_bucket == bucket and key.startswith(prefix):
                yield StoredObject(bucket=bucket, key=key, etag=_etag(found.data), size=len(found.data))

    def presigned_get(self, bucket: str, key: str, *, ttl_seconds: int) -> str:
        return f"memory://{bucket}/{key}?ttl={ttl_seconds}"

    def presigned_post(self, bucket: str, key: str, *, max_bytes: int, ttl_seconds: int) -> dict[str, Any]:
        fields = {"key": key, "max_bytes": str(max_bytes), "ttl": str(ttl_seconds)}
        return {"url": f"memory://{bucket}", "fields": fields}

    def close(self) -> None:
        self.closed = True

    def _act(self, moment: Moment) -> None:
        action = self._pending.pop(moment, None)
        if action is not None:
            action()


@dataclass
class StubEmbedder:
    """An ``Embedder`` whose vector is an image's mean colour per quadrant, plus one constant, unit length.

    Different pictures get different vectors; ``calls`` records each call's batch size, and an image that
    ``refuses`` picks makes the whole call raise ``InvalidVectorError``, as a model fault would.
    """

    model_id: str = "stub-c1"
    refuses: Callable[[Image.Image], bool] = lambda _: False
    calls: list[int] = field(default_factory=list)
    closed: bool = False
    repeat: int = 1  # another "model": the same features repeated, in a wider space

    @property
    def dim(self) -> int:
        return 13 * self.repeat

    def embed(self, images: Sequence[Image.Image]) -> Embeddings:
        self.calls.append(len(images))
        if any(self.refuses(image) for image in images):
            raise InvalidVectorError("the model gave a zero embedding for an image of the batch")
        rows = [
            np.append(np.asarray(image.convert("RGB").resize((2, 2)), np.float32).ravel() / 255, 1.0)
            for image in images
        ]
        vectors = np.tile(np.array(rows, dtype=np.float32).reshape(len(images), 13), self.repeat)
        unit: Embeddings = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return unit

    def close(self) -> None:
        self.closed = True


def _etag(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()
