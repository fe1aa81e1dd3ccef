"""The local SQS event source: long-poll the uploads queue and hand batches to the ingest handler.

It does what Lambda's SQS event source mapping does for ``infra/ingestion.py``: receive up to ten
messages, wrap them in the event Lambda sends (``Records`` of ``aws:sqs`` records), call the handler,
and delete every message the partial batch response does not list in ``batchItemFailures``. A listed
message stays in the queue and comes back after its visibility timeout; so does the whole batch when
the handler raises, and the redrive policy moves what keeps failing to the dead-letter queue.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Metrics

from localmode.api_gateway import LambdaHandler, LocalContext
from localmode.cloud import LocalCloud

logger = logging.getLogger(__name__)

BATCH_SIZE = 10  # the largest batch a standard queue hands to Lambda without a batching window
WAIT_SECONDS = 1  # long polls stay short, so stopping the worker takes at most this long


@dataclass(frozen=True, kw_only=True)
class Settled:
    """One batch after the handler: how many S3 records its acknowledged and its retried messages held."""

    acknowledged_records: int
    retried_messages: int


def lambda_sqs_event(messages: Sequence[Mapping[str, Any]], *, queue_arn: str, region: str) -> dict[str, Any]:
    """The event Lambda's SQS event source sends for messages received with ``AttributeNames=["All"]``."""
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": dict(message.get("Attributes", {})),
                "messageAttributes": _message_attributes(message.get("MessageAttributes", {})),
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
            for message in messages
        ]
    }


def _message_attributes(attributes: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """SQS's ``StringValue``/``DataType`` become the camel-case keys Lambda uses."""
    return {
        name: {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value["DataType"],
        }
        for name, value in attributes.items()
    }


def s3_records_in(body: str) -> int:
    """How many S3 event records a message holds (0 for the ``s3:TestEvent`` or anything else)."""
    try:
        payload = json.loads(body)
    except ValueError:
        return 0
    records = payload.get("Records") if isinstance(payload, dict) else None
    return len(records) if isinstance(records, list) else 0


def discard_unpublished_metrics() -> None:
    """Drop the metrics a handler recorded but did not print.

    Local runs set ``POWERTOOLS_METRICS_DISABLED``; Powertools then skips printing *and* clearing, so its
    shared metric set would grow with every batch and leak into the next invocation that does print.
    """
    Metrics().clear_metrics()


class QueueWorker:
    """Polls ``cloud``'s uploads queue on a thread and runs ``handler`` on each batch until stopped."""

    def __init__(
        self,
        cloud: LocalCloud,
        handler: LambdaHandler,
        *,
        on_settled: Callable[[Settled], None] | None = None,
    ) -> None:
        self._cloud = cloud
        self._handler = handler
        self._on_settled = on_settled
        self._sqs = cloud.client("sqs")
        self._stopping = threading.Event()

    def run(self) -> None:
        """Poll until ``stop``; a failing poll or handler is logged and the loop goes on, as Lambda's does."""
        while not self._stopping.is_set():
            try:
                self.poll_once()
            except Exception:
                logger.exception("the ingest batch failed; its messages return after the visibility timeout")
                self._stopping.wait(WAIT_SECONDS)

    def stop(self) -> None:
        self._stopping.set()

    def poll_once(self) -> Settled | None:
        """Receive one batch and settle it; None when the queue had nothing within ``WAIT_SECONDS``."""
        messages = self._sqs.receive_message(
            QueueUrl=self._cloud.queue_url,
            MaxNumberOfMessages=BATCH_SIZE,
            WaitTimeSeconds=WAIT_SECONDS,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return None
        event = lambda_sqs_event(messages, queue_arn=self._cloud.queue_arn, region=self._cloud.region)
        context = LocalContext(
            aws_request_id=str(uuid.uuid4()),
            function_name="simsearch-ingest-local",
            invoked_function_arn="arn:aws:lambda:local:000000000000:function:simsearch-ingest-local",
            log_group_name="/aws/lambda/simsearch-ingest-local",
        )
        response = self._handler(event, context)
        discard_unpublished_metrics()
        retry = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        done = [message for message in messages if message["MessageId"] not in retry]
        self._delete(done)
        settled = Settled(
            acknowledged_records=sum(s3_records_in(message["Body"]) for message in done),
            retried_messages=len(retry),
        )
        if self._on_settled is not None:
            self._on_settled(settled)
        return settled

    def _delete(self, messages: Sequence[Mapping[str, Any]]) -> None:
        if not messages:
            return
        entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)]
        failed = self._sqs.delete_message_batch(QueueUrl=self._cloud.queue_url, Entries=entries).get("Failed")
        if failed:
            logger.warning(
                "could not delete %d processed messages; they will be processed again", len(failed)
            )


@contextmanager
def running(worker: QueueWorker) -> Iterator[QueueWorker]:
    """Run ``worker`` on a background thread until the block ends (the current batch finishes first)."""
    thread = threading.Thread(target=worker.run, name="ingest-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join()
