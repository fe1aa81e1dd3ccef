"""Does preflight tell a user, before `cdk deploy`, what the account lacks and how to fix it?

The account is moto's (``mock_aws``): STS, CloudFormation (stacks and their resources), SSM parameters,
IAM roles and Lambda's per-function concurrency are real moto APIs. moto 5.2.5 answers three calls
preflight makes with 404 "Not yet implemented": Lambda ``GetAccountSettings`` and
``ListProvisionedConcurrencyConfigs``, and OpenSearch ``ListInstanceTypeDetails``. Those (and the AWS
errors injected below) come from botocore's ``Stubber`` on a real client; it validates every canned
response against the botocore service model, so the shapes are AWS's. Each such helper says STUBBER.

Expectations come from AWS's documentation: Lambda lets functions reserve "up to the unreserved account
concurrency minus 100" (Lambda developer guide, "Configuring reserved concurrency"); ``cdk bootstrap``
records its version in the SSM parameter ``/cdk-bootstrap/<qualifier>/version``, default qualifier
``hnb659fds`` (CDK developer guide, "Bootstrapping"), and aws-cdk-lib 2.275.0's templates reject
versions 1-5; a VPC domain needs ``AWSServiceRoleForAmazonOpenSearchService`` or the legacy
``AWSServiceRoleForAmazonElasticsearchService`` (OpenSearch Service developer guide, "Using
service-linked roles to create VPC domains").
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID

from infra import preflight
from infra.account_checks import CheckResult, Target, run_checks
from infra.config import DeploymentConfig
from localmode import cli

REGION = "eu-west-1"
ENGINE = "OpenSearch_2.19"  # both profiles' engine_version
PROD_TYPES = ("r6g.large.search", "m6g.large.search")  # prod's data and master node types
DEV_TYPES = ("t3.medium.search",)
NEW_ACCOUNT_QUOTA = 10  # "new accounts have reduced concurrency" (Lambda quotas)


@pytest.fixture
def aws() -> Iterator[boto3.Session]:
    """An empty moto account, reached the way preflight reaches a real one: a boto3 session."""
    with mock_aws():
        yield boto3.Session(region_name=REGION)


def checks(
    session: boto3.Session, *, stubbed: Mapping[str, Any] | None = None, **context: str
) -> dict[str, CheckResult]:
    """Run every check on a deployment made with ``-c`` ``context``; ``stubbed`` replaces moto's clients."""
    config = DeploymentConfig.from_context(context, quota_measured=True)
    stubs = stubbed or {}
    target = Target.of(config, context, client=lambda service: stubs.get(service) or session.client(service))
    return {result.name: result for result in run_checks(target)}


# The account, as `cdk bootstrap`, IAM and a previous deploy leave it (moto) -------------------------


def bootstrapped(session: boto3.Session, *, version: int = 30, qualifier: str = "hnb659fds") -> None:
    """What `cdk bootstrap` leaves: the CDKToolkit stack, whose SSM parameter records its version."""
    parameter = {
        "Type": "AWS::SSM::Parameter",
        "Properties": {
            "Type": "String",
            "Name": f"/cdk-bootstrap/{qualifier}/version",
            "Value": str(version),
        },
    }
    session.client("cloudformation").create_stack(
        StackName="CDKToolkit", TemplateBody=json.dumps({"Resources": {"CdkBootstrapVersion": parameter}})
    )


def service_linked_role(
    session: boto3.Session, name: str = "AWSServiceRoleForAmazonOpenSearchService"
) -> None:
    # moto's create_service_linked_role names the role AWSServiceRoleForopensearchservice, not as AWS
    # does, so the role is created under the name and path AWS gives it
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "opensearchservice.amazonaws.com"}}]}
    session.client("iam").create_role(
        RoleName=name,
        Path="/aws-service-role/opensearchservice.amazonaws.com/",
        AssumeRolePolicyDocument=json.dumps(trust),
    )


