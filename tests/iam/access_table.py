"""Who may do what in a deployment, read off a resolved template: the rows of docs/deploy.md's access table.

Each row is one identity, the actions one statement (or managed policy) gives it, and where: from the
roles' identity policies and managed policies, and from the resource policies that admit an AWS service
(S3, CloudWatch, OpenSearch Service, API Gateway). Resource ARNs are written by what they are ("images
bucket/*"), so the table reads the same in every account. The domain's access policy repeats each
function's OpenSearch statements and is not listed twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from infra.packaging import (
    BACKFILL_HANDLER,
    BOOTSTRAP_HANDLER,
    INGEST_HANDLER,
    QUERY_HANDLER,
    REINDEX_HANDLER,
)
from tests.iam.policies import identity_policies
from tests.iam.template import ResolvedTemplate

HANDLER_IDENTITIES = {
    INGEST_HANDLER: "ingest function",
    QUERY_HANDLER: "query function",
    BOOTSTRAP_HANDLER: "index bootstrap (the domain's master user)",
    BACKFILL_HANDLER: "backfill function",
    REINDEX_HANDLER: "re-index control function",
}
STATE_MACHINE = "re-index state machine"
# CDK's own helpers, by the start of their function's logical id.
HELPER_IDENTITIES = {
    "IndexBootstrapProviderframeworkonEvent": "custom resource provider (CDK)",
    "BucketNotificationsHandler": "bucket notifications helper (CDK)",
    "AWS679f53fac002430cb0da5b7982bd2287": "AWS SDK helper (CDK)",
    "CustomS3AutoDeleteObjectsCustomResourceProvider": "bucket auto-delete helper (CDK)",
}
SERVICES = {
    "s3.amazonaws.com": "Amazon S3",
    "logging.s3.amazonaws.com": "S3 server access logging",
    "cloudwatch.amazonaws.com": "CloudWatch alarms",
    "es.amazonaws.com": "OpenSearch Service",
    "apigateway.amazonaws.com": "API Gateway",
}


@dataclass(frozen=True, order=True)
class Row:
    identity: str
    may: str
    on: str

    def markdown(self, why: str = "") -> str:
        return f"| {self.identity} | {self.may} | {self.on} | {why} |"


def access_rows(template: ResolvedTemplate) -> list[Row]:
    names = _resource_names(template)
    rows = {*_role_rows(template, names), *_resource_policy_rows(template, names)}
    return sorted(rows)


def _role_rows(template: ResolvedTemplate, names: dict[str, str]) -> Iterator[Row]:
    for role_id, role in template.of_type("AWS::IAM::Role").items():
        identity = _role_identity(template, role_id, role)
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            yield Row(identity, f"AWS managed policy {str(arn).rsplit('/', 1)[1]}", "–")
        for document in identity_policies(template, role_id).values():
            for statement in document["Statement"]:
                yield Row(identity, _actions(statement), _resources(statement, names))
        if not role["Properties"].get("ManagedPolicyArns") and not identity_policies(template, role_id):
            yield Row(identity, "nothing of its own", "–")


def _resource_policy_rows(template: ResolvedTemplate, names: dict[str, str]) -> Iterator[Row]:
    """What resource policies allow an AWS service, or one of the stack's roles beyond its own policies."""
    roles = {template.arn(role_id): role_id for role_id in template.of_type("AWS::IAM::Role")}
    for document, this in _resource_policies(template, names):
        for statement in document["Statement"]:
            principal = statement.get("Principal", {})
            if statement["Effect"] != "Allow" or not isinstance(principal, dict):
                continue
            on = _resources(statement, {**names, "*": this} if this else names)
            if "Service" in principal:
                yield Row(SERVICES[principal["Service"]], _actions(statement), on)
            elif principal.get("AWS") in roles:
                role_id = roles[principal["AWS"]]
                identity = _role_identity(template, role_id, template.resources[role_id])
                yield Row(identity, _actions(statement), on)
    for permission in template.of_type("AWS::Lambda::Permission").values():
        properties = permission["Properties"]
        on = _named(str(properties["FunctionName"]), names)
        yield Row(SERVICES[str(properties["Principal"])], f"`{properties['Action']}`", on)


