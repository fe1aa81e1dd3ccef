"""S3 event notifications in SQS messages: read into the changes ingestion takes, outcomes mapped back.

The body of each message is the JSON S3 sent to the queue: either ``{"Records": [...]}`` (in practice
one record per message) or the ``s3:TestEvent`` S3 sends once when the notification is configured.
Powertools' ``S3Event`` data classes read the records; everything not read here (requester, source
IP, ...) is of no use to ingestion. Anything we cannot read raises ``InvalidNotificationError``.

``NotificationBatch`` is the handler's side of a batch: the ``Change``s its messages announce, and
after ``IngestionService.sync`` which messages must come back (those naming a key whose outcome is
``retry``); an unreadable message is acknowledged, since redelivering it would not help.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.data_classes.s3_event import S3EventRecord

from simsearch.errors import InvalidNotificationError
from simsearch.ingestion import Change, KeyOutcome

EventKind = Literal["created", "removed", "other"]

TEST_EVENT = "s3:TestEvent"

_KINDS: dict[str, EventKind] = {
    "ObjectCreated": "created",  # Put, Post, Copy, CompleteMultipartUpload
    "ObjectRemoved": "removed",  # Delete, DeleteMarkerCreated
    "LifecycleExpiration": "removed",  # Delete, DeleteMarkerCreated by a lifecycle rule
}


@dataclass(frozen=True, kw_only=True, slots=True)
class ObjectEvent:
    """One S3 event record: what happened to which object.

    ``key`` is decoded: S3 URL-encodes keys in notifications (``"a b.jpg"`` arrives as ``"a+b.jpg"``).
    ``etag`` and ``size`` are absent from removal events; ``sequencer`` orders the events of one key
    (absent from the events moto produces).
    """

    name: str  # "ObjectCreated:Put", "ObjectRemoved:DeleteMarkerCreated", ...
    bucket: str
    key: str
    etag: str | None = None
    size: int | None = None
    sequencer: str | None = None

    @property
    def kind(self) -> EventKind:
        return _KINDS.get(self.name.split(":", 1)[0], "other")


@dataclass(frozen=True, kw_only=True, slots=True)
class Notification:
    """The content of one queue message: its object events, or none for a test event."""

    events: tuple[ObjectEvent, ...] = ()
    is_test: bool = False


def parse_message(body: str) -> Notification:
    """Read one SQS message body written by S3.

    Raises:
        InvalidNotificationError: the body is not JSON, not an S3 notification, or a record lacks
            the bucket, key or event name.
    """
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as error:
        raise InvalidNotificationError(f"the message body is not JSON: {error}") from error
    if not isinstance(payload, dict):
        raise InvalidNotificationError(f"the message body is JSON {type(payload).__name__}, not an object")
    if payload.get("Event") == TEST_EVENT:
        return Notification(is_test=True)
    if not isinstance(payload.get("Records"), list):
        raise InvalidNotificationError(
            f"the message is not an S3 event notification: it has keys {sorted(payload)[:10]}, "
            "expected 'Records' or an s3:TestEvent"
        )
    try:
        events = tuple(_object_event(record) for record in S3Event(payload).records)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InvalidNotificationError(f"an S3 event record is incomplete or malformed: {error!r}") from error
    return Notification(events=events)


@dataclass(frozen=True, kw_only=True)
class NotificationBatch:
    """One SQS batch of S3 notifications, as ingestion needs it.

    ``announced`` maps each readable message's id to the changes it announces; ``rejected`` maps the
    ids of unreadable ones to why; ``ignored`` counts test events and event kinds with nothing to do
    (restore, tagging, ...).
    """

    announced: Mapping[str, tuple[Change, ...]]
    rejected: Mapping[str, str] = field(default_factory=dict)
    ignored: int = 0

    @classmethod
    def read(cls, messages: Iterable[tuple[str, str]]) -> NotificationBatch:
        """Read ``(message id, body)`` pairs; a message that is no S3 notification is rejected alone."""
        announced: dict[str, tuple[Change, ...]] = {}
        rejected: dict[str, str] = {}
        ignored = 0
        for message_id, body in messages:
            try:
                notification = parse_message(body)
            except InvalidNotificationError as error:
                rejected[message_id] = str(error)
                continue
            relevant = [event for event in notification.events if event.kind != "other"]
            ignored += int(notification.is_test) + len(notification.events) - len(relevant)
            announced[message_id] = tuple(
                Change(bucket=event.bucket, key=event.key, etag=event.etag, sequencer=event.sequencer)
                for event in relevant
            )
        return cls(announced=announced, rejected=rejected, ignored=ignored)

    @property
    def changes(self) -> list[Change]:
        """Every change of the batch, in message order (a key may appear more than once)."""
        return [change for changes in self.announced.values() for change in changes]

    def to_retry(self, outcomes: Iterable[KeyOutcome]) -> frozenset[str]:
        """The ids of the messages that name a key whose outcome is ``retry``: SQS redelivers only those."""
        failed = {(outcome.bucket, outcome.key) for outcome in outcomes if outcome.kind == "retry"}
        return frozenset(
            message_id
            for message_id, changes in self.announced.items()
            if any((change.bucket, change.key) in failed for change in changes)
        )


def _object_event(record: S3EventRecord) -> ObjectEvent:
    if record.event_source != "aws:s3":
        raise ValueError(f"eventSource is {record.event_source!r}, not 'aws:s3'")
    obj = record.s3.get_object
    size = obj.get("size")
    return ObjectEvent(
        name=record.event_name,
        bucket=record.s3.bucket.name,
        key=unquote_plus(obj.key),
        etag=obj.etag or None,
        size=None if size is None else int(size),
        sequencer=_checked_sequencer(obj.get("sequencer")),
    )


def _checked_sequencer(sequencer: object) -> str | None:
    if sequencer is None:
        return None
    if not isinstance(sequencer, str) or not sequencer or set(sequencer) - set(string.hexdigits):
        raise ValueError(f"sequencer {sequencer!r} is not a hexadecimal string")
    return sequencer
