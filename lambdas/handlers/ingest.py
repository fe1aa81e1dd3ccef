"""SQS → Lambda: S3 notifications in batches through ``IngestionService``; only transient failures retry.

The service decides the whole batch at once (one inference call for all its images), so the handler
reads the batch's notifications (``notifications.NotificationBatch``), syncs every change they name,
and then lets Powertools' ``process_partial_response`` settle each record: the record handler raises
for a message that names a key to retry, and Powertools builds ``batchItemFailures`` from exactly
those. ``raise_on_entire_batch_failure=False`` keeps a batch in which every message must be retried a
normal response listing all of them, not an error. The service is told when the invocation's time runs
out: a batch too large for the time left returns its unstarted keys for redelivery instead of timing out.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes import SQSEvent

from handlers.notifications import NotificationBatch
from simsearch import bootstrap
from simsearch.ingestion import EMBEDDING_REUSED, Ingestion, KeyOutcome
from simsearch.ingestion.time_budget import deadline_in
from simsearch.metrics import (
    EMBEDDINGS_REUSED,
    INGEST_OUTCOME_METRICS,
    METRIC_NAMESPACE,
    NOTIFICATIONS_IGNORED,
    NOTIFICATIONS_REJECTED,
)
from simsearch.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
    from aws_lambda_powertools.utilities.typing import LambdaContext

logger = Logger(service="ingest")
metrics = Metrics(namespace=METRIC_NAMESPACE, service="ingest")
tracer = Tracer(service="ingest")
logging.getLogger("simsearch")  # registered now: the index adapters create their loggers on first import
copy_config_to_registered_loggers(source_logger=logger, include={"simsearch"})  # the core logs JSON too
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class RetryLater(Exception):
    """Raised for a message whose work failed transiently: Powertools reports it for redelivery."""


@cache
def service() -> Ingestion:
    """The composition root, built once per execution environment (the model loads and warms up here)."""
    return bootstrap.ingestion(Settings.from_env())


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    batch = NotificationBatch.read((record.message_id, record.body) for record in SQSEvent(event).records)
    deadline = deadline_in(context.get_remaining_time_in_millis())
    outcomes = service().sync(batch.changes, deadline=deadline)
    _observe(outcomes, batch)
    retry = batch.to_retry(outcomes)

    def settle(record: SQSRecord) -> None:
        if record.message_id in retry:
            raise RetryLater(f"message {record.message_id} failed transiently; SQS will redeliver it")

    return process_partial_response(event=event, record_handler=settle, processor=processor, context=context)


def _observe(outcomes: Sequence[KeyOutcome], batch: NotificationBatch) -> None:
    """One log line per object that did not simply succeed, and a count per outcome."""
    for outcome in outcomes:
        fields = {
            "bucket": outcome.bucket,
            "key": outcome.key,
            "outcome": outcome.kind,
            "etag": outcome.etag,
            "reason": outcome.reason,
        }
        if outcome.kind in ("failed", "retry"):
            logger.warning("image not indexed", extra={**fields, "detail": outcome.detail})
        else:
            logger.info("image processed", extra=fields)
    for message_id, why in batch.rejected.items():
        logger.warning("message is not an S3 notification", extra={"message_id": message_id, "detail": why})
    for kind, count in Counter(outcome.kind for outcome in outcomes).items():
        metrics.add_metric(name=INGEST_OUTCOME_METRICS[kind], unit=MetricUnit.Count, value=count)
    if reused := sum(outcome.reason == EMBEDDING_REUSED for outcome in outcomes):
        metrics.add_metric(name=EMBEDDINGS_REUSED, unit=MetricUnit.Count, value=reused)
    if batch.rejected:
        metrics.add_metric(name=NOTIFICATIONS_REJECTED, unit=MetricUnit.Count, value=len(batch.rejected))
    if batch.ignored:
        metrics.add_metric(name=NOTIFICATIONS_IGNORED, unit=MetricUnit.Count, value=batch.ignored)
