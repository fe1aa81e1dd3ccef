"""What an AWS account must already offer for a deployment to succeed, checked before ``cdk deploy``.

Each check reads the account through boto3 clients and returns a ``Finding``: passed or not, what it
found, and what to do. ``run_checks`` runs those that apply to a deployment; an AWS error (no
credentials, a denied call, throttling) fails only the check that met it, so one missing permission
never hides the other answers. ``infra/preflight.py`` is the command around them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

from infra.config import STACK_NAME, UNRESERVED_MINIMUM, DeploymentConfig

ClientFactory = Callable[[str], Any]
"""A boto3 client for a service name (``boto3.Session(...).client``): the only way checks reach AWS."""

TOOLKIT_STACK = "CDKToolkit"  # the stack `cdk bootstrap` creates (its --toolkit-stack-name default)
QUALIFIER_CONTEXT = "@aws-cdk/core:bootstrapQualifier"
DEFAULT_QUALIFIER = "hnb659fds"  # DefaultStackSynthesizer.DEFAULT_QUALIFIER
REQUIRED_BOOTSTRAP_VERSION = 6
"""The bootstrap version aws-cdk-lib 2.275.0 asks for: every synthesised template carries the rule
``CheckBootstrapVersion`` (it rejects versions 1-5, "CDK bootstrap stack version 6 required") and the
assembly manifest says ``requiresBootstrapStackVersion: 6`` (a test in tests/infra reads both)."""
OPENSEARCH_ROLE = "AWSServiceRoleForAmazonOpenSearchService"
LEGACY_OPENSEARCH_ROLE = "AWSServiceRoleForAmazonElasticsearchService"
CREDENTIALS_FIX = (
    "give boto3 credentials: `aws configure`, or `aws sso login --profile P` and --profile P, "
    "or AWS_PROFILE / AWS_ACCESS_KEY_ID in the environment"
)
REGION_FIX = "name the region: --region R, AWS_REGION=R, or `aws configure set region R`"
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation"}
_THROTTLED = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}
_BAD_CREDENTIALS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "SignatureDoesNotMatch",
}
_SIZES = ("nano", "micro", "small", "medium", "large", "xlarge")  # then 2xlarge, 4xlarge, ...


@dataclass(frozen=True, kw_only=True)
class Finding:
    passed: bool
    found: str
    fix: str = ""  # when failed, the fix; when passed, a step still to take (empty: none)


@dataclass(frozen=True, kw_only=True)
class CheckResult:
    name: str
    finding: Finding

    @property
    def passed(self) -> bool:
        return self.finding.passed

    def to_json(self) -> dict[str, object]:
        return {
            "check": self.name,
            "passed": self.passed,
            "found": self.finding.found,
            "fix": self.finding.fix,
        }


@dataclass(frozen=True, kw_only=True)
class Target:
    """A deployment and the account it would go to: what every check reads."""

    config: DeploymentConfig
    client: ClientFactory
    bootstrap_qualifier: str = DEFAULT_QUALIFIER

    @classmethod
    def of(cls, config: DeploymentConfig, context: Mapping[str, Any], *, client: ClientFactory) -> Target:
        """The target of a deployment made with ``context`` (which may change the bootstrap qualifier)."""
        qualifier = str(context.get(QUALIFIER_CONTEXT, DEFAULT_QUALIFIER))
        return cls(config=config, client=client, bootstrap_qualifier=qualifier)


@dataclass(frozen=True)
class Check:
    name: str
    run: Callable[[Target], Finding]
    applies: Callable[[DeploymentConfig], bool] = lambda _config: True


def run_checks(target: Target) -> list[CheckResult]:
    """Every check that applies to ``target.config``, in order; none stops the others."""
    return [
        CheckResult(name=check.name, finding=_guarded(check, target))
        for check in CHECKS
        if check.applies(target.config)
    ]


# credentials ---------------------------------------------------------------------------------------


def credentials(target: Target) -> Finding:
    """Whose credentials these are, and which region the stack would go to: every other check uses both."""
    identity = target.client("sts").get_caller_identity()
    # STS answers without a region (its global endpoint); CloudFormation's client raises NoRegionError
    region = target.client("cloudformation").meta.region_name
    return Finding(passed=True, found=f"account {identity['Account']} in {region} as {identity['Arn']}")


# Lambda concurrency --------------------------------------------------------------------------------


def lambda_concurrency(target: Target) -> Finding:
    """Reserved plus provisioned concurrency must leave ``UNRESERVED_MINIMUM`` of the account unreserved.

    Lambda lets functions reserve "up to the unreserved account concurrency minus 100", and provisioned
    concurrency "counts towards a function's reserved concurrency and Regional quotas" (Lambda developer
    guide, "Configuring reserved concurrency" and "Configuring provisioned concurrency"). On a redeploy,
    what this stack's functions hold already is missing from the unreserved figure, so it is added back.
    """
    config = target.config
    if not config.committed_concurrency:
        return Finding(
            passed=True,
            found=f"profile {config.profile} reserves and provisions no concurrency: any quota will do",
        )
    lambda_ = target.client("lambda")
    limit = lambda_.get_account_settings()["AccountLimit"]
    quota, unreserved = limit["ConcurrentExecutions"], limit["UnreservedConcurrentExecutions"]
    held = _held_by_stack(target.client("cloudformation"), lambda_)
    available, needed = unreserved + held, config.committed_concurrency + UNRESERVED_MINIMUM
    found = (
        f"quota {quota}, {unreserved} unreserved"
        + (f" (+{held} that this stack's functions hold now)" if held else "")
        + f"; {config.ingest_reserved_concurrency} reserved for ingestion + "
        f"{config.query_provisioned_concurrency} provisioned for queries + {UNRESERVED_MINIMUM} "
        f"Lambda keeps unreserved = {needed} needed" + _stated_quota(config, quota)
    )
    if available >= needed:
        return Finding(passed=True, found=found, fix=f"pass -c account_concurrency={quota} to cdk deploy")
    short = needed - available
    others = quota - unreserved - held  # reserved or provisioned by functions outside this stack
    return Finding(
        passed=False,
        found=found,
        fix=f"ask for a Lambda concurrent executions quota of at least {quota + short} (Service Quotas "
        "console, AWS Lambda), "
        + (f"or free {short} of the {others} that other functions hold, " if others >= short else "")
        + "or deploy without: -c ingest_reserved_concurrency=0 -c query_provisioned_concurrency=0",
    )


def _stated_quota(config: DeploymentConfig, quota: int) -> str:
    if config.account_concurrency and config.account_concurrency != quota:
        return f"; -c account_concurrency={config.account_concurrency} differs from the account's {quota}"
    return ""


def _held_by_stack(cloudformation: Any, lambda_: Any) -> int:
    """Concurrency that the deployed stack's functions take from the account (0 before the first deploy)."""
    try:
        functions = [
            resource["PhysicalResourceId"]
            for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=STACK_NAME)
            for resource in page["StackResourceSummaries"]
            if resource["ResourceType"] == "AWS::Lambda::Function" and resource.get("PhysicalResourceId")
        ]
    except ClientError as error:
        if _stack_is_missing(error):
            return 0
        raise
    return sum(_held_by_function(lambda_, name) for name in functions)