def deployed_stack(session: boto3.Session, *, ingest_reserved: int) -> list[str]:
    """An earlier ImageSearch deployment's two functions (ingest reserves); their physical names."""
    trust = {"Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}}]}
    role = session.client("iam").create_role(RoleName="fn", AssumeRolePolicyDocument=json.dumps(trust))
    code = {"ZipFile": "def handler(event, context): return None"}
    function = {
        "Runtime": "python3.12",
        "Handler": "index.handler",
        "Role": role["Role"]["Arn"],
        "Code": code,
    }
    resources = {
        "IngestHandler": {
            "Type": "AWS::Lambda::Function",
            "Properties": function | {"ReservedConcurrentExecutions": ingest_reserved},
        },
        "QueryHandler": {"Type": "AWS::Lambda::Function", "Properties": function},
        "Uploads": {"Type": "AWS::SQS::Queue"},
    }
    cloudformation = session.client("cloudformation")
    cloudformation.create_stack(StackName="ImageSearch", TemplateBody=json.dumps({"Resources": resources}))
    summaries = cloudformation.list_stack_resources(StackName="ImageSearch")["StackResourceSummaries"]
    return [r["PhysicalResourceId"] for r in summaries if r["ResourceType"] == "AWS::Lambda::Function"]


# STUBBER: the calls moto does not implement ---------------------------------------------------------


def lambda_account(session: boto3.Session, *, quota: int, unreserved: int) -> tuple[Any, Stubber]:
    """STUBBER: a Lambda client whose GetAccountSettings reports this quota and unreserved concurrency."""
    client = session.client("lambda")
    stubber = Stubber(client)
    limit = {"ConcurrentExecutions": quota, "UnreservedConcurrentExecutions": unreserved}
    stubber.add_response(
        "get_account_settings", {"AccountLimit": limit, "AccountUsage": {"FunctionCount": 3}}
    )
    stubber.activate()
    return client, stubber


def offering(session: boto3.Session, *pages: tuple[str, ...]) -> Any:
    """STUBBER: an OpenSearch client whose ListInstanceTypeDetails names these types, one page per tuple."""
    client = session.client("opensearch")
    stubber = Stubber(client)
    for number, types in enumerate(pages, start=1):
        response: dict[str, Any] = {
            "InstanceTypeDetails": [{"InstanceType": t, "InstanceRole": ["Data", "Master"]} for t in types]
        }
        expected: dict[str, Any] = {"EngineVersion": ENGINE, "MaxResults": 100}
        if number < len(pages):
            response["NextToken"] = f"page-{number + 1}"
        if number > 1:
            expected["NextToken"] = f"page-{number}"
        stubber.add_response("list_instance_type_details", response, expected)
    stubber.activate()
    return client


def ready_for_prod(session: boto3.Session) -> dict[str, Any]:
    """An account where prod in a VPC fits: the default quota, bootstrapped, the role present."""
    bootstrapped(session)
    service_linked_role(session)
    lambda_, _ = lambda_account(session, quota=1000, unreserved=1000)
    return {"lambda": lambda_, "opensearch": offering(session, PROD_TYPES)}


# All pass ------------------------------------------------------------------------------------------


def test_a_ready_account_passes_every_check_and_prod_learns_its_account_concurrency(
    aws: boto3.Session, capsys: pytest.CaptureFixture[str]
) -> None:
    results = checks(aws, stubbed=ready_for_prod(aws), profile="prod", vpc="true")

    assert list(results) == [
        "AWS credentials and region",
        "Lambda concurrency",
        "CDK bootstrap",
        "OpenSearch service-linked role",
        "OpenSearch instance types",
    ]
    assert all(result.passed for result in results.values()), results
    assert f"account {DEFAULT_ACCOUNT_ID} in {REGION}" in results["AWS credentials and region"].finding.found
    # synth needs the quota stated whenever something is reserved (infra/config.py): the exact option
    assert results["Lambda concurrency"].finding.fix == "pass -c account_concurrency=1000 to cdk deploy"
    assert preflight.report(list(results.values()), as_json=False) == 0
    assert "5 of 5 checks passed" in capsys.readouterr().out


def test_dev_reserves_nothing_so_it_needs_no_quota_and_no_account_concurrency(aws: boto3.Session) -> None:
    bootstrapped(aws)
    unused_lambda = Stubber(aws.client("lambda"))  # no response queued: any Lambda call would fail the test
    unused_lambda.activate()

    results = checks(aws, stubbed={"lambda": unused_lambda.client, "opensearch": offering(aws, DEV_TYPES)})

    assert all(result.passed for result in results.values()), results
    assert results["Lambda concurrency"].finding.fix == ""
    assert "OpenSearch service-linked role" not in results  # vpc=false: no domain in a VPC


# Lambda concurrency --------------------------------------------------------------------------------


@pytest.mark.parametrize(("unreserved", "fits"), [(111, True), (110, False)])
def test_prod_must_leave_100_of_the_account_unreserved(
    aws: boto3.Session, unreserved: int, fits: bool
) -> None:
    """prod reserves 10 for ingestion and provisions 1 for queries: 11 + 100 = 111 unreserved needed."""
    lambda_, _ = lambda_account(aws, quota=1000, unreserved=unreserved)

    result = checks(aws, stubbed={"lambda": lambda_}, profile="prod")["Lambda concurrency"]

    assert result.passed is fits


def test_a_new_account_fails_with_the_quota_to_ask_for_or_how_to_deploy_without(aws: boto3.Session) -> None:
    lambda_, _ = lambda_account(aws, quota=NEW_ACCOUNT_QUOTA, unreserved=NEW_ACCOUNT_QUOTA)

    result = checks(aws, stubbed={"lambda": lambda_}, profile="prod")["Lambda concurrency"]

    assert not result.passed
    assert "quota 10, 10 unreserved" in result.finding.found
    assert "at least 111" in result.finding.fix  # 101 short of the 111 needed
    assert "other functions" not in result.finding.fix  # nothing else reserves: nothing to free
    assert "-c ingest_reserved_concurrency=0 -c query_provisioned_concurrency=0" in result.finding.fix


def test_what_other_functions_hold_is_named_when_freeing_it_would_be_enough(aws: boto3.Session) -> None:
    lambda_, _ = lambda_account(aws, quota=1000, unreserved=100)  # 900 reserved elsewhere in the account

    result = checks(aws, stubbed={"lambda": lambda_}, profile="prod")["Lambda concurrency"]

    assert not result.passed
    assert "or free 11 of the 900 that other functions hold" in result.finding.fix


def test_a_stated_account_concurrency_that_differs_from_the_account_is_pointed_out(
    aws: boto3.Session,
) -> None:
    lambda_, _ = lambda_account(aws, quota=NEW_ACCOUNT_QUOTA, unreserved=NEW_ACCOUNT_QUOTA)

    result = checks(aws, stubbed={"lambda": lambda_}, profile="prod", account_concurrency="1000")

    assert (
        "-c account_concurrency=1000 differs from the account's 10"
        in result["Lambda concurrency"].finding.found
    )


def test_on_a_redeploy_what_the_stack_holds_already_counts_as_available(aws: boto3.Session) -> None:
    """The deployed stack's 10 reserved + 1 provisioned are already missing from the unreserved 109.

    Provisioned concurrency "counts towards a function's reserved concurrency and Regional quotas"
    (Lambda developer guide), so a quota of 120 holds prod's 11 plus 100 unreserved, deployed or not.
    """
    ingest, query = deployed_stack(aws, ingest_reserved=10)
    lambda_, stubber = lambda_account(aws, quota=120, unreserved=109)
    # STUBBER: the reserved concurrency is moto's (the stack set it); the client is stubbed as a whole,
    # so its answers are repeated here, then the provisioned concurrency moto does not implement
    assert (
        aws.client("lambda").get_function_concurrency(FunctionName=ingest)["ReservedConcurrentExecutions"]
        == 10
    )
    stubber.add_response(
        "get_function_concurrency", {"ReservedConcurrentExecutions": 10}, {"FunctionName": ingest}
    )
    stubber.add_response("get_function_concurrency", {}, {"FunctionName": query})
    provisioned = {"FunctionArn": f"arn:aws:lambda:{REGION}:{DEFAULT_ACCOUNT_ID}:function:{query}:live"}
    stubber.add_response(
        "list_provisioned_concurrency_configs",
        {"ProvisionedConcurrencyConfigs": [provisioned | {"RequestedProvisionedConcurrentExecutions": 1}]},
        {"FunctionName": query},
    )

    result = checks(aws, stubbed={"lambda": lambda_}, profile="prod")["Lambda concurrency"]

    assert result.passed, result
    assert "(+11 that this stack's functions hold now)" in result.finding.found
    stubber.assert_no_pending_responses()


# CDK bootstrap -------------------------------------------------------------------------------------


def test_without_bootstrap_the_fix_is_cdk_bootstrap_of_this_account_and_region(aws: boto3.Session) -> None:
    result = checks(aws, stubbed={"opensearch": offering(aws, DEV_TYPES)})["CDK bootstrap"]

    assert not result.passed
    assert result.finding.fix == f"npx cdk bootstrap aws://{DEFAULT_ACCOUNT_ID}/{REGION}"


@pytest.mark.parametrize(("version", "fits"), [(5, False), (6, True)])
def test_the_bootstrap_must_be_version_6_or_later(aws: boto3.Session, version: int, fits: bool) -> None:
    bootstrapped(aws, version=version)

    result = checks(aws)["CDK bootstrap"]

    assert result.passed is fits
    assert f"/cdk-bootstrap/hnb659fds/version = {version}" in result.finding.found


def test_a_qualifier_set_in_context_is_the_bootstrap_looked_for(aws: boto3.Session) -> None:
    bootstrapped(aws, qualifier="team42")

    results = checks(aws, **{"@aws-cdk/core:bootstrapQualifier": "team42"})

    assert results["CDK bootstrap"].passed
    assert not checks(aws)["CDK bootstrap"].passed  # the default qualifier's parameter is not there


# OpenSearch service-linked role --------------------------------------------------------------------


def test_a_vpc_domain_without_the_service_linked_role_fails_with_the_command_that_creates_it(
    aws: boto3.Session,
) -> None:
    result = checks(aws, vpc="true")["OpenSearch service-linked role"]

    assert not result.passed
    assert (
        result.finding.fix
        == "aws iam create-service-linked-role --aws-service-name opensearchservice.amazonaws.com"
    )


def test_the_legacy_elasticsearch_role_serves_a_vpc_domain_too(aws: boto3.Session) -> None:
    service_linked_role(aws, "AWSServiceRoleForAmazonElasticsearchService")

    assert checks(aws, vpc="true")["OpenSearch service-linked role"].passed


# OpenSearch instance types -------------------------------------------------------------------------


def test_a_type_not_offered_names_the_override_and_the_offered_types_of_its_family(
    aws: boto3.Session,
) -> None:
    offered = ("r6g.2xlarge.search", "r6g.xlarge.search", "m6g.large.search", "t3.medium.search")

    result = checks(aws, stubbed={"opensearch": offering(aws, offered)}, profile="prod")[
        "OpenSearch instance types"
    ]

    assert not result.passed
    assert result.finding.found == f"r6g.large.search not offered for {ENGINE} in {REGION}"
    assert result.finding.fix == (
        "-c data_node_type=r6g.xlarge.search (offered in r6g: r6g.xlarge.search, r6g.2xlarge.search)"
    )


def test_a_master_type_of_a_family_not_offered_says_where_to_list_them(aws: boto3.Session) -> None:
    result = checks(aws, stubbed={"opensearch": offering(aws, ("r6g.large.search",))}, profile="prod")

    fix = result["OpenSearch instance types"].finding.fix
    assert fix.startswith("choose another -c master_node_type=...: no m6g type is offered here")


def test_instance_types_are_read_across_every_page(aws: boto3.Session) -> None:
    opensearch = offering(aws, ("t3.small.search",), ("t3.medium.search",))

    assert checks(aws, stubbed={"opensearch": opensearch})["OpenSearch instance types"].passed


# AWS errors ----------------------------------------------------------------------------------------


def test_a_denied_call_fails_its_check_alone_and_the_others_still_run(aws: boto3.Session) -> None:
    stubbed = ready_for_prod(aws)
    iam = Stubber(aws.client("iam"))  # STUBBER: an identity without iam:GetRole
    iam.add_client_error("get_role", service_error_code="AccessDenied", http_status_code=403)
    iam.activate()

    results = checks(aws, stubbed=stubbed | {"iam": iam.client}, profile="prod", vpc="true")

    denied = results.pop("OpenSearch service-linked role")
    assert not denied.passed
    assert "AccessDenied" in denied.finding.found
    assert denied.finding.fix.startswith("allow GetRole for this identity")
    assert all(result.passed for result in results.values()), results


def test_throttling_is_reported_with_a_retry(aws: boto3.Session) -> None:
    lambda_ = Stubber(aws.client("lambda"))  # STUBBER: Lambda's 429
    lambda_.add_client_error(
        "get_account_settings", service_error_code="TooManyRequestsException", http_status_code=429
    )
    lambda_.activate()

    result = checks(aws, stubbed={"lambda": lambda_.client}, profile="prod")["Lambda concurrency"]

    assert not result.passed
    assert result.finding.fix == "AWS throttled the call: run preflight again in a minute"


@pytest.mark.usefixtures("aws")  # moto's account and credentials
def test_without_a_region_the_first_row_says_how_to_name_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))

    results = checks(boto3.Session(), profile="prod")

    assert all(not result.passed for result in results.values()), results
    assert results["AWS credentials and region"].finding.fix.startswith("name the region: --region R")


