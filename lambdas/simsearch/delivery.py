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

INGEST_BATCH_SIZE: Final = 50
"""Messages per ingest invocation with a model as fast as MobileNetV2: local mode's, and a deployment's
(the event source's ``BatchSize``) unless ``ingest_batch_size`` says otherwise.

Each invocation pays its round trips once, whatever its size: before the first image can be embedded,
an index look-up and the GETs; after the last, a bulk write and the check after writing (~0.1 s at the
latencies ``make bench-ingest`` models). Inside an invocation the pipeline hides the rest behind
inference, chunk by chunk, so the larger the batch, the closer ingestion runs to the model's own speed:
ten MobileNetV2 images embed in ~0.15 s, fifty in ~0.7 s. A standard queue allows 10,000 messages once a
batching window is set (the uploads queue has one)."""

SLOW_MODEL_INGEST_BATCH_SIZE: Final = 10
"""The same for a model as slow as ResNet50 (~10x MobileNetV2's time per image): ten already bury the
round trips in a second of inference, and smaller batches spread a burst of uploads over more
concurrent invocations, so each image is searchable sooner."""

RECEIVE_MAX: Final = 10
"""The most messages one SQS ``ReceiveMessage`` returns: a larger batch takes several receives."""
