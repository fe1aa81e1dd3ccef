"""The images bucket: what users upload is what gets indexed, and what the API links to."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import DeploymentConfig
from infra.functions import logical_id
from infra.governance import acknowledge

QUERY_UPLOAD_DAYS = 1  # query images uploaded through POST /uploads are needed for one search only


@dataclass(frozen=True, kw_only=True)
class ImageStoreProps:
    config: DeploymentConfig
    query_upload_prefix: str  # Settings.query_upload_prefix: expired here, ignored by ingestion


class ImageStore(Construct):
    """A private bucket: public access blocked, S3-managed encryption, plain HTTP refused."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ImageStoreProps) -> None:
        super().__init__(scope, construct_id)
        config = props.config
        self.access_logs = self._access_logs(config)
        """Where server access logs go (``access_logs`` profiles); other buckets of the app log here too."""
        self.bucket = s3.Bucket(
            self,
            "Images",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            removal_policy=config.removal_policy,
            auto_delete_objects=config.destroy_on_delete,  # a bucket must be empty to be deleted
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="images/" if config.access_logs else None,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="ExpireQueryUploads",
                    prefix=props.query_upload_prefix,
                    expiration=Duration.days(QUERY_UPLOAD_DAYS),
                ),
                s3.LifecycleRule(
                    id="AbortIncompleteUploads", abort_incomplete_multipart_upload_after=Duration.days(1)
                ),
            ],
        )
        if not config.access_logs:
            acknowledge(
                self.bucket,
                "AwsSolutions-S1",
                f"profile {config.profile} skips server access logs to save cost (-c access_logs=true)",
            )

    def grant_read(self, function: lambda_.IFunction, *, why: str) -> None:
        """Read access to every image, acknowledging its wildcards; ``why`` justifies ``/*``."""
        self.bucket.grant_read(function)
        for family in ("s3:GetObject*", "s3:GetBucket*", "s3:List*"):
            acknowledge(
                function,
                f"AwsSolutions-IAM5[Action::{family}]",
                "one of the read-only S3 action families of grant_read, scoped to the images bucket",
            )
        acknowledge(function, f"AwsSolutions-IAM5[Resource::{self._arn}/*]", why)

    def grant_query_uploads(self, function: lambda_.IFunction, *, upload_prefix: str) -> None:
        """Put access below the query-upload prefix only: the API presigns POSTs for large query images."""
        self.bucket.grant_put(function, f"{upload_prefix}*")
        acknowledge(
            function,
            "AwsSolutions-IAM5[Action::s3:Abort*]",
            "grant_put includes aborting a multipart upload, so a failed presigned upload leaves no parts",
        )
        acknowledge(
            function,
            f"AwsSolutions-IAM5[Resource::{self._arn}/{upload_prefix}*]",
            "presigned POSTs may write only below the query-upload prefix, which expires after a day",
        )

    @property
    def _arn(self) -> str:
        return f"<{logical_id(self.bucket)}.Arn>"

    def _access_logs(self, config: DeploymentConfig) -> s3.Bucket | None:
        if not config.access_logs:
            return None
        access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            removal_policy=config.removal_policy,
            auto_delete_objects=config.destroy_on_delete,
        )
        acknowledge(
            access_logs, "AwsSolutions-S1", "this bucket receives the access logs; logging it would recurse"
        )
        return access_logs
