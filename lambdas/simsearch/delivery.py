"""How bucket changes reach ingestion: which S3 events notify the uploads queue, how often one is tried.

Standard library only: the CDK app (``infra/ingestion.py``) wires the bucket and the queue with these
values and the in-process deployment (``localmode.cloud``) wires moto's alike, so local mode,
evaluation, benchmarks and tests deliver exactly what AWS delivers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

NOTIFIED_EVENTS: Final[Mapping[str, str]] = {
    "OBJECT_CREATED": "s3:ObjectCreated:*",
    "OBJECT_REMOVED": "s3:ObjectRemoved:*",
}
"""The bucket events the uploads queue hears of: ``aws_cdk.aws_s3.EventType`` member -> S3's event name.
Removals notify too: ingestion deletes the vectors of removed images."""

MAX_RECEIVES: Final = 5
"""Receives before a message moves to the dead-letter queue (AWS's advice for Lambda consumers: a
throttled receive counts as one too)."""
