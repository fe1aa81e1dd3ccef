"""What deployed functions really send, and the IAM request AWS would evaluate for each.

OpenSearch requests are recorded on the wire by a proxy per identity (``tests.faultproxy``), with the
status the function got; AWS calls are recorded by botocore's ``before-parameter-build`` event, which
fires for every API call and every presigned URL, with the operation's own parameters. Each becomes an
IAM request: ``es:ESHttp<Method>`` on the domain ARN followed by the path (OpenSearch Service's resource
format), and for S3 the action its API reference requires (a HEAD needs ``s3:GetObject``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3

from tests.faultproxy import Exchange

# S3 operation -> (IAM action, resource kind), per the Amazon S3 API reference's "Permissions" of each
# operation and the Service Authorization Reference. An operation missing here fails the test that
# meets it, so a new call cannot go unevaluated.
S3_ACTIONS: dict[str, tuple[str, str]] = {
    "HeadObject": ("s3:GetObject", "object"),
    "GetObject": ("s3:GetObject", "object"),
    "ListObjectsV2": ("s3:ListBucket", "bucket"),
    "PutObject": ("s3:PutObject", "object"),
    "CreateMultipartUpload": ("s3:PutObject", "object"),  # a large upload_file (the model) goes in parts
    "UploadPart": ("s3:PutObject", "object"),
    "CompleteMultipartUpload": ("s3:PutObject", "object"),
    "AbortMultipartUpload": ("s3:AbortMultipartUpload", "object"),
    "DeleteObject": ("s3:DeleteObject", "object"),
}
# Other services' operations -> (IAM action, the parameter that holds the resource's ARN).
ARN_ACTIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("states", "StartExecution"): ("states:StartExecution", "stateMachineArn"),
}


@dataclass(frozen=True)
class Call:
    """One AWS API call (or presigned request) a function made."""

    identity: str
    service: str
    operation: str
    params: dict[str, Any]
    presigned: bool

    @property
    def presigned_post(self) -> bool:
        """botocore signs a presigned POST's policy through the ``CreateBucket`` operation model
        (``botocore.signers.generate_presigned_post``); the object key lives in the form's fields."""
        return self.presigned and self.operation == "CreateBucket"

    def iam(self) -> tuple[str, str]:
        """(action, resource ARN) AWS authorises this call as (a presigned POST: see its form's key)."""
        if (self.service, self.operation) in ARN_ACTIONS:
            action, parameter = ARN_ACTIONS[(self.service, self.operation)]
            return action, str(self.params[parameter])
        if self.service != "s3" or self.operation not in S3_ACTIONS:
            raise LookupError(f"no IAM mapping for {self.service}:{self.operation}: add it to S3_ACTIONS")
        action, kind = S3_ACTIONS[self.operation]
        bucket = f"arn:aws:s3:::{self.params['Bucket']}"
        return action, bucket if kind == "bucket" else f"{bucket}/{self.params['Key']}"


@dataclass
class AwsCallRecorder:
    """Records the calls made through boto3's default session (the one the handlers' clients come from)."""

    calls: list[Call] = field(default_factory=list)
    identity: str = ""

    @contextmanager
    def recording(self) -> Iterator[AwsCallRecorder]:
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        session = boto3.DEFAULT_SESSION
        assert session is not None
        session.events.register("before-parameter-build", self._record)
        try:
            yield self
        finally:
            session.events.unregister("before-parameter-build", self._record)

    @contextmanager
    def acting_as(self, identity: str) -> Iterator[None]:
        previous, self.identity = self.identity, identity
        try:
            yield
        finally:
            self.identity = previous

    def _record(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        service = model.service_model.endpoint_prefix
        presigned = bool(context.get("is_presign_request"))
        self.calls.append(Call(self.identity, service, model.name, dict(params), presigned))


def opensearch_request(exchange: Exchange, *, domain_arn: str) -> tuple[str, str]:
    """(action, resource ARN) OpenSearch Service authorises an HTTP request as.

    AWS matches a ``*`` in a request's path as an ordinary character (only a policy's ``*`` is a
    wildcard); the simulator would read it as a wildcard request, so it is written ``~``, which no
    policy here names: a pattern matches it exactly when it would match the ``*``.
    """
    path = unquote(urlsplit(exchange.path).path).lstrip("/").replace("*", "~")
    return f"es:ESHttp{exchange.method.capitalize()}", f"{domain_arn}/{path}" if path else domain_arn


def route(exchange: Exchange) -> str:
    """``METHOD /path`` without the query string: how the report names a request."""
    return f"{exchange.method} {urlsplit(exchange.path).path}"
