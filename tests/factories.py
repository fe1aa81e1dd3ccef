"""S3 notifications as S3 writes them, in SQS events as Lambda delivers them, written by hand.

The shapes follow the AWS documentation ("Event message structure" for S3, "Using Lambda with Amazon
SQS" for the SQS event); keys in S3 notifications arrive URL-encoded (``"a b.jpg"`` -> ``"a+b.jpg"``).
Most ingestion tests take their S3 notifications from moto instead (``tests.integration.ingest_world``),
so the decoding is tested on what a real producer writes; these builders cover what moto does not send
(sequencers, ``DeleteMarkerCreated``). The SQS event itself is ``localmode.harness.sqs_event``'s, the
one the local event source sends.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote_plus

from localmode import harness

REGION = "us-east-1"
ACCOUNT = "123456789012"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT}:uploads"


def s3_record(
    event_name: str,
    key: str,
    *,
    bucket: str = "images",
    etag: str | None = None,
    size: int | None = None,
    sequencer: str | None = None,
    version_id: str | None = None,
) -> dict[str, Any]:
    """One S3 event record; ``event_name`` without the ``s3:`` prefix (``"ObjectCreated:Put"``).

    Removal events carry no ``eTag`` or ``size``; pass them only for creations, as S3 does.
    """
    obj: dict[str, Any] = {"key": quote_plus(key)}
    for name, value in (("size", size), ("eTag", etag), ("versionId", version_id), ("sequencer", sequencer)):
        if value is not None:
            obj[name] = value
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": "2025-01-02T03:04:05.678Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.7"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8/IgAtTv8x"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "uploads",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKEXAMPLE"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }


def s3_notification(*records: Mapping[str, Any]) -> dict[str, Any]:
    """The body S3 sends to the queue: ``{"Records": [...]}``."""
    return {"Records": list(records)}


def s3_test_event(bucket: str = "images") -> dict[str, Any]:
    """What S3 sends once when a bucket's notification configuration is saved."""
    return {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2025-01-02T03:04:05.678Z",
        "Bucket": bucket,
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    }


def sqs_record(body: Mapping[str, Any] | str, *, message_id: str | None = None) -> dict[str, Any]:
    """One record of a Lambda SQS event; a mapping ``body`` is serialised as S3 would."""
    text = body if isinstance(body, str) else json.dumps(body)
    received = {
        "MessageId": message_id or str(uuid.uuid4()),
        "ReceiptHandle": f"AQEB{uuid.uuid4().hex}",
        "Body": text,
        "Attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1735787045678",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1735787045679",
        },
        "MD5OfBody": hashlib.md5(text.encode()).hexdigest(),  # SQS's own checksum of the body
    }
    [record] = harness.sqs_event([received], queue_arn=QUEUE_ARN, region=REGION)["Records"]
    return record


def sqs_event(*records: Mapping[str, Any]) -> dict[str, Any]:
    """A Lambda SQS event of ``sqs_record``s."""
    return {"Records": list(records)}
