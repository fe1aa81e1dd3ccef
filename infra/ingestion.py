"""Ingestion: uploads and deletes in the bucket reach the index through a queue, in batches."""

from __future__ import annotations

from dataclasses import dataclass

import jsii
from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk.aws_lambda_event_sources import SqsEventSource
from aws_cdk.interfaces import aws_s3 as s3_interfaces
from constructs import Construct

from infra.config import DeploymentConfig
from infra.functions import FunctionSpec, acknowledge_basic_execution_role, python_function
from infra.governance import acknowledge
from infra.image_store import ImageStore
from infra.network import Network
from infra.packaging import INGEST_HANDLER
from simsearch.delivery import MAX_RECEIVES, NOTIFIED_EVENTS
from simsearch.settings import Settings

BATCHING_WINDOW = Duration.seconds(5)


@dataclass(frozen=True, kw_only=True)
class IngestionProps:
    config: DeploymentConfig
    settings: Settings
    code: lambda_.Code
    store: ImageStore
    network: Network | None


class Ingestion(Construct):
    """Bucket events wait in a queue and are embedded in batches; what keeps failing lands in a DLQ.

    Created and removed objects both notify (ingestion deletes vectors of removed images). The queue's
    visibility timeout is six function timeouts plus the batching window, as the SQS event source guide
    advises, so a message is never redelivered while a slow batch still works on it. The event source's
    maximum concurrency, and in prod a matching reserved concurrency, bound the load on the domain.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: IngestionProps) -> None:
        super().__init__(scope, construct_id)
        config = props.config
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        acknowledge(self.dead_letters, "AwsSolutions-SQS3", "this queue is the dead-letter queue of Uploads")
        uploads = sqs.Queue(
            self,
            "Uploads",
            encryption=sqs.QueueEncryption.SQS_MANAGED,  # S3 can notify SSE-SQS queues, not aws/sqs-KMS ones
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(
                6 * config.ingest_timeout_s + int(BATCHING_WINDOW.to_seconds())
            ),
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dead_letters, max_receive_count=MAX_RECEIVES),
        )
        for event in NOTIFIED_EVENTS:
            props.store.bucket.add_event_notification(s3.EventType[event], _NotifiedQueue(uploads))
        self._acknowledge_notifications_handler()
        self.function = python_function(
            self,
            "Handler",
            spec=FunctionSpec(
                handler=INGEST_HANDLER,
                description="Embeds uploaded images and writes their vectors to the index",
                memory_mb=config.ingest_memory_mb,
                timeout=Duration.seconds(config.ingest_timeout_s),
                environment=props.settings.to_env(),
                reserved_concurrency=config.ingest_reserved_concurrency,
            ),
            code=props.code,
            config=config,
            network=props.network,
        )
        self.function.add_event_source(
            SqsEventSource(
                uploads,
                batch_size=config.ingest_batch,
                max_batching_window=BATCHING_WINDOW,
                max_concurrency=config.ingest_max_concurrency,
                report_batch_item_failures=True,
            )
        )
        props.store.grant_read(self.function, why="ingestion reads whichever object was uploaded: any key")

    def _acknowledge_notifications_handler(self) -> None:
        """CDK configures bucket notifications with one singleton function per stack."""
        stack = Stack.of(self)
        for child in stack.node.children:
            if child.node.id.startswith("BucketNotificationsHandler"):
                acknowledge_basic_execution_role(child, vpc=False)


@jsii.implements(s3.IBucketNotificationDestination)
class _NotifiedQueue:
    """``s3n.SqsDestination``, with the account in the grant as well as the bucket.

    CDK's destination lets S3 send on behalf of the bucket ARN alone; bucket names are global, so AWS's
    confused-deputy advice for S3 event notifications adds ``aws:SourceAccount``, the bucket owner.
    """

    def __init__(self, queue: sqs.IQueue) -> None:
        self._queue = queue

    def bind(
        self, scope: Construct, bucket: s3_interfaces.IBucketRef
    ) -> s3.BucketNotificationDestinationConfig:
        conditions = {
            "ArnLike": {"aws:SourceArn": bucket.bucket_ref.bucket_arn},
            "StringEquals": {"aws:SourceAccount": Stack.of(scope).account},
        }
        self._queue.grant_send_messages(iam.ServicePrincipal("s3.amazonaws.com", conditions=conditions))
        return s3.BucketNotificationDestinationConfig(
            arn=self._queue.queue_arn,
            type=s3.BucketNotificationDestinationType.QUEUE,
            dependencies=[self._queue],  # the queue policy exists before S3 tests the destination
        )
