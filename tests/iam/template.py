"""A synthesized template with every intrinsic function resolved, as one made-up account would see it.

CloudFormation decides physical names and ARNs at deploy time; here each resource gets names derived
from its logical id, so that the same resource always has the same ARN and a policy that names it (a
``Fn::GetAtt`` of a role, a ``Fn::Join`` around a domain ARN) becomes the string AWS would evaluate.
Only the functions and attributes this app's templates use are known; anything else raises, so a
new construct cannot slip past the policy tests unresolved.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
STACK = "ImageSearch"

_PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": PARTITION,
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::StackName": STACK,
    "AWS::StackId": f"arn:{PARTITION}:cloudformation:{REGION}:{ACCOUNT}:stack/{STACK}/0",
    "AWS::NoValue": None,
}
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


class UnresolvedError(Exception):
    """The template uses an intrinsic function or attribute this resolver does not know."""


@dataclass(frozen=True)
class ResolvedTemplate:
    """``resources`` with intrinsic functions replaced by the values of account ``ACCOUNT``."""

    resources: Mapping[str, Mapping[str, Any]]

    @classmethod
    def of(cls, template: Mapping[str, Any]) -> ResolvedTemplate:
        raw = template["Resources"]
        resolver = _Resolver(raw)
        return cls({name: resolver.resolve(resource) for name, resource in raw.items()})

    def of_type(self, kind: str) -> dict[str, Mapping[str, Any]]:
        return {name: r for name, r in self.resources.items() if r["Type"] == kind}

    def arn(self, logical_id: str) -> str:
        """The ARN of a resource, as ``Fn::GetAtt [logical_id, Arn]`` resolves."""
        return str(_Resolver(self.resources).attribute(logical_id, "Arn"))

    def ref(self, logical_id: str) -> str:
        return str(_Resolver(self.resources).ref(logical_id))


class _Resolver:
    def __init__(self, resources: Mapping[str, Mapping[str, Any]]) -> None:
        self._resources = resources

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self.ref(argument)
            if key.startswith("Fn::"):
                return self._function(key, argument)
        return {key: self.resolve(item) for key, item in value.items()}

    def _function(self, name: str, argument: Any) -> Any:
        if name == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return self.attribute(logical_id, attribute)
        if name == "Fn::Join":
            separator, parts = argument
            return separator.join(str(self.resolve(part)) for part in parts)
        if name == "Fn::Select":
            index, items = argument
            return self.resolve(items)[int(index)]
        if name == "Fn::Split":
            separator, text = argument
            return str(self.resolve(text)).split(separator)
        if name == "Fn::Sub":
            text, variables = (argument, {}) if isinstance(argument, str) else argument
            return self._substitute(text, {k: self.resolve(v) for k, v in variables.items()})
        if name == "Fn::GetAZs":
            return [f"{REGION}a", f"{REGION}b", f"{REGION}c"]
        raise UnresolvedError(f"{name} is not resolved here: teach tests/iam/template.py")

    def _substitute(self, text: str, variables: Mapping[str, Any]) -> str:
        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return str(self.attribute(*name.split(".", 1)))
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(value, text)

    def ref(self, logical_id: str) -> Any:
        if logical_id in _PSEUDO:
            return _PSEUDO[logical_id]
        kind = self._type(logical_id)
        refs = {
            "AWS::S3::Bucket": self._bucket,
            "AWS::SQS::Queue": lambda i: f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{i}",
            "AWS::SNS::Topic": lambda i: self._arn("sns", i),
            "AWS::Lambda::Function": lambda i: i,
            "AWS::Lambda::Alias": self._alias_arn,
            "AWS::IAM::Role": lambda i: i,
            "AWS::KMS::Key": _key_id,
            "AWS::OpenSearchService::Domain": _domain_name,
            "AWS::Logs::LogGroup": _log_group_name,
            "AWS::ApiGateway::Stage": lambda i: self._resources[i]["Properties"]["StageName"],
            "AWS::CloudWatch::Alarm": self._alarm_name,
            "AWS::StepFunctions::StateMachine": lambda i: self._arn("states", f"stateMachine:{i}"),
        }
        if kind in refs:
            return refs[kind](logical_id)
        if kind.startswith("AWS::ApiGateway::"):
            return _short_id(logical_id)
        raise UnresolvedError(f"Ref of a {kind} ({logical_id}) is not resolved here")

    def attribute(self, logical_id: str, attribute: str) -> Any:
        kind = self._type(logical_id)

        def name() -> str:
            return str(self.ref(logical_id))

        domain_arn = lambda: self._arn("es", f"domain/{name()}")  # noqa: E731
        known: dict[tuple[str, str], Any] = {
            ("AWS::S3::Bucket", "Arn"): lambda: f"arn:{PARTITION}:s3:::{name()}",
            ("AWS::SQS::Queue", "Arn"): lambda: self._arn("sqs", logical_id),
            ("AWS::SQS::Queue", "QueueName"): lambda: logical_id,
            ("AWS::SNS::Topic", "TopicArn"): name,
            ("AWS::SNS::Topic", "TopicName"): lambda: logical_id,
            ("AWS::Lambda::Function", "Arn"): lambda: self._arn("lambda", f"function:{name()}"),
            ("AWS::Lambda::Version", "Version"): lambda: "1",
            ("AWS::IAM::Role", "Arn"): lambda: f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name()}",
            ("AWS::KMS::Key", "Arn"): lambda: self._arn("kms", f"key/{name()}"),
            ("AWS::OpenSearchService::Domain", "Arn"): domain_arn,
            ("AWS::OpenSearchService::Domain", "DomainArn"): domain_arn,
            ("AWS::OpenSearchService::Domain", "DomainEndpoint"): lambda: (
                f"search-{name()}-abcdefghijkl.{REGION}.es.amazonaws.com"
            ),
            ("AWS::Logs::LogGroup", "Arn"): lambda: self._arn("logs", f"log-group:{name()}:*"),
            ("AWS::CloudWatch::Alarm", "Arn"): lambda: self._arn("cloudwatch", f"alarm:{name()}"),
            ("AWS::ApiGateway::RestApi", "RootResourceId"): lambda: "root0000",
            ("AWS::StepFunctions::StateMachine", "Arn"): name,
            ("AWS::StepFunctions::StateMachine", "Name"): lambda: logical_id,
        }
        if (kind, attribute) not in known:
            raise UnresolvedError(f"Fn::GetAtt {logical_id}.{attribute} of a {kind} is not resolved here")
        return known[(kind, attribute)]()

    def _type(self, logical_id: str) -> str:
        if logical_id not in self._resources:
            raise UnresolvedError(f"{logical_id} is not a resource of this template")
        return str(self._resources[logical_id]["Type"])

    @staticmethod
    def _arn(service: str, resource: str) -> str:
        return f"arn:{PARTITION}:{service}:{REGION}:{ACCOUNT}:{resource}"

    @staticmethod
    def _bucket(logical_id: str) -> str:
        return f"{STACK.lower()}-{logical_id.lower()}"

    def _alias_arn(self, logical_id: str) -> str:
        properties = self._resources[logical_id]["Properties"]
        function = self.resolve(properties["FunctionName"])
        return self._arn("lambda", f"function:{function}:{properties['Name']}")

    def _alarm_name(self, logical_id: str) -> str:
        return str(self.resolve(self._resources[logical_id]["Properties"].get("AlarmName", logical_id)))


def _short_id(logical_id: str) -> str:
    return hashlib.sha256(logical_id.encode()).hexdigest()[:10]


def _key_id(logical_id: str) -> str:
    digest = hashlib.sha256(logical_id.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


def _domain_name(logical_id: str) -> str:
    """OpenSearch domain names: 3-28 lowercase letters, digits and hyphens, starting with a letter."""
    return logical_id.lower()[:28]


def _log_group_name(logical_id: str) -> str:
    return f"/aws/{STACK}/{logical_id}"
