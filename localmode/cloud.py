"""The AWS side of ``infra/ingestion.py`` on this machine: moto's bucket, queues and notification.

The resources are configured as the CDK app configures them, so uploads reach the ingest handler the
way they do in AWS: the bucket notifies the uploads queue of every created and removed object (one
queue configuration per event type, as CDK writes them), and the queue hands a message that keeps
failing to a dead-letter queue after ``MAX_RECEIVES`` receives. Both values come from
``simsearch.delivery``, which the CDK app reads too; ``tests/infra`` checks the synthesized template
against ``notification_configuration``, since the constructs themselves need jsii.

The visibility timeout is the one intended difference: AWS waits six function timeouts before a
retried message comes back; locally a retry comes back after ``VISIBILITY_TIMEOUT_S``.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from localmode.ports import ensure_free
from simsearch.delivery import MAX_RECEIVES, NOTIFIED_EVENTS

VISIBILITY_TIMEOUT_S = 30
UPLOADS_QUEUE = "uploads"
DEAD_LETTERS_QUEUE = "uploads-dead-letters"
MOTO_ROLE = "moto's S3 and SQS server"

CREDENTIALS = {  # moto accepts any; these keep boto3 from looking for (and finding) real ones
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_SESSION_TOKEN": "local",
}


def notification_configuration(queue_arn: str) -> dict[str, Any]:
    """The bucket's ``NotificationConfiguration``: what CDK's ``add_event_notification`` calls produce."""
    events = NOTIFIED_EVENTS.values()
    return {"QueueConfigurations": [{"QueueArn": queue_arn, "Events": [event]} for event in events]}


@dataclass(frozen=True, kw_only=True)
class LocalCloud:
    """The moto endpoint and the resources on it; ``env`` is what a boto3 client needs to reach them.

    An empty ``endpoint`` is moto in this process (``mock_aws()``), which boto3 reaches without one.
    """

    endpoint: str
    region: str
    bucket: str
    queue_url: str
    queue_arn: str
    dead_letters_url: str

    @property
    def env(self) -> dict[str, str]:
        """Credentials, region and ``AWS_ENDPOINT_URL``, which every boto3 client created after honours."""
        endpoint = {"AWS_ENDPOINT_URL": self.endpoint} if self.endpoint else {}
        return {**CREDENTIALS, "AWS_DEFAULT_REGION": self.region, **endpoint}

    def client(self, service: str, *, config: Config | None = None) -> Any:
        """A boto3 client for ``service`` on this endpoint, whatever the process environment says."""
        return boto3.client(
            service,
            config=config,
            endpoint_url=self.endpoint or None,
            region_name=self.region,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=CREDENTIALS["AWS_SESSION_TOKEN"],
        )


@contextmanager
def moto_server(*, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """moto's S3/SQS server on a background thread (``port=0``: any free port); yields its URL.

    One at a time per process: moto keeps its resources in the process, so a second server would share
    (and this one resets) the first one's bucket and queues.
    """
    from moto.server import ThreadedMotoServer  # moto takes ~0.4 s to import; only `serve` needs it

    ensure_free(host, port, role=MOTO_ROLE)  # moto binds on its own thread, and would leave us waiting
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request at INFO
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    try:
        bound_host, bound_port = server.get_host_and_port()
        endpoint = f"http://{bound_host}:{bound_port}"
        # moto's state belongs to the process, not the server: start from none, as a new process does
        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")).close()
        yield endpoint
    finally:
        server.stop()


def provision(endpoint: str, *, bucket: str, region: str, notifying: bool = True) -> LocalCloud:
    """Create the bucket, the queues and the notification on ``endpoint``, as the CDK app does in AWS.

    ``endpoint`` empty: in this process, where moto's ``mock_aws()`` must be active. ``notifying=False``
    leaves the notification to ``notify``, so objects can be put back first without announcing them.
    """
    unconfigured = LocalCloud(
        endpoint=endpoint, region=region, bucket=bucket, queue_url="", queue_arn="", dead_letters_url=""
    )
    sqs, s3 = unconfigured.client("sqs"), unconfigured.client("s3")
    dead_letters_url = sqs.create_queue(QueueName=DEAD_LETTERS_QUEUE)["QueueUrl"]
    redrive = {"deadLetterTargetArn": _queue_arn(sqs, dead_letters_url), "maxReceiveCount": str(MAX_RECEIVES)}
    queue_url = sqs.create_queue(
        QueueName=UPLOADS_QUEUE,
        Attributes={"VisibilityTimeout": str(VISIBILITY_TIMEOUT_S), "RedrivePolicy": json.dumps(redrive)},
    )["QueueUrl"]
    s3.create_bucket(Bucket=bucket)
    cloud = LocalCloud(
        endpoint=endpoint,
        region=region,
        bucket=bucket,
        queue_url=queue_url,
        queue_arn=_queue_arn(sqs, queue_url),
        dead_letters_url=dead_letters_url,
    )
    if notifying:
        notify(cloud)
    return cloud


def notify(cloud: LocalCloud) -> None:
    """From now on, every object created in or removed from the bucket notifies the uploads queue."""
    cloud.client("s3").put_bucket_notification_configuration(
        Bucket=cloud.bucket, NotificationConfiguration=notification_configuration(cloud.queue_arn)
    )


def _queue_arn(sqs: Any, queue_url: str) -> str:
    attributes: Mapping[str, str] = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]
    return attributes["QueueArn"]
