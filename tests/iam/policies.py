"""The policies of a resolved template that stand in front of a request.

Identity policies: the ``AWS::IAM::Policy`` resources attached to a role, and its inline policies.
(AWS managed policies, such as AWSLambdaBasicExecutionRole, are named by ARN only; they grant logs and
network interfaces, never the data-plane access these tests evaluate.) Resource policies: the one
each kind of resource carries, found by the resource's ARN: the domain's access policy (which CDK sets
through a custom resource), bucket, queue and topic policies, key policies, the Lambda permissions of
a function, and the CloudWatch Logs resource policy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from tests.iam.simulator import Policy
from tests.iam.template import ACCOUNT, PARTITION, ResolvedTemplate

VERSION = "2012-10-17"


def role_session(template: ResolvedTemplate, role_id: str) -> str:
    """The principal a function with role ``role_id`` signs its requests as."""
    return f"arn:{PARTITION}:sts::{ACCOUNT}:assumed-role/{template.ref(role_id)}/function"


def role_of_function(template: ResolvedTemplate, handler: str) -> str:
    """The logical id of the role of the function whose handler is ``handler``."""
    roles = [
        function["Properties"]["Role"]
        for function in template.of_type("AWS::Lambda::Function").values()
        if function["Properties"].get("Handler") == handler
    ]
    if len(roles) != 1:
        raise LookupError(f"{len(roles)} functions with handler {handler}")
    arn = str(roles[0])
    return next(name for name in template.of_type("AWS::IAM::Role") if template.arn(name) == arn)


def identity_policies(template: ResolvedTemplate, role_id: str) -> dict[str, Policy]:
    """Every policy document attached to the role, by a readable name."""
    role_name = template.ref(role_id)
    attached = {
        name: policy["Properties"]["PolicyDocument"]
        for name, policy in template.of_type("AWS::IAM::Policy").items()
        if role_name in policy["Properties"].get("Roles", [])
    }
    inline = {
        f"{role_id}/{policy['PolicyName']}": policy["PolicyDocument"]
        for policy in template.resources[role_id]["Properties"].get("Policies", [])
    }
    return {**attached, **inline}


def resource_policy(template: ResolvedTemplate, arn: str) -> Policy | None:
    """The resource-based policy in front of ``arn`` (None: that resource has none)."""
    service = arn.split(":")[2]
    finders = {
        "es": _domain_access_policy,
        "s3": _bucket_policy,
        "sqs": _queue_policy,
        "sns": _topic_policy,
        "kms": _key_policy,
        "lambda": _function_permissions,
        "logs": _logs_resource_policy,
        "states": lambda _template, _arn: None,  # a state machine has no resource policy in CloudFormation
    }
    if service not in finders:
        raise LookupError(f"no resource policy finder for {service} ({arn})")
    return finders[service](template, arn)


def _domain_access_policy(template: ResolvedTemplate, arn: str) -> Policy | None:
    domain = "/".join(arn.split("/")[:2])
    for custom in template.of_type("Custom::OpenSearchAccessPolicy").values():
        call = json.loads(custom["Properties"]["Create"])  # the AwsCustomResource's SDK call
        if domain.endswith(call["parameters"]["DomainName"]):
            return json.loads(call["parameters"]["AccessPolicies"])  # type: ignore[no-any-return]
    return None


def _bucket_policy(template: ResolvedTemplate, arn: str) -> Policy | None:
    bucket = arn.split(":::", 1)[1].split("/", 1)[0]
    return _first(
        p["Properties"]["PolicyDocument"]
        for p in template.of_type("AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == bucket
    )


def _queue_policy(template: ResolvedTemplate, arn: str) -> Policy | None:
    name = arn.rsplit(":", 1)[1]
    return _first(
        p["Properties"]["PolicyDocument"]
        for p in template.of_type("AWS::SQS::QueuePolicy").values()
        if any(str(url).endswith(f"/{name}") for url in p["Properties"]["Queues"])
    )


def _topic_policy(template: ResolvedTemplate, arn: str) -> Policy | None:
    return _first(
        p["Properties"]["PolicyDocument"]
        for p in template.of_type("AWS::SNS::TopicPolicy").values()
        if arn in p["Properties"]["Topics"]
    )


def _key_policy(template: ResolvedTemplate, arn: str) -> Policy | None:
    return _first(
        key["Properties"]["KeyPolicy"]
        for name, key in template.of_type("AWS::KMS::Key").items()
        if template.arn(name) == arn
    )


def _function_permissions(template: ResolvedTemplate, arn: str) -> Policy | None:
    """``AWS::Lambda::Permission`` resources are statements of the function's resource policy."""
    statements = [
        _permission_statement(permission["Properties"], arn)
        for permission in template.of_type("AWS::Lambda::Permission").values()
        if _names_function(permission["Properties"]["FunctionName"], arn)
    ]
    return {"Version": VERSION, "Statement": statements} if statements else None


def _names_function(function: str, arn: str) -> bool:
    """A permission's FunctionName (a name, an ARN, or an alias ARN) names the function or alias ``arn``."""
    return function == arn or arn.endswith(f":function:{function}")


def _permission_statement(permission: Mapping[str, Any], arn: str) -> dict[str, Any]:
    principal = str(permission["Principal"])
    conditions: dict[str, Any] = {}
    if "SourceArn" in permission:
        conditions["ArnLike"] = {"aws:SourceArn": permission["SourceArn"]}
    if "SourceAccount" in permission:
        conditions["StringEquals"] = {"aws:SourceAccount": permission["SourceAccount"]}
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": principal} if principal.endswith(".amazonaws.com") else {"AWS": principal},
        "Action": permission["Action"],
        "Resource": arn,
    }
    if conditions:
        statement["Condition"] = conditions
    return statement


def _logs_resource_policy(template: ResolvedTemplate, arn: str) -> Policy | None:  # noqa: ARG001
    """CloudWatch Logs resource policies are account-wide: the stack's ones, merged."""
    statements = [
        statement
        for policy in template.of_type("AWS::Logs::ResourcePolicy").values()
        for statement in json.loads(policy["Properties"]["PolicyDocument"])["Statement"]
    ]
    return {"Version": VERSION, "Statement": statements} if statements else None


def _first(policies: Iterator[Policy]) -> Policy | None:
    return next(iter(policies), None)
