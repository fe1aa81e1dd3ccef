"""The ingestion service: make the index agree with the bucket for every key a notification names.

Notifications are hints, not instructions. S3 delivers them at least once and in no guaranteed order,
and the queue redelivers, so the service does not replay what an event says happened: it looks at
the object as it is now (HEAD) and makes the index match.

- The object exists: index it, unless the index already holds this ETag for this model (``unchanged``).
- The object is gone: remove its document (``removed``; removing what is not there is fine).

So a stale create that arrives after the delete finds nothing and indexes nothing; a delete that
arrives after a re-upload finds the new object and keeps it; a duplicate finds its ETag indexed. The
S3 ``sequencer`` of the newest event announcing the indexed ETag is stored with the document for
diagnosis; decisions rest on the current state, since a sequencer knows nothing of events in flight.

Concurrent invocations: every write is checked with a second HEAD once it is done: the object must
still have the ETag just indexed, or still be absent after a removal. If it changed, the message is
retried and the retry brings the index to the newer state. Whoever writes last also checks last, so
the index converges to the bucket. (A conditional write in the index would save that HEAD; the port
has none.)

One batch, one inference: the objects named by all messages of an SQS batch are read and decoded in
parallel (S3 and Pillow release the GIL), embedded in one ``Embedder.embed`` call, and written with one
bulk upsert and one bulk delete.

Failures: a permanent one (invalid or unsupported image, too large, access denied) is recorded in the
``FailureLog`` (key, ETag, reason, time) and acknowledged; if the object's older content was indexed,
that document is removed, so search never shows a vector of content the object no longer has. A
transient one (S3 or the index unavailable, the object changing while it was read or indexed, a write
the index still refused after the adapter's own retries) marks the message for retry: SQS redelivers
only those, and the dead-letter queue catches what keeps failing. An index refusing one of our own
documents for good would be a bug, not bad input, which is why it goes the DLQ way too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from PIL import Image

from simsearch.errors import (
    ImageTooLargeError,
    InvalidNotificationError,
    InvalidVectorError,
    NotFoundError,
    SimsearchError,
)
from simsearch.ids import image_id_for
from simsearch.index.port import (
    Document,
    FailureLog,
    FailureRecord,
    ImageMetadata,
    Vector,
    VectorIndex,
    WriteResult,
)
from simsearch.labels import label_for
from simsearch.notifications import newest_sequencer, parse_message
from simsearch.preprocess import DecodedImage, ImageLimits, decode_image

if TYPE_CHECKING:
    from simsearch.embedder import Embedder
    from simsearch.settings import Settings
    from simsearch.storage import ImageStore, StoredObject

OutcomeKind = Literal["indexed", "removed", "unchanged", "skipped", "failed", "retry"]

QUERY_UPLOAD = "query_upload"
"""Skip reason: the key is under ``Settings.query_upload_prefix``, where the query API puts uploads."""

CHANGED_DURING_INGESTION = "changed_during_ingestion"
"""Retry reason: the object changed between our reads and the check after our write."""

INDEX_WRITE_FAILED = "index_write_failed"
"""Retry reason: the index did not accept this document, after the adapter's own retries."""

DEFAULT_WORKERS = 10  # one per message of a full SQS batch: HEAD, GET and decode overlap

_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    """One queue message as the service needs it: its id (for the batch response) and its body."""

    message_id: str
    body: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Change:
    """``s3://bucket/key`` may have changed; ``etag`` and ``sequencer`` are what a notification said."""

    bucket: str
    key: str
    etag: str | None = None
    sequencer: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyOutcome:
    """What ingestion did for one object: ``reason`` is an error code (failed, retry) or a skip reason."""

    bucket: str
    key: str
    kind: OutcomeKind
    reason: str = ""
    detail: str = ""
    etag: str | None = None


