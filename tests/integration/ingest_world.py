"""The world an ingestion test runs in: a moto bucket that notifies a moto queue, and a view of the index.

Objects are written with boto3, so the S3 notifications the handler reads are the ones moto produces
(keys URL-encoded, its ETags and sizes), received from the queue and wrapped as Lambda wraps them
(``localmode.harness.UploadsQueue``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from localmode.cloud import LocalCloud
from localmode.harness import BATCH_SIZE, UploadsQueue
from simsearch.errors import NotFoundError
from simsearch.ids import image_id_for
from simsearch.index.port import Document, FailureLog, FailureRecord, VectorIndex

BUCKET = "images"


@dataclass
class Uploads:
    """The bucket notifying the queue of ``ObjectCreated:*`` and ``ObjectRemoved:*``, as infra sets it up."""

    s3: Any
    bucket: str
    queue: UploadsQueue

    @classmethod
    def of(cls, cloud: LocalCloud, *, versioned: bool = False) -> Uploads:
        s3 = cloud.client("s3")
        if versioned:
            s3.put_bucket_versioning(Bucket=cloud.bucket, VersioningConfiguration={"Status": "Enabled"})
        return cls(s3=s3, bucket=cloud.bucket, queue=UploadsQueue(cloud))

    def put(self, key: str, data: bytes, **extra: Any) -> str:
        """Upload ``data``; returns the unquoted ETag. ``extra`` goes to ``put_object`` (``Metadata=``...)."""
        response = self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)
        return str(response["ETag"]).strip('"')

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)

    def messages(self) -> list[dict[str, Any]]:
        """Take every message waiting in the queue, oldest first; tests redeliver them as they see fit."""
        return self.queue.drain()

    def event(self) -> dict[str, Any]:
        """One Lambda SQS event with every waiting message (at most a batch)."""
        messages = self.messages()
        assert len(messages) <= BATCH_SIZE, f"{len(messages)} messages do not fit in one batch"
        return self.queue.event(messages)

    def events(self) -> Iterator[dict[str, Any]]:
        """Lambda SQS events of up to ``BATCH_SIZE`` messages, until the queue is empty."""
        messages = self.messages()
        for start in range(0, len(messages), BATCH_SIZE):
            yield self.queue.event(messages[start : start + BATCH_SIZE])


@dataclass
class IndexView:
    """Reads what ingestion wrote, through the same port, in whichever store the settings chose."""

    index: VectorIndex
    failure_log: FailureLog
    refresh: Callable[[], None]  # makes recent writes visible to count() and searches

    def document(self, key: str, *, bucket: str = BUCKET) -> Document | None:
        try:
            return self.index.get(image_id_for(bucket, key))
        except NotFoundError:
            return None

    def count(self) -> int:
        self.refresh()
        return self.index.count()

    def failures(self) -> list[FailureRecord]:
        self.refresh()
        return self.failure_log.recent(100)

    def failure_of(self, key: str) -> FailureRecord:
        (record,) = [failure for failure in self.failures() if failure.key == key]
        return record


def failed_ids(response: dict[str, Any]) -> set[str]:
    """The message ids a partial batch response asks SQS to redeliver."""
    return {item["itemIdentifier"] for item in response["batchItemFailures"]}


def message_ids(event: dict[str, Any]) -> list[str]:
    return [record["messageId"] for record in event["Records"]]


def only(event: dict[str, Any], ids: Sequence[str] | set[str]) -> dict[str, Any]:
    """The same event with only the records whose message id is in ``ids`` (a redelivery)."""
    return {"Records": [record for record in event["Records"] if record["messageId"] in ids]}


def event_names(event: dict[str, Any]) -> list[str]:
    """The event names inside an event's S3 notifications, in order (``"ObjectCreated:Put"``...)."""
    names: list[str] = []
    for record in event["Records"]:
        body = json.loads(record["body"])
        names += [inner["eventName"] for inner in body.get("Records", [])] or [body.get("Event", "?")]
    return names


def emitted_metrics(stdout: str) -> dict[str, float]:
    """The metric values in the CloudWatch EMF lines Powertools printed."""
    values: dict[str, float] = {}
    for line in stdout.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for definition in blob["_aws"]["CloudWatchMetrics"]:
            for metric in definition["Metrics"]:
                value = blob[metric["Name"]]
                amount = sum(value) if isinstance(value, list) else value
                values[metric["Name"]] = values.get(metric["Name"], 0) + amount
    return values
