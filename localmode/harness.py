"""The deployment in one process: the real handlers, configured as the CDK app does, fed as AWS feeds them.

``deployed(settings)`` is how local mode, the evaluation, the benchmarks and the tests run the
handlers. It wires a bucket to the uploads queue (``localmode.cloud.provision``, from the constants
``infra/ingestion.py`` reads), sets the functions' environment (``Settings.to_env()``, and the endpoint
and credentials of the S3/SQS stand-in), attaches the model's index as the deployment's bootstrap does
(``bootstrap.attach``), resets both handlers' composition roots, and undoes all of it when the block
ends (the index stays). Inside, ``Deployment.ingest_pending()`` plays Lambda's SQS event source until the
queue is empty, and ``invoke_api(...)`` plays API Gateway for one request.

Where S3 and SQS live is the caller's choice: a ``cloud`` provisioned on a server (moto's, or a proxy
that records the handlers' traffic), or by default moto's ``mock_aws()`` in this process. A block may
nest another ``deployed`` of the same cloud with other settings; leaving it restores the outer one.

This module sits in ``localmode`` because local mode is this deployment plus threads and servers; the
evaluation, the benchmarks and the tests import it from here, and the core never does.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from aws_lambda_powertools import Metrics

from localmode.api_gateway import LambdaHandler, LocalContext, proxy_event
from localmode.cloud import LocalCloud, provision
from simsearch import bootstrap
from simsearch.delivery import INGEST_BATCH_SIZE, RECEIVE_MAX
from simsearch.settings import Settings

logger = logging.getLogger(__name__)

Function = Literal["ingest", "query"]

BATCH_SIZE = INGEST_BATCH_SIZE
"""The most messages Lambda hands the ingest function at once (the deployed event source's batch size)."""

QUIET_POWERTOOLS = {  # local runs print progress, not a JSON log line and an EMF blob per image
    "POWERTOOLS_LOG_LEVEL": "WARNING",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def local_settings(
    *,
    model_dir: Path,
    index_path: Path = Settings.embedded_index_path,
    opensearch_url: str = "",
    bucket: str = "images",
    index_prefix: str = Settings.index_prefix,
    ort_threads: int = Settings.ort_threads,
) -> Settings:
    """Production defaults, except: no request signing for a local OpenSearch, and lucene, which
    every OpenSearch build has (faiss needs native libraries a developer's node may lack)."""
    return Settings(
        model_dir=model_dir,
        images_bucket=bucket,
        opensearch_url=opensearch_url,
        embedded_index_path=index_path,
        opensearch_auth="none",
        engine="lucene",
        index_prefix=index_prefix,
        ort_threads=ort_threads,
    )


@dataclass(frozen=True, kw_only=True)
class Settled:
    """One batch after the handler: the S3 records its acknowledged messages held, the messages retried."""

    acknowledged_records: int
    retried_messages: int
    handler_seconds: float


@dataclass(frozen=True, kw_only=True)
class Drained:
    """What ``ingest_pending`` did: batches, records settled, messages retried and dead-lettered, time."""

    batches: int = 0
    acknowledged_records: int = 0
    retried_messages: int = 0
    dead_lettered: int = 0
    handler_seconds: float = 0.0

    def plus(self, settled: Settled) -> Drained:
        return replace(
            self,
            batches=self.batches + 1,
            acknowledged_records=self.acknowledged_records + settled.acknowledged_records,
            retried_messages=self.retried_messages + settled.retried_messages,
            handler_seconds=self.handler_seconds + settled.handler_seconds,
        )


class UploadsQueue:
    """The uploads queue as Lambda's event source uses it: receive a batch, delete what the handler
    acknowledged, leave the rest to come back."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self._sqs = cloud.client("sqs")

    def receive(self, *, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Up to a batch of messages, received as the event source receives them (every attribute): a
        receive gives at most ``RECEIVE_MAX``, so it receives again, without waiting, until the batch is
        full or the queue has nothing more (the event source's batching window, ended early)."""
        messages: list[dict[str, Any]] = []
        while len(messages) < BATCH_SIZE:
            response = self._sqs.receive_message(
                QueueUrl=self.cloud.queue_url,
                MaxNumberOfMessages=min(RECEIVE_MAX, BATCH_SIZE - len(messages)),
                WaitTimeSeconds=0 if messages else wait_seconds,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = response.get("Messages", [])
            if not received:
                break
            messages += received
        return messages

    def drain(self) -> list[dict[str, Any]]:
        """Every waiting message, oldest first, taken off the queue: callers hand them on as they please."""
        taken: list[dict[str, Any]] = []
        while batch := self.receive():
            self.settle(batch, [])
            taken += batch
        return taken

    def settle(
        self,
        done: Sequence[Mapping[str, Any]],
        retried: Sequence[Mapping[str, Any]],
        *,
        retry_now: bool = False,
    ) -> None:
        """Delete ``done``; ``retried`` come back after the visibility timeout (at once: ``retry_now``)."""
        if done:
            entries = [{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)]
            if self._sqs.delete_message_batch(QueueUrl=self.cloud.queue_url, Entries=entries).get("Failed"):
                logger.warning("could not delete some processed messages; they will be processed again")
        if retried and retry_now:
            entries = [
                {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for n, m in enumerate(retried)
            ]
            self._sqs.change_message_visibility_batch(QueueUrl=self.cloud.queue_url, Entries=entries)

    def dead_letters(self) -> int:
        """How many messages wait in the dead-letter queue."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.cloud.dead_letters_url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def event(self, messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The event Lambda's SQS event source makes of ``messages`` received from this queue."""
        return sqs_event(messages, queue_arn=self.cloud.queue_arn, region=self.cloud.region)


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """The two functions as ``deployed`` configured them, and the bucket and queue they are wired to."""

    settings: Settings
    cloud: LocalCloud
    queue: UploadsQueue
    s3: Any  # a boto3 S3 client on the deployment's endpoint

    def invoke_ingest(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The ingest handler on an SQS ``event``, with a fresh Lambda context."""
        from handlers import ingest

        response = ingest.handler(dict(event), ingest_context())
        discard_unpublished_metrics()
        return dict(response)

    def invoke_query(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The query handler on an API Gateway proxy ``event``, with a fresh Lambda context."""
        from handlers import query

        handler: LambdaHandler = query.handler  # takes a LambdaContext: ours has the same attributes
        return dict(handler(dict(event), LocalContext()))

    def invoke_api(
        self, method: str, target: str, *, body: bytes = b"", headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """``method target`` (path and query string) through API Gateway's proxy integration."""
        pairs = list((headers or {}).items())
        event = proxy_event(method=method, target=target, headers=pairs, body=body, source_ip="127.0.0.1")
        return self.invoke_query(event)

    def ingest_pending(self) -> Drained:
        """Hand every waiting message to the ingest handler in Lambda's batches until the queue is empty.

        A message the handler returns comes back at once (AWS waits out its visibility timeout), and
        after ``MAX_RECEIVES`` receives the queue's redrive policy moves it to the dead-letter queue.
        """
        from handlers import ingest

        drained, before = Drained(), self.queue.dead_letters()
        while messages := self.queue.receive():
            drained = drained.plus(deliver(self.queue, ingest.handler, messages, retry_now=True))
        return replace(drained, dead_lettered=self.queue.dead_letters() - before)

    def upload(self, key: str, data: bytes, **extra: Any) -> str:
        """Put ``data`` at ``key`` (``extra`` goes to ``put_object``); returns the unquoted ETag."""
        response = self.s3.put_object(Bucket=self.cloud.bucket, Key=key, Body=data, **extra)
        return str(response["ETag"]).strip('"')

    def cold_start(self, function: Function) -> float:
        """Build ``function``'s composition root now, as its first invocation would; returns the seconds.

        The ingest function's root loads the model and creates the index, so the API answers at once.
        """
        from handlers import ingest, query

        started = time.perf_counter()
        (ingest.service if function == "ingest" else query.service)()
        return time.perf_counter() - started


@contextmanager
def deployed(
    settings: Settings, *, cloud: LocalCloud | None = None, quiet: bool = False, bootstrap_index: bool = True
) -> Iterator[Deployment]:
    """Configure both handlers with ``settings`` against ``cloud`` (default: moto in this process).

    ``quiet`` turns Powertools' per-image log lines, metrics and traces off, for runs that print progress.
    ``bootstrap_index=False`` configures the functions only, as when a deployed function's settings
    change after the deployment's index bootstrap ran (and the new settings may not reach the index).
    """
    with ExitStack() as stack:
        if cloud is None:
            from moto import mock_aws  # a development dependency, as local mode's server is

            stack.enter_context(mock_aws())
            cloud = provision("", bucket=settings.images_bucket, region=settings.aws_region)
        quieted = QUIET_POWERTOOLS if quiet else {}
        stack.enter_context(environment({**quieted, **cloud.env, **settings.to_env(), "AWS_PROFILE": None}))
        from handlers import ingest, query  # after the environment: Powertools reads it at import

        roots = (ingest.service, query.service)
        stack.callback(_reset, roots)
        _reset(roots)
        if bootstrap_index:
            bootstrap.attach(settings)  # what the deployment's index bootstrap does in AWS
        yield Deployment(settings=settings, cloud=cloud, queue=UploadsQueue(cloud), s3=cloud.client("s3"))


@contextmanager
def environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` for the block (None unsets), as Lambda's function environment."""
    saved = {name: os.environ.get(name) for name in values}
    _apply(values)
    try:
        yield
    finally:
        _apply(saved)


def deliver(
    queue: UploadsQueue,
    handler: LambdaHandler,
    messages: Sequence[Mapping[str, Any]],
    *,
    retry_now: bool = False,
) -> Settled:
    """One batch through ``handler``: delete every message its partial batch response does not list.

    A listed message stays in the queue and comes back after its visibility timeout, or at once with
    ``retry_now``; so does the whole batch when the handler raises.
    """
    started = time.perf_counter()
    response = handler(queue.event(messages), ingest_context())
    seconds = time.perf_counter() - started
    discard_unpublished_metrics()
    retry = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
    done = [message for message in messages if message["MessageId"] not in retry]
    queue.settle(
        done, [message for message in messages if message["MessageId"] in retry], retry_now=retry_now
    )
    return Settled(
        acknowledged_records=sum(s3_records_in(message["Body"]) for message in done),
        retried_messages=len(retry),
        handler_seconds=seconds,
    )


def sqs_event(messages: Sequence[Mapping[str, Any]], *, queue_arn: str, region: str) -> dict[str, Any]:
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


def ingest_context() -> LocalContext:
    """A fresh context of the ingest function, whose timeout is a minute (``DeploymentConfig``'s default)."""
    return LocalContext(function="ingest", timeout_ms=60_000)


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

    Quiet runs set ``POWERTOOLS_METRICS_DISABLED``; Powertools then skips printing *and* clearing, so its
    shared metric set would grow with every batch and leak into the next invocation that does print.
    """
    Metrics().clear_metrics()


def _reset(roots: Sequence[Callable[[], Any]]) -> None:
    """Close the services the handlers built and forget them, so the next call builds them anew."""
    for root in roots:
        if root.cache_info().currsize:  # type: ignore[attr-defined]
            root().close()
        root.cache_clear()  # type: ignore[attr-defined]


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


def _apply(values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