@dataclass(frozen=True, kw_only=True)
class BatchReport:
    """The outcome of one batch: per object, and which messages must come back (``retry``).

    ``rejected`` maps the ids of unreadable messages to why (acknowledged: redelivery would not help);
    ``ignored`` counts test events and event kinds with nothing to do (restore, tagging, ...).
    """

    outcomes: tuple[KeyOutcome, ...]
    retry: frozenset[str]
    rejected: Mapping[str, str] = field(default_factory=dict)
    ignored: int = 0


@dataclass(frozen=True, slots=True)
class _Target:
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


@dataclass(frozen=True, slots=True)
class _Present:
    """An object that exists, and the document the index holds for its key (None if none)."""

    target: _Target
    obj: StoredObject
    indexed: Document | None


@dataclass(frozen=True, slots=True)
class _Loaded:
    present: _Present
    image: DecodedImage
    sha256: str


@dataclass(frozen=True, slots=True)
class _Write:
    """One document to upsert, or (``document`` None) to remove, and what must hold afterwards.

    ``expect_etag`` is the ETag the object must still have once the write is done (None: it must
    still be absent); ``done`` is the outcome to report when it does.
    """

    target: _Target
    expect_etag: str | None
    document: Document | None
    done: KeyOutcome


@dataclass
class _Plan:
    """Outcomes decided so far, and the writes still to make, for one batch."""

    outcomes: list[KeyOutcome] = field(default_factory=list)
    writes: list[_Write] = field(default_factory=list)

    def add(self, step: KeyOutcome | _Write) -> None:
        if isinstance(step, KeyOutcome):
            self.outcomes.append(step)
        else:
            self.writes.append(step)


