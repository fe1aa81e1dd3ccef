"""Writes that stand only if the bucket still agrees: one bulk upsert, one bulk delete, then a check each.

Concurrent invocations may work on one key at once. Every write that went through is checked with a
second HEAD: the object must still have the ETag just indexed, or still be absent after a removal. If
it changed, the key is retried, and the retry brings the index to the newer state. Whoever writes last
also checks last, so the index converges to the bucket. (A conditional write in the index would save
that HEAD; the port has none.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from simsearch.errors import NotFoundError, SimsearchError
from simsearch.ingestion.changes import CHANGED_DURING_INGESTION, INDEX_WRITE_FAILED, KeyOutcome, Target

if TYPE_CHECKING:
    from simsearch.index.port import Document, VectorIndex, WriteResult
    from simsearch.ingestion.fan_out import FanOut
    from simsearch.storage import ImageStore


@dataclass(frozen=True, kw_only=True, slots=True)
class Write:
    """One document to upsert, or (``document`` None) to remove, and what must hold afterwards.

    ``expect_etag`` is the ETag the object must still have once the write is done (None: it must
    still be absent); ``done`` is the outcome to report when it does.
    """

    target: Target
    expect_etag: str | None
    document: Document | None
    done: KeyOutcome

    @classmethod
    def upsert(cls, target: Target, document: Document, *, etag: str, reason: str = "") -> Write:
        """Index ``document``; it stands if the object still has ``etag`` afterwards."""
        done = target.outcome("indexed", reason=reason, etag=etag)
        return cls(target=target, expect_etag=etag, document=document, done=done)

    @classmethod
    def removal(cls, target: Target, *, etag: str | None = None, done: KeyOutcome | None = None) -> Write:
        """Remove the key's document; it stands if the object still has ``etag`` (None: is still absent)."""
        return cls(target=target, expect_etag=etag, document=None, done=done or target.outcome("removed"))


class VerifiedWriter:
    """Applies a batch's writes to the index and reports, per key, whether each one stands."""

    def __init__(self, *, index: VectorIndex, images: ImageStore, fan_out: FanOut) -> None:
        self._index = index
        self._images = images
        self._fan_out = fan_out

    def write(self, writes: Sequence[Write]) -> list[KeyOutcome]:
        """One bulk upsert, one bulk delete, then check every write that went through."""
        upserts = [write for write in writes if write.document is not None]
        removals = [write for write in writes if write.document is None]
        documents = [write.document for write in upserts if write.document is not None]
        upserted, not_upserted = self._send(upserts, lambda: self._index.upsert(documents))
        removed, not_removed = self._send(
            removals, lambda: self._index.delete([write.target.image_id for write in removals])
        )
        return not_upserted + not_removed + self._fan_out(self._check, upserted + removed)

    def _send(
        self, writes: list[Write], send: Callable[[], WriteResult]
    ) -> tuple[list[Write], list[KeyOutcome]]:
        """(writes the index acknowledged, retry outcomes for the rest)."""
        if not writes:
            return [], []
        try:
            result = send()
        except SimsearchError as error:
            if not error.retryable:
                raise
            return [], [w.target.outcome("retry", reason=error.code, detail=str(error)) for w in writes]
        succeeded = set(result.succeeded)
        acknowledged = [write for write in writes if write.target.image_id in succeeded]
        refused = [
            write.target.outcome(
                "retry",
                reason=INDEX_WRITE_FAILED,
                detail=result.failed.get(write.target.image_id, "not acknowledged by the index"),
            )
            for write in writes
            if write.target.image_id not in succeeded
        ]
        return acknowledged, refused

    def _check(self, write: Write) -> KeyOutcome:
        """The write stands only if the object is still what it was when we decided."""
        target = write.target
        try:
            now: str | None = self._images.head(target.bucket, target.key).etag
        except NotFoundError:
            now = None
        except SimsearchError as error:
            return target.outcome("retry", reason=error.code, detail=f"could not check the write: {error}")
        if now != write.expect_etag:
            detail = f"s3://{target.bucket}/{target.key} changed while it was being indexed"
            return target.outcome("retry", reason=CHANGED_DURING_INGESTION, detail=detail)
        return write.done
