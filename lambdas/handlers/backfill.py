"""Step Functions → Lambda: one batch of a backfill's distributed map, synced into one index.

The map lists the bucket (its ``ItemReader``) and hands over batches of objects (``ItemBatcher``) with
the index to fill (``BatchInput.target``). A batch goes through the ingestion of that index alone,
deciding exactly as live ingestion does: an object the index already holds with the same ETag for its
model is ``unchanged``, so running a backfill again, or redriving a failed one, costs HEADs only.
Images that cannot be indexed are recorded in the failure log and counted; a batch with objects to
retry raises ``RetryBatch``, which the map retries with backoff (``infra/reindex.py``), and so does a
batch that could not start for a transient reason (the index or the model store did not answer): any
other error fails the batch for good, and a few of those fail the whole map. A batch that would outlast
the function stops between chunks and asks for a retry too (the map does not retry a timeout), the
objects it indexed counting as unchanged the next time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger

from simsearch import bootstrap
from simsearch.errors import ConfigError, SimsearchError
from simsearch.ingestion import Change
from simsearch.ingestion.time_budget import deadline_in
from simsearch.settings import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from simsearch.ingestion.collection import CollectionIngestion

logger = Logger(service="backfill")


class RetryBatch(Exception):
    """Some objects of the batch failed transiently: the map's retry policy sends the batch again."""


@cache
def service() -> CollectionIngestion:
    """The composition root, once per execution environment."""
    return bootstrap.collection_ingestion(Settings.from_env())


def changes_of(event: Mapping[str, Any], *, bucket: str) -> list[Change]:
    """The batch's objects: keys as listed (``"keys": "plain"``, ListObjectsV2), or as an S3 Inventory's
    CSV holds them (``"url-encoded"``), decoded as S3's event notifications are."""
    encoding = event["BatchInput"].get("keys", "plain")
    if encoding not in ("plain", "url-encoded"):
        raise ConfigError(f"BatchInput.keys is {encoding!r}; expected 'plain' or 'url-encoded'")
    keys = [str(item["Key"]) for item in event["Items"]]
    return [
        Change(bucket=bucket, key=unquote_plus(key) if encoding == "url-encoded" else key) for key in keys
    ]


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """``{"Items": [{"Key": ...}, ...], "BatchInput": {"target": index, "keys": ...}}`` → the batch's
    outcome counts."""
    target = str(event["BatchInput"]["target"])
    changes = changes_of(event, bucket=Settings.from_env().images_bucket)
    try:
        deadline = deadline_in(context.get_remaining_time_in_millis())
        outcomes = service().into(target).sync(changes, deadline=deadline)
    except SimsearchError as error:
        if not error.retryable:
            raise
        raise RetryBatch(f"the batch could not start ({error.code}): {error}") from error
    counts = Counter(outcome.kind for outcome in outcomes)
    for outcome in outcomes:
        if outcome.kind in ("failed", "retry"):
            logger.warning(
                "image not indexed",
                extra={
                    "key": outcome.key,
                    "outcome": outcome.kind,
                    "reason": outcome.reason,
                    "detail": outcome.detail,
                },
            )
    if counts["retry"]:
        raise RetryBatch(
            f"{counts['retry']} of {len(changes)} objects failed transiently or had no time left to start; "
            "retrying the batch"
        )
    return {"target": target, "counts": dict(counts)}