class IngestionService:
    """Keeps the vector index in step with an image bucket (see the module docstring)."""

    def __init__(
        self,
        *,
        images: ImageStore,
        embedder: Embedder,
        index: VectorIndex,
        failures: FailureLog,
        limits: ImageLimits,
        query_upload_prefix: str,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        self._images = images
        self._embedder = embedder
        self._index = index
        self._failures = failures
        self._limits = limits
        self._query_upload_prefix = query_upload_prefix
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")

    def ingest(self, messages: Sequence[Message]) -> BatchReport:
        """Handle one SQS batch of S3 notifications; a message is retried only if its own work failed."""
        announced: dict[str, list[Change]] = {}
        rejected: dict[str, str] = {}
        ignored = 0
        for message in messages:
            try:
                notification = parse_message(message.body)
            except InvalidNotificationError as error:
                rejected[message.message_id] = str(error)
                continue
            relevant = [event for event in notification.events if event.kind != "other"]
            ignored += int(notification.is_test) + len(notification.events) - len(relevant)
            announced[message.message_id] = [
                Change(bucket=event.bucket, key=event.key, etag=event.etag, sequencer=event.sequencer)
                for event in relevant
            ]
        outcomes = self.sync([change for changes in announced.values() for change in changes])
        failed_keys = {(outcome.bucket, outcome.key) for outcome in outcomes if outcome.kind == "retry"}
        retry = frozenset(
            message_id
            for message_id, changes in announced.items()
            if any((change.bucket, change.key) in failed_keys for change in changes)
        )
        return BatchReport(outcomes=tuple(outcomes), retry=retry, rejected=rejected, ignored=ignored)

    def sync(self, changes: Sequence[Change]) -> list[KeyOutcome]:
        """Bring the index in line with the current state of every key in ``changes``; one outcome per key."""
        plan = _Plan()
        wanted: list[_Target] = []
        for target in _targets(changes):
            if self._is_query_upload(target.key):
                plan.add(target.outcome("skipped", reason=QUERY_UPLOAD))
            else:
                wanted.append(target)
        present: list[_Present] = []
        for found in self._map(self._look, wanted):
            if isinstance(found, _Present):
                present.append(found)
            else:
                plan.add(found)
        self._plan_indexing(present, plan)
        return plan.outcomes + self._apply(plan.writes)

    def _is_query_upload(self, key: str) -> bool:
        return bool(self._query_upload_prefix) and key.startswith(self._query_upload_prefix)

    def _look(self, target: _Target) -> _Present | KeyOutcome | _Write:
        """HEAD the object; if it is there, fetch what the index holds for it."""
        try:
            obj = self._images.head(target.bucket, target.key)
        except NotFoundError:
            return _Write(target=target, expect_etag=None, document=None, done=target.outcome("removed"))
        except SimsearchError as error:
            return self._failure(target, error, etag=None)
        try:
            return _Present(target=target, obj=obj, indexed=self._indexed(target))
        except SimsearchError as error:
            return self._failure(target, error, etag=obj.etag)

    def _indexed(self, target: _Target) -> Document | None:
        try:
            return self._index.get(target.image_id)
        except NotFoundError:
            return None

    def _plan_indexing(self, present: list[_Present], plan: _Plan) -> None:
        """Decide each existing object's fate: unchanged, refused, or read, embedded and written."""
        to_load: list[_Present] = []
        for item in present:
            if self._is_unchanged(item):
                plan.add(item.target.outcome("unchanged", etag=item.obj.etag))
            elif item.obj.size > self._limits.max_bytes:
                too_large = ImageTooLargeError(
                    f"the object is {item.obj.size} bytes; the limit is {self._limits.max_bytes} bytes"
                )
                plan.add(self._give_up(item, too_large))
            else:
                to_load.append(item)
        loaded: list[_Loaded] = []
        for item, result in zip(to_load, self._map(self._load, to_load), strict=True):
            if isinstance(result, _Loaded):
                loaded.append(result)
            else:
                plan.add(self._give_up(item, result))
        for each, vector in zip(loaded, self._embed(loaded), strict=True):
            if isinstance(vector, SimsearchError):
                plan.add(self._give_up(each.present, vector))
            else:
                plan.add(self._upsert(each, vector))

    def _is_unchanged(self, item: _Present) -> bool:
        """The index holds this very content for this model, with the label the object has now."""
        if item.indexed is None:
            return False
        stored = item.indexed.metadata
        return (
            stored.etag == item.obj.etag
            and stored.model_id == self._embedder.model_id
            and stored.label == label_for(item.obj.key, item.obj.metadata)
        )

    def _load(self, item: _Present) -> _Loaded | SimsearchError:
        """Read exactly the version HEAD saw, and decode it."""
        try:
            data = self._images.read(item.obj)
            image = decode_image(data, limits=self._limits)
        except SimsearchError as error:
            return error
        return _Loaded(present=item, image=image, sha256=hashlib.sha256(data).hexdigest())

    def _embed(self, loaded: list[_Loaded]) -> list[Vector | SimsearchError]:
        """All images in one inference call; if the model fails one of them, find which, one by one."""
        images = [item.image.rgb for item in loaded]
        if not images:
            return []
        try:
            return list(self._embedder.embed(images))
        except InvalidVectorError:
            return [self._embed_one(image) for image in images]

    def _embed_one(self, image: Image.Image) -> Vector | SimsearchError:
        try:
            vector: Vector = self._embedder.embed([image])[0]
        except InvalidVectorError as error:
            return error
        return vector

    def _upsert(self, item: _Loaded, vector: Vector) -> _Write:
        target, obj = item.present.target, item.present.obj
        metadata = ImageMetadata(
            bucket=obj.bucket,
            key=obj.key,
            label=label_for(obj.key, obj.metadata),
            etag=obj.etag,
            content_sha256=item.sha256,
            content_type=_content_type(item.image, obj),
            model_id=self._embedder.model_id,
            width=item.image.width,
            height=item.image.height,
            bytes=obj.size,
            indexed_at=datetime.now(UTC),
            sequencer=target.sequencer_for(obj.etag),
        )
        document = Document(image_id=target.image_id, vector=vector, metadata=metadata)
        return _Write(
            target=target,
            expect_etag=obj.etag,
            document=document,
            done=target.outcome("indexed", etag=obj.etag),
        )

    def _give_up(self, item: _Present, error: SimsearchError) -> KeyOutcome | _Write:
        """Retry a transient failure; record a permanent one and remove the object's stale document."""
        if isinstance(error, NotFoundError):  # gone or replaced since HEAD: the retry sees the new state
            return item.target.outcome("retry", reason=CHANGED_DURING_INGESTION, detail=str(error))
        recorded = self._failure(item.target, error, etag=item.obj.etag)
        if recorded.kind == "retry" or item.indexed is None:
            return recorded
        return _Write(target=item.target, expect_etag=item.obj.etag, document=None, done=recorded)

    def _failure(self, target: _Target, error: SimsearchError, *, etag: str | None) -> KeyOutcome:
        """A retry outcome for a transient error; a permanent one is recorded in the failure log first."""
        if error.retryable:
            return target.outcome("retry", reason=error.code, detail=str(error), etag=etag)
        record = FailureRecord(
            key=target.key, etag=etag, reason_code=error.code, message=str(error), at=datetime.now(UTC)
        )
        try:
            self._failures.record(record)
        except SimsearchError as log_error:
            if not log_error.retryable:
                raise
            detail = f"{error.code} could not be recorded: {log_error}"
            return target.outcome("retry", reason=log_error.code, detail=detail, etag=etag)
        return target.outcome("failed", reason=error.code, detail=str(error), etag=etag)

    def _apply(self, writes: list[_Write]) -> list[KeyOutcome]:
        """One bulk upsert, one bulk delete, then check every write that went through."""
        documents = [write.document for write in writes if write.document is not None]
        upserts = [write for write in writes if write.document is not None]
        removals = [write for write in writes if write.document is None]
        upserted, not_upserted = self._send(upserts, lambda: self._index.upsert(documents))
        removed, not_removed = self._send(
            removals, lambda: self._index.delete([write.target.image_id for write in removals])
        )
        return not_upserted + not_removed + self._map(self._check, upserted + removed)

    def _send(
        self, writes: list[_Write], send: Callable[[], WriteResult]
    ) -> tuple[list[_Write], list[KeyOutcome]]:
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

    def _check(self, write: _Write) -> KeyOutcome:
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

    def _map(self, function: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        if len(items) < 2:
            return [function(item) for item in items]
        return list(self._pool.map(function, items))


def _content_type(image: DecodedImage, obj: StoredObject) -> str | None:
    """The MIME type of the format we decoded; the object's header only if Pillow knows none for it."""
    return Image.MIME.get(image.format) or obj.content_type


def _targets(changes: Iterable[Change]) -> list[_Target]:
    """One target per (bucket, key), in first-seen order: a batch may name a key more than once."""
    grouped: dict[tuple[str, str], list[Change]] = {}
    for change in changes:
        grouped.setdefault((change.bucket, change.key), []).append(change)
    return [_Target(bucket, key, tuple(group)) for (bucket, key), group in grouped.items()]


def connect_ingestion(settings: Settings, *, s3_client: Any, threads: int) -> IngestionService:
    """The service ``settings`` describe, its index and failure log created if missing.

    The one place that maps settings to adapters for ingestion, so the Lambda handler and the backfill
    command compose it alike; adapters are imported here, not at module level, as in ``connect_index``.
    Loading the model includes its warm-up run.
    """
    from simsearch.embedder import OnnxEmbedder
    from simsearch.index import connect_failure_log, connect_index
    from simsearch.storage import S3ImageStore

    embedder = OnnxEmbedder.load(settings.model_dir, threads=threads)
    index = connect_index(settings, model_id=embedder.model_id, dim=embedder.dim)
    failures = connect_failure_log(settings)
    index.ensure()
    failures.ensure()
    return IngestionService(
        images=S3ImageStore(s3_client),
        embedder=embedder,
        index=index,
        failures=failures,
        limits=ImageLimits.of(settings),
        query_upload_prefix=settings.query_upload_prefix,
    )