def _held_by_function(lambda_: Any, name: str) -> int:
    """Its reserved concurrency, which includes its provisioned concurrency; else the provisioned alone."""
    reserved: int = lambda_.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions", 0)
    if reserved:
        return reserved
    pages = lambda_.get_paginator("list_provisioned_concurrency_configs").paginate(FunctionName=name)
    return sum(
        allocation["RequestedProvisionedConcurrentExecutions"]
        for page in pages
        for allocation in page.get("ProvisionedConcurrencyConfigs", [])
    )


def _stack_is_missing(error: ClientError) -> bool:
    """CloudFormation answers a stack name it does not know with ValidationError "... does not exist"."""
    details = error.response.get("Error", {})
    return details.get("Code") == "ValidationError" and "does not exist" in details.get("Message", "")


# CDK bootstrap -------------------------------------------------------------------------------------


def cdk_bootstrap(target: Target) -> Finding:
    """``cdk bootstrap`` ran here, recently enough: CDKToolkit exists and its version is high enough.

    The version lives in the SSM parameter ``/cdk-bootstrap/<qualifier>/version``, which every template
    reads as its ``BootstrapVersion`` parameter (CDK developer guide, "Bootstrapping").
    """
    cloudformation, ssm = target.client("cloudformation"), target.client("ssm")
    region = cloudformation.meta.region_name
    try:
        status = cloudformation.describe_stacks(StackName=TOOLKIT_STACK)["Stacks"][0]["StackStatus"]
    except ClientError as error:
        if not _stack_is_missing(error):
            raise
        return Finding(passed=False, found=f"no {TOOLKIT_STACK} stack in {region}", fix=_bootstrap(target))
    parameter = f"/cdk-bootstrap/{target.bootstrap_qualifier}/version"
    try:
        version = int(ssm.get_parameter(Name=parameter)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        return Finding(
            passed=False,
            found=f"{TOOLKIT_STACK} is {status}, but {parameter} is missing",
            fix=_bootstrap(target),
        )
    found = (
        f"{TOOLKIT_STACK} {status}, {parameter} = {version} (this CDK needs ≥ {REQUIRED_BOOTSTRAP_VERSION})"
    )
    if version < REQUIRED_BOOTSTRAP_VERSION:
        return Finding(passed=False, found=found, fix=_bootstrap(target))
    return Finding(passed=True, found=found)


def _bootstrap(target: Target) -> str:
    sts = target.client("sts")
    return f"npx cdk bootstrap aws://{sts.get_caller_identity()['Account']}/{sts.meta.region_name}"


# OpenSearch service-linked role --------------------------------------------------------------------


def opensearch_service_role(target: Target) -> Finding:
    """A domain in a VPC needs OpenSearch Service's service-linked role to place its network interfaces.

    OpenSearch Service uses ``AWSServiceRoleForAmazonOpenSearchService``, or the legacy
    ``AWSServiceRoleForAmazonElasticsearchService`` where an account has that one (OpenSearch Service
    developer guide, "Using service-linked roles to create VPC domains").
    """
    iam = target.client("iam")
    for role in (OPENSEARCH_ROLE, LEGACY_OPENSEARCH_ROLE):
        try:
            iam.get_role(RoleName=role)
        except iam.exceptions.NoSuchEntityException:
            continue
        return Finding(passed=True, found=f"{role} exists")
    return Finding(
        passed=False,
        found=f"no {OPENSEARCH_ROLE} (nor the legacy {LEGACY_OPENSEARCH_ROLE}): vpc=true needs it",
        fix="aws iam create-service-linked-role --aws-service-name opensearchservice.amazonaws.com",
    )


# OpenSearch instance types -------------------------------------------------------------------------


def instance_types(target: Target) -> Finding:
    """The data (and dedicated master) node types are offered for this engine version in this region."""
    config = target.config
    opensearch = target.client("opensearch")
    engine = f"OpenSearch_{config.engine_version}"
    offered = _offered_types(opensearch, engine)
    wanted = {"data_node_type": config.data_node_type}
    if config.master_nodes:
        wanted["master_node_type"] = config.master_node_type
    where = f"for {engine} in {opensearch.meta.region_name}"
    missing = {key: kind for key, kind in wanted.items() if kind not in offered}
    if not missing:
        return Finding(passed=True, found=f"{', '.join(wanted.values())} offered {where}")
    return Finding(
        passed=False,
        found=f"{', '.join(missing.values())} not offered {where}",
        fix="; ".join(_alternatives(key, kind, offered, engine=engine) for key, kind in missing.items()),
    )


def _offered_types(opensearch: Any, engine: str) -> set[str]:
    """Every instance type ListInstanceTypeDetails names (it has no boto3 paginator: NextToken by hand)."""
    offered: set[str] = set()
    token: dict[str, str] = {}
    while True:
        page = opensearch.list_instance_type_details(EngineVersion=engine, MaxResults=100, **token)
        offered.update(detail["InstanceType"] for detail in page.get("InstanceTypeDetails", []))
        if not page.get("NextToken"):
            return offered
        token = {"NextToken": page["NextToken"]}


def _alternatives(key: str, instance_type: str, offered: set[str], *, engine: str) -> str:
    family = instance_type.split(".")[0]
    same_family = sorted((t for t in offered if t.split(".")[0] == family), key=_size)[:4]
    if not same_family:
        return (
            f"choose another -c {key}=...: no {family} type is offered here "
            f"(`aws opensearch list-instance-type-details --engine-version {engine}` lists them)"
        )
    return f"-c {key}={same_family[0]} (offered in {family}: {', '.join(same_family)})"


def _size(instance_type: str) -> int:
    """Order by size: medium < large < xlarge < 2xlarge < 4xlarge; unknown sizes last."""
    size = instance_type.split(".")[1] if instance_type.count(".") >= 2 else ""
    if size in _SIZES:
        return _SIZES.index(size)
    multiple = size.removesuffix("xlarge")
    return len(_SIZES) + int(multiple) if multiple.isdigit() else 1_000


# errors --------------------------------------------------------------------------------------------


def _guarded(check: Check, target: Target) -> Finding:
    """The check's finding, or the AWS error it met as a failed finding with the fix for that error."""
    try:
        return check.run(target)
    except (NoCredentialsError, PartialCredentialsError) as error:
        return Finding(passed=False, found=str(error), fix=CREDENTIALS_FIX)
    except NoRegionError as error:
        return Finding(passed=False, found=str(error), fix=REGION_FIX)
    except ClientError as error:
        return Finding(passed=False, found=f"AWS error: {error}", fix=_fix_for(error))
    except BotoCoreError as error:
        return Finding(
            passed=False, found=f"AWS error: {error}", fix="check the network path to AWS, then retry"
        )


def _fix_for(error: ClientError) -> str:
    code = error.response.get("Error", {}).get("Code", "")
    if code in _DENIED:
        return (
            f"allow {error.operation_name} for this identity, or run preflight as the identity that deploys"
        )
    if code in _THROTTLED:
        return "AWS throttled the call: run preflight again in a minute"
    if code in _BAD_CREDENTIALS:
        return CREDENTIALS_FIX
    return "the check could not run: the AWS error says why"


CHECKS: tuple[Check, ...] = (
    Check("AWS credentials and region", credentials),
    Check("Lambda concurrency", lambda_concurrency),
    Check("CDK bootstrap", cdk_bootstrap),
    Check("OpenSearch service-linked role", opensearch_service_role, applies=lambda config: config.vpc),
    Check("OpenSearch instance types", instance_types),
)
"""In the order a user fixes them: without credentials nothing else can be read."""
