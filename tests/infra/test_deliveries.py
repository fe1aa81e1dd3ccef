"""Does every delivery between services pass the policies AWS will evaluate for it?

Each edge of the deployed system is a request one AWS service sends to another, on its own behalf (a
service principal, with the confused-deputy context keys AWS documents for it) or on a role's. Each is
evaluated by the IAM simulator against the synthesized template's policies: the resource policy of the
target (queue, topic, key, function, log group, domain) and, for roles, their identity policies. The
same request from another account, bucket, alarm or API must be refused, or the conditions are decor.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.config import PROFILES
from infra.packaging import (
    BACKFILL_HANDLER,
    BOOTSTRAP_HANDLER,
    INGEST_HANDLER,
    QUERY_HANDLER,
    REINDEX_HANDLER,
)
from infra.query_api import ROUTES, STAGE
from infra.reindex import INVENTORY_PREFIX
from tests.iam.policies import identity_policies, resource_policy, role_of_function, role_session
from tests.iam.simulator import Decision, Request, simulate
from tests.iam.template import ACCOUNT, PARTITION, REGION, ResolvedTemplate
from tests.infra.conftest import Synthesis

pytestmark = pytest.mark.infra

OTHER_ACCOUNT = "999988887777"
TLS = {"aws:SecureTransport": "true"}


@pytest.fixture(scope="module")
def template(synthesis: Synthesis) -> ResolvedTemplate:
    return ResolvedTemplate.of(synthesis.template_json)


def only(template: ResolvedTemplate, kind: str, where: str = "") -> str:
    [name] = [name for name in template.of_type(kind) if where in name]
    return name


def from_service(
    template: ResolvedTemplate, service: str, action: str, resource: str, **context: str
) -> Request:
    return Request(
        principal=service,
        action=action,
        resource=resource,
        context={**TLS, **context},
        resource_policy=resource_policy(template, resource),
    )


def from_role(template: ResolvedTemplate, role: str, action: str, resource: str) -> Request:
    return Request(
        principal=role_session(template, role),
        action=action,
        resource=resource,
        context=TLS,
        identity_policies=identity_policies(template, role),
        resource_policy=resource_policy(template, resource),
    )


def refused(decisions: list[Decision]) -> list[str]:
    return [str(d) for d in decisions if not d.allowed]


def admitted(decisions: list[Decision]) -> list[str]:
    return [str(d) for d in decisions if d.allowed]


def test_s3_notifies_the_uploads_queue_for_this_bucket_and_account_only(template: ResolvedTemplate) -> None:
    queue = template.arn(only(template, "AWS::SQS::Queue", "Uploads"))
    bucket = template.arn(only(template, "AWS::S3::Bucket", "StoreImages"))
    s3 = "s3.amazonaws.com"
    assert refused(simulate([
        from_service(template, s3, "sqs:SendMessage", queue,
                     **{"aws:SourceArn": bucket, "aws:SourceAccount": ACCOUNT}),
    ])) == []  # fmt: skip
    assert admitted(simulate([
        from_service(template, s3, "sqs:SendMessage", queue,
                     **{"aws:SourceArn": bucket, "aws:SourceAccount": OTHER_ACCOUNT}),
        from_service(template, s3, "sqs:SendMessage", queue,
                     **{"aws:SourceArn": "arn:aws:s3:::someone-elses-bucket", "aws:SourceAccount": ACCOUNT}),
    ])) == []  # fmt: skip


def test_the_ingest_function_polls_and_settles_the_uploads_queue(template: ResolvedTemplate) -> None:
    """Lambda's SQS event source reads with the function's role (the Lambda developer guide's list)."""
    queue = template.arn(only(template, "AWS::SQS::Queue", "Uploads"))
    role = role_of_function(template, INGEST_HANDLER)
    actions = (
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
        "sqs:ChangeMessageVisibility",
    )
    assert refused(simulate([from_role(template, role, action, queue) for action in actions])) == []


def test_every_alarm_may_publish_to_the_topic_and_use_its_key(template: ResolvedTemplate) -> None:
    topic = template.ref(only(template, "AWS::SNS::Topic"))
    key = template.arn(only(template, "AWS::KMS::Key"))
    cloudwatch = "cloudwatch.amazonaws.com"
    requests = []
    for alarm in template.of_type("AWS::CloudWatch::Alarm"):
        origin = {"aws:SourceArn": template.arn(alarm), "aws:SourceAccount": ACCOUNT}
        requests += [
            from_service(template, cloudwatch, "sns:Publish", topic, **origin),
            from_service(template, cloudwatch, "kms:GenerateDataKey", key, **origin),
            from_service(template, cloudwatch, "kms:Decrypt", key, **origin),
        ]
    assert len(requests) >= 3 * 20
    assert refused(simulate(requests)) == []


def test_alarms_of_another_account_or_stack_may_not_publish(template: ResolvedTemplate) -> None:
    topic = template.ref(only(template, "AWS::SNS::Topic"))
    key = template.arn(only(template, "AWS::KMS::Key"))
    cloudwatch = "cloudwatch.amazonaws.com"
    foreign_alarm = f"arn:{PARTITION}:cloudwatch:{REGION}:{OTHER_ACCOUNT}:alarm:ImageSearch-DomainRed"
    other_stack = f"arn:{PARTITION}:cloudwatch:{REGION}:{ACCOUNT}:alarm:OtherStack-DomainRed"
    assert admitted(simulate([
        from_service(template, cloudwatch, "sns:Publish", topic,
                     **{"aws:SourceArn": foreign_alarm, "aws:SourceAccount": OTHER_ACCOUNT}),
        from_service(template, cloudwatch, "sns:Publish", topic,
                     **{"aws:SourceArn": other_stack, "aws:SourceAccount": ACCOUNT}),
        from_service(template, cloudwatch, "kms:GenerateDataKey", key,
                     **{"aws:SourceArn": foreign_alarm, "aws:SourceAccount": OTHER_ACCOUNT}),
    ])) == []  # fmt: skip


def test_api_gateway_invokes_the_query_alias_for_each_route_of_this_api_only(
    template: ResolvedTemplate,
) -> None:
    alias = template.ref(only(template, "AWS::Lambda::Alias"))
    api = template.ref(only(template, "AWS::ApiGateway::RestApi"))
    gateway = "apigateway.amazonaws.com"

    def route(api_id: str, method: str, path: str) -> Request:
        source = f"arn:{PARTITION}:execute-api:{REGION}:{ACCOUNT}:{api_id}/{STAGE}/{method}/{path}"
        return from_service(template, gateway, "lambda:InvokeFunction", alias, **{"aws:SourceArn": source})

    concrete = [(method, path.replace("{id}", "some-image-id")) for method, path, _ in ROUTES]
    assert refused(simulate([route(api, method, path) for method, path in concrete])) == []
    assert admitted(simulate([route("otherapi01", method, path) for method, path in concrete])) == []


def test_the_provider_framework_invokes_the_bootstrap_function(template: ResolvedTemplate) -> None:
    framework_role = role_of_function_named(template, "IndexBootstrapProviderframeworkonEvent")
    bootstrap = function_arn(template, BOOTSTRAP_HANDLER)
    assert refused(simulate([from_role(template, framework_role, "lambda:InvokeFunction", bootstrap)])) == []


def test_opensearch_writes_its_logs_to_its_log_groups_for_this_domain_only(
    template: ResolvedTemplate,
) -> None:
    domain = template.arn(only(template, "AWS::OpenSearchService::Domain"))
    groups = [
        template.arn(g).removesuffix(":*") for g in template.of_type("AWS::Logs::LogGroup") if "Search" in g
    ]
    assert len(groups) >= 3  # application, slow search, slow index (and audit in prod)
    es = "es.amazonaws.com"

    def deliveries(source_account: str, source_arn: str) -> Iterator[Request]:
        context = {"aws:SourceArn": source_arn, "aws:SourceAccount": source_account}
        for group in groups:
            stream = f"{group}:log-stream:node-1"
            yield from_service(template, es, "logs:CreateLogStream", stream, **context)
            yield from_service(template, es, "logs:PutLogEvents", stream, **context)

    assert refused(simulate(list(deliveries(ACCOUNT, domain)))) == []
    foreign = f"arn:{PARTITION}:es:{REGION}:{OTHER_ACCOUNT}:domain/other"
    assert admitted(simulate(list(deliveries(OTHER_ACCOUNT, foreign)))) == []


def test_deploy_time_helpers_may_do_their_one_job(template: ResolvedTemplate) -> None:
    """CDK's helper functions: set the domain's access policy, the bucket's notifications."""
    domain = template.arn(only(template, "AWS::OpenSearchService::Domain"))
    bucket = template.arn(only(template, "AWS::S3::Bucket", "StoreImages"))
    sdk_role = role_of_function_named(template, "AWS679f53fac002430cb0da5b7982bd2287")
    notifications_role = role_of_function_named(template, "BucketNotificationsHandler")
    assert refused(simulate([
        from_role(template, sdk_role, "es:UpdateDomainConfig", domain),
        from_role(template, notifications_role, "s3:PutBucketNotification", bucket),
    ])) == []  # fmt: skip


def role_of_function_named(template: ResolvedTemplate, prefix: str) -> str:
    [role_arn] = [
        f["Properties"]["Role"]
        for name, f in template.of_type("AWS::Lambda::Function").items()
        if name.startswith(prefix)
    ]
    return next(name for name in template.of_type("AWS::IAM::Role") if template.arn(name) == role_arn)


def function_arn(template: ResolvedTemplate, handler: str) -> str:
    [name] = [
        n
        for n, f in template.of_type("AWS::Lambda::Function").items()
        if f["Properties"].get("Handler") == handler
    ]
    return template.arn(name)


def role_of_state_machine(template: ResolvedTemplate) -> str:
    [machine] = template.of_type("AWS::StepFunctions::StateMachine").values()
    arn = machine["Properties"]["RoleArn"]
    return next(name for name in template.of_type("AWS::IAM::Role") if template.arn(name) == arn)


def test_the_state_machine_may_list_the_bucket_invoke_its_two_functions_and_write_reports_only(
    template: ResolvedTemplate,
) -> None:
    role = role_of_state_machine(template)
    machine = template.ref(only(template, "AWS::StepFunctions::StateMachine"))
    images = template.arn(only(template, "AWS::S3::Bucket", "StoreImages"))
    reports = template.arn(only(template, "AWS::S3::Bucket", "Reports"))
    models = template.arn(only(template, "AWS::S3::Bucket", "Models"))
    execution = machine.replace(":stateMachine:", ":execution:") + ":backfill-1"
    assert refused(simulate([
        from_role(template, role, "s3:ListBucket", images),
        from_role(template, role, "lambda:InvokeFunction", function_arn(template, BACKFILL_HANDLER)),
        from_role(template, role, "lambda:InvokeFunction", function_arn(template, REINDEX_HANDLER)),
        from_role(template, role, "s3:PutObject", f"{reports}/backfills/run/SUCCEEDED_0.json"),
        from_role(template, role, "states:StartExecution", machine),
        from_role(template, role, "states:DescribeExecution", execution),
    ])) == []  # fmt: skip
    assert admitted(simulate([
        from_role(template, role, "lambda:InvokeFunction", function_arn(template, INGEST_HANDLER)),
        from_role(template, role, "lambda:InvokeFunction", function_arn(template, QUERY_HANDLER)),
        from_role(template, role, "s3:GetObject", f"{images}/cats/1.jpg"),
        from_role(template, role, "s3:PutObject", f"{images}/cats/1.jpg"),
        from_role(template, role, "s3:PutObject", f"{models}/models/any/model.onnx"),
        from_role(template, role, "states:StartExecution", machine + "-another"),
    ])) == []  # fmt: skip


def test_the_bootstrap_may_publish_models_and_start_the_reindex_but_not_write_reports(
    template: ResolvedTemplate,
) -> None:
    role = role_of_function_named(template, "IndexBootstrapHandler")
    machine = template.ref(only(template, "AWS::StepFunctions::StateMachine"))
    models = template.arn(only(template, "AWS::S3::Bucket", "Models"))
    reports = template.arn(only(template, "AWS::S3::Bucket", "Reports"))
    assert refused(simulate([
        from_role(template, role, "s3:PutObject", f"{models}/models/resnet50-c1/model.onnx"),
        from_role(template, role, "s3:GetObject", f"{models}/models/resnet50-c1/manifest.json"),
        from_role(template, role, "states:StartExecution", machine),
    ])) == []  # fmt: skip
    assert admitted(simulate([
        from_role(template, role, "s3:PutObject", f"{reports}/backfills/x.json"),
        from_role(template, role, "s3:PutObject", f"{models}/elsewhere/model.onnx"),
    ])) == []  # fmt: skip


def test_s3_delivers_the_inventory_of_this_bucket_and_account_only(
    template: ResolvedTemplate, synthesis: Synthesis
) -> None:
    if not PROFILES[synthesis.profile].inventory:
        pytest.skip(f"profile {synthesis.profile} keeps no inventory")
    images = template.arn(only(template, "AWS::S3::Bucket", "StoreImages"))
    reports = template.arn(only(template, "AWS::S3::Bucket", "Reports"))
    report = f"{reports}/{INVENTORY_PREFIX}/{images.rsplit(':', 1)[1]}/backfill/data/1.csv.gz"
    delivery = {
        "aws:SourceArn": images,
        "aws:SourceAccount": ACCOUNT,
        "s3:x-amz-acl": "bucket-owner-full-control",
    }
    s3 = "s3.amazonaws.com"
    assert refused(simulate([from_service(template, s3, "s3:PutObject", report, **delivery)])) == []
    another_account = {**delivery, "aws:SourceAccount": OTHER_ACCOUNT}
    another_bucket = {**delivery, "aws:SourceArn": "arn:aws:s3:::other"}
    assert admitted(simulate([
        from_service(template, s3, "s3:PutObject", report, **another_account),
        from_service(template, s3, "s3:PutObject", report, **another_bucket),
        from_service(template, s3, "s3:PutObject", f"{reports}/backfills/x.json", **delivery),
    ])) == []  # fmt: skip
