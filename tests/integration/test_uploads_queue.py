"""The uploads queue as the local stack receives it: batches as large as the deployed event source's.

SQS returns at most ten messages per receive; Lambda's event source gathers larger batches over several
(within its batching window). ``UploadsQueue.receive`` must do the same against moto's queue.
"""

from __future__ import annotations

import json
from urllib.parse import unquote_plus

import pytest
from botocore.exceptions import ClientError

from localmode.cloud import LocalCloud
from simsearch.delivery import INGEST_BATCH_SIZE, RECEIVE_MAX
from tests.integration.ingest_world import Uploads


def test_one_receive_of_sqs_gives_at_most_receive_max_messages(cloud: LocalCloud) -> None:
    sqs = cloud.client("sqs")
    with pytest.raises(ClientError, match="MaxNumberOfMessages"):
        sqs.receive_message(QueueUrl=cloud.queue_url, MaxNumberOfMessages=RECEIVE_MAX + 1)


def test_a_receive_gathers_the_deployed_batch_over_several_sqs_receives(uploads: Uploads) -> None:
    uploads.messages()  # the s3:TestEvent of the set-up
    keys = {f"photos/{n:03d}.jpg" for n in range(INGEST_BATCH_SIZE + 5)}
    for key in sorted(keys):
        uploads.put(key, b"bytes")

    first, second, third = (uploads.queue.receive() for _ in range(3))

    assert INGEST_BATCH_SIZE > RECEIVE_MAX
    assert (len(first), len(second), third) == (INGEST_BATCH_SIZE, 5, [])
    notified = [
        unquote_plus(json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"]) for m in first + second
    ]
    assert sorted(notified) == sorted(keys)  # each upload once