def _resource_policies(
    template: ResolvedTemplate, names: dict[str, str]
) -> Iterator[tuple[dict[str, Any], str]]:
    """Every resource policy, with what ``*`` means in it (a key policy's ``*`` is its key)."""
    for policy in template.of_type("AWS::SQS::QueuePolicy").values():
        yield policy["Properties"]["PolicyDocument"], ""
    for policy in template.of_type("AWS::SNS::TopicPolicy").values():
        yield policy["Properties"]["PolicyDocument"], ""
    for policy in template.of_type("AWS::S3::BucketPolicy").values():
        yield policy["Properties"]["PolicyDocument"], ""
    for key_id, key in template.of_type("AWS::KMS::Key").items():
        yield key["Properties"]["KeyPolicy"], f"{names.get(template.arn(key_id), 'its key')}"
    for policy in template.of_type("AWS::Logs::ResourcePolicy").values():
        yield json.loads(policy["Properties"]["PolicyDocument"]), ""


def _role_identity(template: ResolvedTemplate, role_id: str, role: Mapping[str, Any]) -> str:
    arn = template.arn(role_id)
    for name, function in template.of_type("AWS::Lambda::Function").items():
        if function["Properties"].get("Role") == arn:
            handler = function["Properties"].get("Handler")
            if handler in HANDLER_IDENTITIES:
                return HANDLER_IDENTITIES[handler]
            return next(label for prefix, label in HELPER_IDENTITIES.items() if name.startswith(prefix))
    if role_id.startswith("CustomS3AutoDeleteObjects"):
        return HELPER_IDENTITIES["CustomS3AutoDeleteObjectsCustomResourceProvider"]
    trusted = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]["Service"]
    if trusted.startswith("states."):
        return STATE_MACHINE
    return f"{SERVICES[trusted]} (account-wide logging role)"


def _resource_names(template: ResolvedTemplate) -> dict[str, str]:
    """ARN or name -> what it is, for every resource a policy here names."""
    arns = {
        "AWS::S3::Bucket": _bucket_name,
        "AWS::SQS::Queue": lambda i: "uploads queue" if "Uploads" in i else "dead-letter queue",
        "AWS::OpenSearchService::Domain": lambda _: "domain",
        "AWS::KMS::Key": lambda _: "alarm topic's key",
        "AWS::Logs::LogGroup": lambda i: "the domain's log groups" if i.startswith("Search") else None,
    }
    names = {
        template.arn(i): name
        for kind, label in arns.items()
        for i in template.of_type(kind)
        if (name := label(i)) is not None
    }
    names |= {template.ref(i): "alarm topic" for i in template.of_type("AWS::SNS::Topic")}
    for machine_id in template.of_type("AWS::StepFunctions::StateMachine"):
        arn = str(template.ref(machine_id))
        names[arn] = STATE_MACHINE
        names[arn.replace(":stateMachine:", ":execution:")] = f"{STATE_MACHINE}'s executions"
    names |= {template.ref(i): "query function's live alias" for i in template.of_type("AWS::Lambda::Alias")}
    for function_id, function in template.of_type("AWS::Lambda::Function").items():
        if (handler := function["Properties"].get("Handler")) in HANDLER_IDENTITIES:
            names[template.arn(function_id)] = HANDLER_IDENTITIES[handler].split(" (")[0]
    return names


def _bucket_name(logical_id: str) -> str:
    for part, name in (("Images", "images"), ("Models", "models"), ("Reports", "reports")):
        if part in logical_id:
            return f"{name} bucket"
    return "access-log bucket"


def _actions(statement: dict[str, Any]) -> str:
    actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
    return ", ".join(f"`{action}`" for action in sorted(actions))


def _resources(statement: dict[str, Any], names: dict[str, str]) -> str:
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    return ", ".join(sorted({_named(str(resource), names) for resource in resources}))


def _named(resource: str, names: dict[str, str]) -> str:
    """``resource`` with the longest known ARN in it replaced by its name (``domain/images-*``)."""
    if resource == "*":
        return names.get("*", "*")
    for arn in sorted((name for name in names if name != "*"), key=len, reverse=True):
        if resource.startswith(arn):
            return names[arn] + resource[len(arn) :]
    return resource