# The command: context, exit statuses, output --------------------------------------------------------


@pytest.fixture
def no_aws_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials anywhere boto3 looks: environment, shared files, instance metadata."""
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.usefixtures("no_aws_credentials")
def test_prod_without_a_stated_quota_still_runs_and_without_credentials_every_check_says_how_to_fix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Synth refuses prod without -c account_concurrency; preflight is how the user learns that number."""
    status = preflight.main(["-c", "profile=prod", "--region", REGION, "--json"])

    output = capsys.readouterr()
    report = json.loads(output.out)
    assert status == 1
    assert report["passed"] is False
    assert [check["check"] for check in report["checks"]] == [
        "AWS credentials and region",
        "Lambda concurrency",
        "CDK bootstrap",
        "OpenSearch instance types",
    ]
    assert all(not c["passed"] and "aws configure" in c["fix"] for c in report["checks"]), report
    assert "Traceback" not in output.err


@pytest.mark.usefixtures("no_aws_credentials")
def test_the_table_has_one_aligned_row_per_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["preflight", "--region", REGION]) == 1

    lines = capsys.readouterr().out.splitlines()
    results = {line.split("  ")[0]: line for line in lines if " FAIL " in line or " pass " in line}
    assert list(results) == [
        "AWS credentials and region",
        "Lambda concurrency",
        "CDK bootstrap",
        "OpenSearch instance types",
    ]
    assert (
        len({line.find(" FAIL ") if " FAIL " in line else line.find(" pass ") for line in results.values()})
        == 1
    )
    assert " pass " in results["Lambda concurrency"]  # dev reserves nothing: no call, no credentials needed
    assert lines[-1] == "1 of 4 checks passed: fix the failures, then run again"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-c", "data_nodes=two"], "context data_nodes='two': must be an integer"),
        (["-c", "master_nodes=2"], "master_nodes must be 0, 3 or 5"),
        (["-c", "profile"], "-c 'profile' is not KEY=VALUE"),
        (["--profile", "no-such-profile"], "no-such-profile"),
    ],
)
@pytest.mark.usefixtures("no_aws_credentials")
def test_invalid_context_or_options_exit_2_with_the_message_only(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["preflight", *argv]) == 2

    output = capsys.readouterr()
    assert message in output.err
    assert "Traceback" not in output.err
    assert output.out == ""


def test_context_is_ranked_as_the_cdk_cli_ranks_it() -> None:
    """-c wins over cdk.json's context (profile=dev there), and a value keeps every '=' after the first."""
    assert preflight.deploy_context([])["profile"] == "dev"
    context = preflight.deploy_context(["profile=prod", "cors_origin=https://a.example/?x=1"])
    assert (context["profile"], context["cors_origin"]) == ("prod", "https://a.example/?x=1")
    assert context["@aws-cdk/core:checkSecretUsage"] is True  # cdk.json's own keys come along
