"""Backfill and re-index on Step Functions: a distributed map over the bucket, then a gate and a switch.

The state machine (its input: ``{"target": "", "prefix": "", "manifest": ""}``, all optional):

1. ``Prepare`` (control function): which index to fill: the one being built by a re-index, else the
   serving one (a plain backfill of what is already in the bucket).
2. ``Backfill``: a distributed map lists the bucket under ``prefix`` (``ItemReader``: ListObjectsV2;
   with ``inventory`` on and a ``manifest`` in the input, ``BackfillFromInventory`` reads the bucket's
   S3 Inventory instead, which S3 writes daily to the reports bucket: no listing of a bucket of
   millions of objects), hands batches of keys with the target index (``ItemBatcher``) to the
   backfill function, at most
   ``backfill_max_concurrency`` at once, retries batches that failed transiently, tolerates
   ``backfill_tolerated_failure_percent`` of batches failing for good, and writes its results to the
   reports bucket (``ResultWriter``). A failed run can be redriven: finished batches are not run again,
   and a batch run twice finds its images indexed already (ingestion skips an unchanged ETag).
3. For a re-index: ``Gate`` (control function), then ``Switch`` when it passes and the profile switches
   by itself (``reindex_auto_switch``); otherwise the run ends ready for ``imgsearch reindex switch``.

``docs/deploy.md`` ("Backfill and re-index") draws the sequence and says which function reads which
index when.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from aws_cdk import Duration, Stack, Token
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.artifacts import Artifacts
from infra.config import DeploymentConfig
from infra.functions import FunctionSpec, logical_id, python_function
from infra.governance import acknowledge
from infra.image_store import ImageStore
from infra.log_groups import log_group
from infra.network import Network
from infra.packaging import BACKFILL_HANDLER, REINDEX_HANDLER
from simsearch.settings import Settings

REPORTS_PREFIX = "backfills"
INVENTORY_PREFIX = "inventory"
"""Where S3 writes the images bucket's inventory in the reports bucket, as
``inventory/<images bucket>/backfill/<date>/manifest.json`` (``imgsearch backfill --inventory``)."""
INVENTORY_ID = "backfill"
RETRIED_ERRORS = ("RetryBatch", "Lambda.TooManyRequestsException")
"""A batch with images that failed transiently (``handlers.backfill.RetryBatch``), or a throttled invoke."""
BATCH_RETRIES = 5
CONTROL_TIMEOUT = Duration.minutes(5)  # the gate's sample searches both indexes a few hundred times at most


@dataclass(frozen=True, kw_only=True)
class ReindexProps:
    config: DeploymentConfig
    settings: Settings
    code: lambda_.Code
    store: ImageStore
    artifacts: Artifacts
    network: Network | None


class Reindex(Construct):
    """The backfill function, the control function and the state machine that drives them."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ReindexProps) -> None:
        super().__init__(scope, construct_id)
        config, environment = props.config, props.settings.to_env()
        self.backfill = python_function(
            self,
            "Backfill",
            spec=FunctionSpec(
                handler=BACKFILL_HANDLER,
                description="Indexes a batch of the bucket's objects into one index (the backfill map)",
                memory_mb=config.ingest_memory_mb,
                timeout=Duration.seconds(config.backfill_timeout_s),
                environment=environment,
            ),
            code=props.code,
            config=config,
            network=props.network,
        )
        props.store.grant_read(self.backfill, why="a backfill reads every object of the bucket")
        props.artifacts.grant_read_models(self.backfill)
        self.control = python_function(
            self,
            "Control",
            spec=FunctionSpec(
                handler=REINDEX_HANDLER,
                description="Re-index steps: prepare, gate, switch, rollback, cleanup, status",
                memory_mb=512,  # reads counts and pointers; embeds nothing
                timeout=CONTROL_TIMEOUT,
                environment=environment,
            ),
            code=props.code,
            config=config,
            network=props.network,
        )
        if config.inventory:
            self._inventory(props)
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(self._definition(props)),
            comment="Backfill the bucket into an index; for a re-index, gate and switch",
            logs=sfn.LogOptions(
                destination=log_group(self, "StateMachineLogs", config=config),
                level=sfn.LogLevel.ALL,
                include_execution_data=False,  # keys and index names only, but they need not be in logs
            ),
            tracing_enabled=True,
        )
        self._acknowledge(props)

    def _definition(self, props: ReindexProps) -> sfn.IChainable:
        config = props.config
        prepare = self._control("Prepare", {"action": "prepare", "input.$": "$"}, result_path="$.prepared")
        listing = self._fill(
            "Backfill",
            props,
            sfn.S3ObjectsItemReader(
                bucket=props.store.bucket, prefix=sfn.JsonPath.string_at("$.prepared.prefix")
            ),
            keys="plain",
        )
        target = {"target.$": "$.prepared.target"}  # the index this run filled, nothing else
        gate = self._control("Gate", {"action": "gate", **target}, result_path="$.gate")
        switch = self._control("Switch", {"action": "switch", **target}, result_path="$.switched")
        refused = sfn.Fail(
            self,
            "GateRefused",
            error="GateRefused",
            cause="the new index may not serve yet: `imgsearch reindex status` says why",
        )
        ready = sfn.Succeed(self, "ReadyToSwitch", comment="`imgsearch reindex switch` serves the new index")
        passed = sfn.Choice(self, "Passed").when(
            sfn.Condition.boolean_equals("$.gate.passed", False), refused
        )
        passed.otherwise(switch.next(sfn.Succeed(self, "Switched")) if config.reindex_auto_switch else ready)
        kind = sfn.Choice(self, "Reindexing").when(
            sfn.Condition.boolean_equals("$.prepared.building", True), gate.next(passed)
        )
        kind.otherwise(sfn.Succeed(self, "Backfilled"))
        if not config.inventory:
            return prepare.next(listing).next(kind)
        inventory = self._fill(
            "BackfillFromInventory",
            props,
            sfn.S3ManifestItemReader(
                bucket=props.artifacts.reports, key=sfn.JsonPath.string_at("$.prepared.manifest")
            ),
            keys="url-encoded",  # S3 Inventory's CSV holds URL-encoded keys
        )
        source = sfn.Choice(self, "Source").when(
            sfn.Condition.string_equals("$.prepared.manifest", ""), listing.next(kind)
        )
        return prepare.next(source.otherwise(inventory.next(kind)))

    def _fill(
        self, state_name: str, props: ReindexProps, reader: sfn.IItemReader, *, keys: str
    ) -> sfn.DistributedMap:
        """A distributed map over ``reader``'s objects, in batches to the backfill function."""
        config = props.config
        fill = sfn.DistributedMap(
            self,
            f"{state_name}Map",
            state_name=state_name,
            item_reader=reader,
            item_batcher=sfn.ItemBatcher(
                max_items_per_batch=config.backfill_batch_size,
                # "<key>.$": a path, resolved per run; handlers.backfill reads both
                batch_input={"target.$": "$.prepared.target", "keys": keys},
            ),
            max_concurrency=config.backfill_max_concurrency,
            tolerated_failure_percentage=config.backfill_tolerated_failure_percent,
            result_writer_v2=sfn.ResultWriterV2(bucket=props.artifacts.reports, prefix=REPORTS_PREFIX),
            result_path="$.backfill",
        )
        batch = tasks.LambdaInvoke(
            self,
            f"{state_name}Batch",
            state_name=f"{state_name}Batch",
            lambda_function=self.backfill,
            result_selector={"target.$": "$.Payload.target", "counts.$": "$.Payload.counts"},
        )
        batch.add_retry(
            errors=list(RETRIED_ERRORS),
            interval=Duration.seconds(10),
            max_attempts=BATCH_RETRIES,
            backoff_rate=2,
            max_delay=Duration.minutes(5),
            jitter_strategy=sfn.JitterType.FULL,
        )
        fill.item_processor(batch)
        return fill

    @staticmethod
    def _inventory(props: ReindexProps) -> None:
        """A daily CSV inventory of the images bucket, delivered to the reports bucket.

        CDK's ``add_inventory`` lets S3 deliver on behalf of the source bucket alone; AWS's example
        destination policy for S3 Inventory adds the source account and the bucket-owner ACL
        (confused deputy), so the configuration and the statement are written here.
        """
        images, reports = props.store.bucket, props.artifacts.reports
        account = Stack.of(images).account
        cast(s3.CfnBucket, images.node.default_child).inventory_configurations = [
            s3.CfnBucket.InventoryConfigurationProperty(
                id=INVENTORY_ID,
                enabled=True,
                included_object_versions="Current",
                schedule_frequency="Daily",
                destination=s3.CfnBucket.DestinationProperty(
                    bucket_arn=reports.bucket_arn,
                    format="CSV",
                    prefix=INVENTORY_PREFIX,
                    bucket_account_id=account,
                ),
            )
        ]
        reports.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["s3:PutObject"],
                resources=[reports.arn_for_objects(f"{INVENTORY_PREFIX}/*")],
                conditions={
                    "ArnLike": {"aws:SourceArn": images.bucket_arn},
                    "StringEquals": {
                        "aws:SourceAccount": account,
                        "s3:x-amz-acl": "bucket-owner-full-control",
                    },
                },
            )
        )

    def _control(
        self, construct_id: str, payload: dict[str, object], *, result_path: str
    ) -> sfn.TaskStateBase:
        return tasks.LambdaInvoke(
            self,
            construct_id,
            lambda_function=self.control,
            payload=sfn.TaskInput.from_object(payload),
            payload_response_only=True,
            result_path=result_path,
        )

    def _acknowledge(self, props: ReindexProps) -> None:
        for function in (self.backfill, self.control):
            acknowledge(
                self.state_machine,
                f"AwsSolutions-IAM5[Resource::<{logical_id(function)}.Arn>:*]",
                "the state machine may invoke any version of its own two functions, and only those",
            )
        acknowledge(
            self.state_machine,
            "AwsSolutions-IAM5[Resource::*]",
            "CloudWatch Logs' log delivery and X-Ray's trace actions support no resource-level permissions",
        )
        stack = Stack.of(self)
        region, account = (
            f"<{pseudo}>" if Token.is_unresolved(value) else value
            for value, pseudo in ((stack.region, "AWS::Region"), (stack.account, "AWS::AccountId"))
        )
        executions = (  # how cdk-nag spells the execution ARNs CDK derives from the state machine's
            f"arn:<AWS::Partition>:states:{region}:{account}:execution:"
            f'{{"Fn::Select":[6,{{"Fn::Split":[":",{{"Ref":"{logical_id(self.state_machine)}"}}]}}]}}'
        )
        for pattern, why in (
            (":*", "the map run describes and stops the child executions it starts, of this machine only"),
            ("/*:*", "a redrive of a map run restarts its own failed child executions, of this machine only"),
        ):
            acknowledge(self.state_machine, f"AwsSolutions-IAM5[Resource::{executions}{pattern}]", why)
        acknowledge(
            self.state_machine,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::<{logical_id(props.artifacts.reports)}>/*]",
            "the ResultWriter names its files per map run; the reports bucket holds nothing else",
        )
