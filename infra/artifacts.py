"""What the app writes for itself: every model the deployment shipped, and the reports of its backfills."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import DeploymentConfig
from infra.functions import logical_id
from infra.governance import acknowledge
from simsearch.models import MODELS_PREFIX, s3_model_uri

BACKFILL_REPORT_DAYS = 30


@dataclass(frozen=True, kw_only=True)
class ArtifactsProps:
    config: DeploymentConfig
    access_logs: s3.IBucket | None  # the images bucket's access-log bucket, when the profile keeps logs


class Artifacts(Construct):
    """Two private buckets users never upload to.

    ``models`` holds ``models/<model id>/`` for each model the deployment has shipped (the bootstrap
    copies the bundle's model there), so while a re-index runs a function can load the model of
    whichever index serves or takes writes (``simsearch.models``). ``reports`` receives each backfill's
    results (the distributed map's ``ResultWriter``, which Step Functions may write anywhere in its
    bucket: a bucket of their own keeps it away from the models); they expire after
    ``BACKFILL_REPORT_DAYS``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: ArtifactsProps) -> None:
        super().__init__(scope, construct_id)
        self.models = self._bucket("Models", props, lifecycle_rules=[])
        self.reports = self._bucket(
            "Reports",
            props,
            lifecycle_rules=[
                s3.LifecycleRule(id="ExpireReports", expiration=Duration.days(BACKFILL_REPORT_DAYS))
            ],
        )

    def model_uri(self, model_id: str) -> str:
        return s3_model_uri(self.models.bucket_name, model_id)

    def grant_read_models(self, grantee: iam.IGrantable) -> None:
        """Read any shipped model: a function may have to embed with the model of an older index."""
        self.models.grant_read(grantee, f"{MODELS_PREFIX}*")
        self._acknowledge_models(grantee, "s3:GetObject*", "s3:GetBucket*", "s3:List*")

    def grant_publish_models(self, grantee: iam.IGrantable) -> None:
        """Copy a model in (the bootstrap, with the model its bundle carries), and read what is there."""
        self.models.grant_read(grantee, f"{MODELS_PREFIX}*")
        self.models.grant_put(grantee, f"{MODELS_PREFIX}*")
        self._acknowledge_models(grantee, "s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:Abort*")

    def _bucket(
        self, construct_id: str, props: ArtifactsProps, *, lifecycle_rules: list[s3.LifecycleRule]
    ) -> s3.Bucket:
        config = props.config
        bucket = s3.Bucket(
            self,
            construct_id,
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            removal_policy=config.removal_policy,
            auto_delete_objects=config.destroy_on_delete,
            server_access_logs_bucket=props.access_logs,
            server_access_logs_prefix=f"{construct_id.lower()}/" if props.access_logs else None,
            lifecycle_rules=lifecycle_rules,
        )
        if props.access_logs is None:
            acknowledge(
                bucket,
                "AwsSolutions-S1",
                f"profile {config.profile} skips server access logs to save cost (-c access_logs=true)",
            )
        return bucket

    def _acknowledge_models(self, grantee: iam.IGrantable, *families: str) -> None:
        scope = grantee if isinstance(grantee, Construct) else self
        for family in families:
            acknowledge(
                scope,
                f"AwsSolutions-IAM5[Action::{family}]",
                "an S3 action family of CDK's grant, scoped to the models folder of the models bucket",
            )
        acknowledge(
            scope,
            f"AwsSolutions-IAM5[Resource::<{logical_id(self.models)}.Arn>/{MODELS_PREFIX}*]",
            "one folder per model id, named at deploy time by the model the bundle carries",
        )
