"""Runs of the local stack one after another, and the worker's contract with the queue.

Each test here starts its own stack or moto server: moto keeps one set of resources per process, so
these cannot run beside the module-wide stack of ``test_localmode_stack.py``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import requests

from localmode.cloud import moto_server, provision
from localmode.stack import LocalStack, started
from localmode.worker import QueueWorker
from simsearch.ids import image_id_for
from tests.localmode_world import query_image, stack_config, stack_with

TIMEOUT_S = 30


def test_a_second_run_reuses_the_index_and_finds_every_image_again(
    corpus_dir: Path, model_dir: Path, tmp_path: Path
) -> None:
    """moto forgets the bucket, the index file stays: the re-upload finds each ETag indexed (no inference)."""
    index_path = tmp_path / "index.sqlite"
    with stack_with(corpus_dir, model_dir=model_dir, index_path=index_path) as first:
        before = _indexed_at(first, "photos/china.jpg")
    with stack_with(corpus_dir, model_dir=model_dir, index_path=index_path) as again:
        results = requests.post(
            f"{again.url}/search?k=1",
            data=query_image(corpus_dir, "china"),
            headers={"Content-Type": "image/jpeg"},
            timeout=TIMEOUT_S,
        ).json()["results"]
        assert results[0]["key"] == "photos/china.jpg"
        assert requests.get(str(results[0]["url"]), timeout=TIMEOUT_S).status_code == 200
        assert _indexed_at(again, "photos/china.jpg") == before  # not embedded again


def test_the_stack_stops_cleanly_and_restores_the_environment(model_dir: Path, tmp_path: Path) -> None:
    before = dict(os.environ)
    with started(stack_config(model_dir=model_dir, index_path=tmp_path / "i.sqlite")) as stack:
        url = stack.url
        assert os.environ["AWS_ENDPOINT_URL"] == stack.cloud.endpoint
    assert dict(os.environ) == before
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=2)


class Recorder:
    """A stand-in ingest handler: records each event and asks for a redelivery of chosen messages."""

    def __init__(self, *, retry_body: str) -> None:
        self.events: list[dict[str, Any]] = []
        self.retry_body = retry_body

    def __call__(self, event: dict[str, Any], context: Any) -> Mapping[str, Any]:
        assert context.function_name == "simsearch-ingest-local"
        self.events.append(event)
        failures = [r["messageId"] for r in event["Records"] if r["body"] == self.retry_body]
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failures]}


def test_the_worker_deletes_settled_messages_and_leaves_the_ones_to_retry() -> None:
    with moto_server() as endpoint:
        cloud = provision(endpoint, bucket="images", region="us-east-1")
        sqs = cloud.client("sqs")
        sqs.set_queue_attributes(QueueUrl=cloud.queue_url, Attributes={"VisibilityTimeout": "1"})
        sqs.purge_queue(QueueUrl=cloud.queue_url)  # the s3:TestEvent of the notification set-up
        for body in ("done-1", "retry-me", "done-2"):
            sqs.send_message(QueueUrl=cloud.queue_url, MessageBody=body)
        recorder = Recorder(retry_body="retry-me")
        worker = QueueWorker(cloud, recorder)

        settled = worker.poll_once()
        redelivered = _poll_until_some(worker, recorder)

    assert settled is not None
    assert settled.retried_messages == 1
    [record] = redelivered["Records"]
    assert record["body"] == "retry-me"
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == cloud.queue_arn
    assert record["attributes"]["ApproximateReceiveCount"] == "2"


def _poll_until_some(worker: QueueWorker, recorder: Recorder) -> dict[str, Any]:
    seen = len(recorder.events)
    for _ in range(10):  # each poll waits up to a second; the visibility timeout is one
        if worker.poll_once() is not None:
            break
    assert len(recorder.events) == seen + 1, "the retried message never came back"
    return recorder.events[-1]


def _indexed_at(stack: LocalStack, key: str) -> str:
    image = requests.get(f"{stack.url}/images/{image_id_for(stack.cloud.bucket, key)}", timeout=TIMEOUT_S)
    indexed_at: str = image.json()["indexed_at"]
    return indexed_at
