"""What ingestion is told and what it answers: the changes a batch names, and one outcome per key."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from simsearch.ids import image_id_for

OutcomeKind = Literal["indexed", "removed", "unchanged", "skipped", "failed", "retry"]

QUERY_UPLOAD = "query_upload"
"""Skip reason: the key is under ``Settings.query_upload_prefix``, where the query API puts uploads."""

CHANGED_DURING_INGESTION = "changed_during_ingestion"
"""Retry reason: the object changed between our reads and the check after our write."""

INDEX_WRITE_FAILED = "index_write_failed"
"""Retry reason: the index did not accept this document, after the adapter's own retries."""

OUT_OF_TIME = "out_of_time"
"""Retry reason: the invocation had no time left to start this key's chunk (``time_budget``)."""

EMBEDDING_REUSED = "embedding_reused"
"""Indexed reason: the index already held a vector of these bytes from this model; no inference ran."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Change:
    """``s3://bucket/key`` may have changed; ``etag`` and ``sequencer`` are what a notification said."""

    bucket: str
    key: str
    etag: str | None = None
    sequencer: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyOutcome:
    """What ingestion did for one object: ``reason`` is an error code (failed, retry), a skip reason,
    or for ``indexed`` how the vector was had (``EMBEDDING_REUSED``; empty: the model embedded it)."""

    bucket: str
    key: str
    kind: OutcomeKind
    reason: str = ""
    detail: str = ""
    etag: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """One key of a batch, with every change announced for it."""

    bucket: str
    key: str
    announced: tuple[Change, ...]

    @property
    def image_id(self) -> str:
        return image_id_for(self.bucket, self.key)

    def outcome(
        self, kind: OutcomeKind, *, reason: str = "", detail: str = "", etag: str | None = None
    ) -> KeyOutcome:
        return KeyOutcome(
            bucket=self.bucket, key=self.key, kind=kind, reason=reason, detail=detail, etag=etag
        )

    def sequencer_for(self, etag: str) -> str | None:
        """The newest sequencer among the events that announced ``etag`` (None if none carried one)."""
        return newest_sequencer(change.sequencer for change in self.announced if change.etag == etag)


def targets_of(changes: Iterable[Change]) -> list[Target]:
    """One target per (bucket, key), in first-seen order: a batch may name a key more than once."""
    grouped: dict[tuple[str, str], list[Change]] = {}
    for change in changes:
        grouped.setdefault((change.bucket, change.key), []).append(change)
    return [Target(bucket, key, tuple(group)) for (bucket, key), group in grouped.items()]


def newest_sequencer(sequencers: Iterable[str | None]) -> str | None:
    """The sequencer of the latest event among ``sequencers`` (None if none is known).

    S3 sequencers are hexadecimal strings of varying length that order the events of one key; AWS
    says to left-pad the shorter with zeros and compare, which is comparing their integer values.
    """
    known = [sequencer for sequencer in sequencers if sequencer is not None]
    return max(known, key=lambda sequencer: int(sequencer, 16), default=None)


class Ingestion(Protocol):
    """What keeps indexes in step with a bucket: one index (``IngestionService``) or every writing one.

    ``deadline`` (``time.monotonic`` seconds) is when the caller's time runs out: keys that cannot be
    done by then are answered ``retry`` with ``OUT_OF_TIME``, untouched.
    """

    def sync(self, changes: Sequence[Change], *, deadline: float | None = None) -> list[KeyOutcome]: ...

    def close(self) -> None: ...
