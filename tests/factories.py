"""Events and contexts as AWS hands them to our handlers, for tests that call ``handler(event, context)``.

The shapes follow the AWS documentation ("Event message structure" for S3, "Using Lambda with Amazon
SQS" for the SQS event); keys in S3 notifications arrive URL-encoded (``"a b.jpg"`` -> ``"a+b.jpg"``).
Most ingestion tests take their S3 notifications from moto instead (``sqs_event_from_messages``), so
the decoding is tested on what a real producer writes; these builders cover what moto does not send
(sequencers, ``DeleteMarkerCreated``).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

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
    return {
        "messageId": message_id or str(uuid.uuid4()),
        "receiptHandle": f"AQEB{uuid.uuid4().hex}",
        "body": text,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1735787045678",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1735787045679",
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(text.encode()).hexdigest(),  # SQS's own checksum of the body
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": REGION,
    }


def sqs_event(*records: Mapping[str, Any]) -> dict[str, Any]:
    """A Lambda SQS event of ``sqs_record``s."""
    return {"Records": list(records)}


def sqs_event_from_messages(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The Lambda event for messages received with boto3 ``receive_message`` (moto or real SQS)."""
    return sqs_event(*(sqs_record(message["Body"], message_id=message["MessageId"]) for message in messages))


@dataclass(frozen=True)
class FakeLambdaContext:
    """The attributes of ``LambdaContext`` that Powertools reads."""

    function_name: str = "ingest"
    memory_limit_in_mb: int = 2048
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:ingest"
    aws_request_id: str = "52fdfc07-2182-154f-163f-5f0f9a621d72"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def lambda_context(**overrides: Any) -> Any:
    """A context for ``handler(event, lambda_context())``; typed ``Any`` like the real one at the edge."""
    return FakeLambdaContext(**overrides)
