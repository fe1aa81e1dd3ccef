"""Metric names, in one place: the handlers emit them and the CDK monitoring alarms on them.

Standard library only (the CDK app imports it at synth time).
"""

from __future__ import annotations

from typing import Final

METRIC_NAMESPACE: Final = "Simsearch"
"""The CloudWatch namespace of every metric the functions emit."""

INGEST_OUTCOME_METRICS: Final = {
    "indexed": "ImagesIndexed",
    "removed": "ImagesRemoved",
    "unchanged": "ImagesUnchanged",
    "skipped": "ImagesSkipped",
    "failed": "ImagesFailed",  # permanent: recorded in the failure log, never retried
    "retry": "ImagesRetried",  # transient: the message goes back to the queue
}
"""Ingestion's count per object outcome (``simsearch.ingestion.OutcomeKind``)."""

EMBEDDINGS_REUSED: Final = "EmbeddingsReused"
"""Images indexed with a vector the index already held for their bytes (the embedding cache): no inference."""

NOTIFICATIONS_REJECTED: Final = "NotificationsRejected"
"""Queue messages that were not readable S3 notifications (acknowledged, logged)."""

NOTIFICATIONS_IGNORED: Final = "NotificationsIgnored"
"""Test events and event kinds ingestion has nothing to do for (restore, tagging, ...)."""
