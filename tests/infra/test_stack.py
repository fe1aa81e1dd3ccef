"""Does the stack synthesise what we intend: encrypted, TLS-only, least privilege, alarmed, x86_64?

Assertions read the templates of the session's CLI synths (one per profile) and of one in-process variant
(VPC + IAM auth); they check properties, never hashed logical ids.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from handlers.gateway import BINARY_MEDIA_TYPES
from infra.config import INDEX_REQUESTS_PER_QUERY, PROFILES, QUERY_RESERVE_S
from infra.ingestion import MAX_RECEIVES
from infra.packaging import (
    BACKFILL_HANDLER,
    HANDLERS,
    INGEST_HANDLER,
    LAMBDA_MODEL_DIR,
    MODELS,
    QUERY_HANDLER,
    REINDEX_HANDLER,
)
from infra.query_api import ROUTES
from simsearch.errors import ConfigError
from simsearch.manifest import ModelManifest
from simsearch.models import MODELS_PREFIX
from simsearch.settings import Settings
from tests.infra.conftest import ROOT, SYNTH_MODEL, VARIANT_CORS_ORIGIN, Synthesis, in_process_stack

pytestmark = pytest.mark.infra

Resources = dict[str, dict[str, Any]]


def resources(template: Mapping[str, Any], kind: str) -> Resources:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def our_functions(template: Mapping[str, Any]) -> Resources:
    """The functions built from lambdas/ (CDK adds helper functions of its own)."""
    functions = resources(template, "AWS::Lambda::Function")
    return {name: f for name, f in functions.items() if f["Properties"].get("Handler") in HANDLERS}


def function_with(template: dict[str, Any], handler: str) -> dict[str, Any]:
    [function] = [f for f in our_functions(template).values() if f["Properties"]["Handler"] == handler]
    return function


def access_policy(template: dict[str, Any]) -> dict[str, Any]:
    """The domain's resource policy, which CDK sets through a custom resource (JSON inside Fn::Join)."""
    [custom] = resources(template, "Custom::OpenSearchAccessPolicy").values()
    parts = custom["Properties"]["Create"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else f"<{_reference(p)}>" for p in parts)
    return json.loads(json.loads(text)["parameters"]["AccessPolicies"])  # type: ignore[no-any-return]


def _prefix(synthesis: Synthesis) -> str:
    return PROFILES[synthesis.profile].index_prefix


def _reference(token: dict[str, Any]) -> str:
    if "Ref" in token:
        return str(token["Ref"])
    resource, attribute = token["Fn::GetAtt"]
    return f"{resource}.{attribute}"


def test_domain_encrypts_at_rest_and_between_nodes_and_accepts_only_tls_1_2(synthesis: Synthesis) -> None:
    synthesis.template.has_resource_properties(
        "AWS::OpenSearchService::Domain",
        {
            "EncryptionAtRestOptions": {"Enabled": True},
            "NodeToNodeEncryptionOptions": {"Enabled": True},
            "DomainEndpointOptions": {
                "EnforceHTTPS": True,
                "TLSSecurityPolicy": "Policy-Min-TLS-1-2-PFS-2023-10",
            },
            "EngineVersion": "OpenSearch_2.19",
        },
    )


def test_fine_grained_access_control_is_on_with_the_bootstrap_role_as_master(synthesis: Synthesis) -> None:
    template = synthesis.template_json
    [domain] = resources(template, "AWS::OpenSearchService::Domain").values()
    security = domain["Properties"]["AdvancedSecurityOptions"]
    assert security["Enabled"] is True and security["InternalUserDatabaseEnabled"] is False
    master_role = security["MasterUserOptions"]["MasterUserARN"]["Fn::GetAtt"][0]
    bootstrap = function_with(template, "handlers.index_bootstrap.handler")
    assert bootstrap["Properties"]["Role"] == {"Fn::GetAtt": [master_role, "Arn"]}


def test_no_policy_grants_a_wildcard_es_action(synthesis: Synthesis) -> None:
    template = synthesis.template_json
    statements = [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ] + access_policy(template)["Statement"]
    actions = [
        a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]
    assert any(a.startswith("es:") for a in actions)
    assert [a for a in actions if a == "*" or (a.startswith("es:") and "*" in a)] == []


def test_domain_admits_only_the_stack_roles(synthesis: Synthesis) -> None:
    """Who may reach the domain at all; what each may send is replayed from recorded traffic
    (tests/integration/test_deployed_access.py)."""
    template = synthesis.template_json
    principals = {s["Principal"]["AWS"] for s in access_policy(template)["Statement"]}
    roles = {function_with(template, handler)["Properties"]["Role"]["Fn::GetAtt"][0] for handler in HANDLERS}
    assert principals == {f"<{role}.Arn>" for role in roles}


def test_opensearch_roles_map_each_function_to_least_privilege(synthesis: Synthesis) -> None:
    template = synthesis.template_json
    [custom] = resources(template, "Custom::SearchAccessRoles").values()
    roles = custom["Properties"]["Roles"]
    reader, writer, operator = (
        next(r for name, r in roles.items() if name.endswith(f"_{kind}"))
        for kind in ("reader", "writer", "operator")
    )

    def role(handler: str) -> object:
        return function_with(template, handler)["Properties"]["Role"]

    assert reader["backend_roles"] == [role(QUERY_HANDLER)]
    assert writer["backend_roles"] == [role(INGEST_HANDLER), role(BACKFILL_HANDLER)]
    assert operator["backend_roles"] == [role(REINDEX_HANDLER)]
    writes = {"crud", "write", "indices:data/write/*", "create_index"}
    for read_only in (reader, operator):
        assert not writes & set(read_only["index_permissions"][0]["allowed_actions"])
    assert {"crud", "create_index"} <= set(writer["index_permissions"][0]["allowed_actions"])
    assert {"indices:admin/aliases", "indices:admin/delete"} <= set(
        operator["index_permissions"][0]["allowed_actions"]
    )
    for role in (reader, writer, operator):
        assert [p["index_patterns"] for p in role["index_permissions"]] == [[f"{_prefix(synthesis)}-*"]]
        assert "*" not in role["cluster_permissions"] + role["index_permissions"][0]["allowed_actions"]


def test_vector_index_resource_uses_the_manifest_dimension_and_the_shared_names(synthesis: Synthesis) -> None:
    manifest = ModelManifest.load(MODELS / SYNTH_MODEL)
    config = PROFILES[synthesis.profile]
    settings = Settings(model_dir=Path(LAMBDA_MODEL_DIR), images_bucket="unused")
    synthesis.template.has_resource_properties(
        "Custom::VectorIndex",
        {
            "Prefix": config.index_prefix,
            "ModelId": manifest.model_id,
            "ModelUri": {
                "Fn::Join": [
                    "",
                    [
                        "s3://",
                        {"Ref": Match.string_like_regexp("^ArtifactsModels")},
                        f"/{MODELS_PREFIX}{manifest.model_id}/",
                    ],
                ]
            },
            "StateMachineArn": {"Ref": Match.string_like_regexp("^ReindexStateMachine")},
            "Dimension": manifest.embedding_dim,
            "Engine": settings.engine,
            "SpaceType": settings.space_type,
            "M": settings.hnsw_m,
            "EfConstruction": settings.hnsw_ef_construction,
            "EfSearch": settings.hnsw_ef_search,
            "Replicas": config.index_replicas,
        },
    )


def test_every_function_is_python_3_12_on_x86_64_with_the_settings_environment(synthesis: Synthesis) -> None:
    functions = our_functions(synthesis.template_json)
    assert {f["Properties"]["Handler"] for f in functions.values()} == set(HANDLERS)
    expected_variables = set(Settings(model_dir=Path(LAMBDA_MODEL_DIR), images_bucket="b").to_env())
    for function in functions.values():
        properties = function["Properties"]
        assert (properties["Runtime"], properties["Architectures"]) == ("python3.12", ["x86_64"])
        variables = properties["Environment"]["Variables"]
        assert set(variables) == expected_variables
        assert variables["SIMSEARCH_MODEL_DIR"] == LAMBDA_MODEL_DIR


@pytest.mark.parametrize("handler", HANDLERS)
def test_each_handler_path_names_a_callable(handler: str) -> None:
    module, _, attribute = handler.rpartition(".")
    assert callable(getattr(importlib.import_module(module), attribute))


def test_uploads_queue_has_a_dead_letter_queue_and_outlasts_six_function_timeouts(
    synthesis: Synthesis,
) -> None:
    template = synthesis.template_json
    queues = resources(template, "AWS::SQS::Queue")
    [(uploads_id, uploads)] = [(n, q) for n, q in queues.items() if "RedrivePolicy" in q["Properties"]]
    [dead_letters_id] = set(queues) - {uploads_id}
    redrive = uploads["Properties"]["RedrivePolicy"]
    assert redrive == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dead_letters_id, "Arn"]},
        "maxReceiveCount": MAX_RECEIVES,
    }
    ingest = function_with(template, "handlers.ingest.handler")["Properties"]
    assert uploads["Properties"]["VisibilityTimeout"] >= 6 * ingest["Timeout"]
    assert all(q["Properties"]["SqsManagedSseEnabled"] for q in queues.values())
    synthesis.template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "EventSourceArn": {"Fn::GetAtt": [uploads_id, "Arn"]},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": PROFILES[synthesis.profile].ingest_max_concurrency},
            "BatchSize": replace(PROFILES[synthesis.profile], model=SYNTH_MODEL).ingest_batch,
        },
    )


def test_ingest_batches_larger_than_ten_come_with_the_batching_window_lambda_requires(
    synthesis: Synthesis,
) -> None:
    """Lambda's SQS parameters: BatchSize up to 10,000 on a standard queue, but above 10 only with
    MaximumBatchingWindowInSeconds of at least 1 (else CloudFormation fails mid-deployment)."""
    [mapping] = resources(synthesis.template_json, "AWS::Lambda::EventSourceMapping").values()
    batch = mapping["Properties"]["BatchSize"]
    assert 1 <= batch <= 10_000
    assert batch <= 10 or mapping["Properties"].get("MaximumBatchingWindowInSeconds", 0) >= 1


def test_bucket_notifies_the_queue_of_created_and_removed_objects(synthesis: Synthesis) -> None:
    [notifications] = resources(synthesis.template_json, "Custom::S3BucketNotifications").values()
    events = {
        c["Events"][0]
        for c in notifications["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    }
    assert events == {"s3:ObjectCreated:*", "s3:ObjectRemoved:*"}


def test_images_bucket_is_private_encrypted_tls_only_and_expires_query_uploads(synthesis: Synthesis) -> None:
    template = synthesis.template
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [Match.object_like({})]},
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [Match.object_like({"Prefix": Settings.query_upload_prefix, "ExpirationInDays": 1})]
                )
            },
        },
    )
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
                        )
                    ]
                )
            }
        },
    )


def test_api_takes_images_as_binary_requires_keys_throttles_validates_and_logs(synthesis: Synthesis) -> None:
    template = synthesis.template
    template.has_resource_properties(
        "AWS::ApiGateway::RestApi", {"BinaryMediaTypes": list(BINARY_MEDIA_TYPES)}
    )
    methods = resources(synthesis.template_json, "AWS::ApiGateway::Method").values()
    served = [m["Properties"] for m in methods if m["Properties"]["HttpMethod"] != "OPTIONS"]
    assert len(served) == len(ROUTES)
    assert all(m["ApiKeyRequired"] and "RequestValidatorId" in m for m in served)
    assert any(m["HttpMethod"] == "OPTIONS" for m in (m["Properties"] for m in methods)), "CORS preflight"
    config = PROFILES[synthesis.profile]
    template.has_resource_properties(
        "AWS::ApiGateway::UsagePlan",
        {"Throttle": {"RateLimit": config.throttle_rate, "BurstLimit": config.throttle_burst}},
    )
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {
            "AccessLogSetting": Match.object_like({"DestinationArn": Match.any_value()}),
            "TracingEnabled": True,
            "MethodSettings": [
                Match.object_like(
                    {
                        "LoggingLevel": "ERROR",
                        "DataTraceEnabled": False,
                        "MetricsEnabled": False,  # per-method metrics are billed, and unread
                        "ThrottlingRateLimit": config.throttle_rate,
                    }
                )
            ],
        },
    )
    template.has_resource_properties(
        "AWS::ApiGateway::RequestValidator", {"ValidateRequestParameters": True, "ValidateRequestBody": True}
    )


def test_api_routes_are_the_routes_of_the_openapi_document() -> None:
    document = json.loads((ROOT / "lambdas" / "handlers" / "openapi.json").read_text())
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert {(method, f"/{path}") for method, path, _ in ROUTES} == documented


def test_errors_answered_by_api_gateway_keep_the_apis_error_shape(synthesis: Synthesis) -> None:
    responses = resources(synthesis.template_json, "AWS::ApiGateway::GatewayResponse").values()
    types = {r["Properties"]["ResponseType"] for r in responses}
    assert types == {"BAD_REQUEST_PARAMETERS", "DEFAULT_4XX", "DEFAULT_5XX"}
    for response in responses:
        template = response["Properties"]["ResponseTemplates"]["application/json"]
        shaped = template.replace("$context.error.messageString", '"m"').replace("$context.error.", "")
        assert set(json.loads(shaped)["error"]) == {"code", "message"}


def test_every_alarm_notifies_the_encrypted_topic(synthesis: Synthesis) -> None:
    template = synthesis.template_json
    alarms = resources(template, "AWS::CloudWatch::Alarm").values()
    metrics = {a["Properties"]["MetricName"] for a in alarms}
    assert metrics >= {
        "ApproximateNumberOfMessagesVisible",
        "Errors",
        "Throttles",
        "Duration",
        "5XXError",
        "Latency",
    }
    [topic_id] = resources(template, "AWS::SNS::Topic")
    assert all(a["Properties"]["AlarmActions"] == [{"Ref": topic_id}] for a in alarms)
    synthesis.template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    assert {a["Properties"].get("ExtendedStatistic") for a in alarms} >= {"p95"}
    synthesis.template.resource_count_is("AWS::CloudWatch::Dashboard", 1)


# AWS's "Recommended CloudWatch alarms for Amazon OpenSearch Service" (OpenSearch Service developer
# guide), as that table states each row: metric -> (statistic, comparison, threshold, period s, periods).
# A threshold of None is one the table gives per deployment (25 % of a node's storage; the node count).
AWS_RECOMMENDED: dict[str, tuple[str, str, float | None, int, int]] = {
    "ClusterStatus.red": ("Maximum", ">=", 1, 60, 1),
    "ClusterStatus.yellow": ("Maximum", ">=", 1, 60, 5),
    "FreeStorageSpace": ("Minimum", "<=", None, 60, 1),
    "ClusterIndexWritesBlocked": ("Maximum", ">=", 1, 300, 1),
    "Nodes": ("Minimum", "<", None, 86400, 1),
    "AutomatedSnapshotFailure": ("Maximum", ">=", 1, 60, 1),
    "CPUUtilization": ("Maximum", ">=", 80, 900, 3),
    "JVMMemoryPressure": ("Maximum", ">=", 95, 60, 3),
    "OldGenJVMMemoryPressure": ("Maximum", ">=", 80, 60, 3),
    "KMSKeyError": ("Maximum", ">=", 1, 60, 1),
    "KMSKeyInaccessible": ("Maximum", ">=", 1, 60, 1),
    "shards.active": ("Maximum", ">=", 30000, 60, 1),
}
AWS_RECOMMENDED_WITH_MASTERS = {
    "MasterCPUUtilization": ("Maximum", ">=", 50, 900, 3),
    "MasterJVMMemoryPressure": ("Maximum", ">=", 95, 60, 3),
    "MasterOldGenJVMMemoryPressure": ("Maximum", ">=", 80, 60, 3),
}
COMPARISONS = {
    ">=": "GreaterThanOrEqualToThreshold",
    "<=": "LessThanOrEqualToThreshold",
    "<": "LessThanThreshold",
}


def test_the_domain_has_each_alarm_aws_recommends_as_aws_states_it(synthesis: Synthesis) -> None:
    config = PROFILES[synthesis.profile]
    expected = AWS_RECOMMENDED | (AWS_RECOMMENDED_WITH_MASTERS if config.master_nodes else {})
    alarms = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in resources(synthesis.template_json, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/ES"
    }
    per_deployment = {
        "FreeStorageSpace": config.volume_gb * 1024 * 0.25,  # MiB, a quarter of each node's volume
        "Nodes": config.data_nodes + config.master_nodes,
    }
    for metric, (statistic, comparison, threshold, period, periods) in expected.items():
        alarm = alarms.get(metric)
        assert alarm is not None, f"no alarm on {metric}"
        assert (
            alarm["Statistic"],
            alarm["ComparisonOperator"],
            alarm["Period"],
            alarm["EvaluationPeriods"],
        ) == (
            statistic,
            COMPARISONS[comparison],
            period,
            periods,
        ), metric
        assert alarm["Threshold"] == (per_deployment[metric] if threshold is None else threshold), metric


def test_alarm_names_and_the_api_name_belong_to_the_stack(synthesis: Synthesis) -> None:
    """API Gateway's metrics are keyed by API name: a generic "Api" merges with any other API of that name."""
    template = synthesis.template_json
    [api] = resources(template, "AWS::ApiGateway::RestApi").values()
    assert api["Properties"]["Name"] == "ImageSearch-query"
    names = [a["Properties"]["AlarmName"] for a in resources(template, "AWS::CloudWatch::Alarm").values()]
    assert all(name.startswith("ImageSearch-") for name in names) and len(set(names)) == len(names)
    api_alarms = [
        a["Properties"]["Dimensions"]
        for a in resources(template, "AWS::CloudWatch::Alarm").values()
        if a["Properties"].get("Namespace") == "AWS/ApiGateway"
    ]
    assert api_alarms and all(d == [{"Name": "ApiName", "Value": "ImageSearch-query"}] for d in api_alarms)


def test_dev_is_one_node_and_deleted_with_the_stack(dev: Synthesis) -> None:
    [domain] = resources(dev.template_json, "AWS::OpenSearchService::Domain").values()
    cluster = domain["Properties"]["ClusterConfig"]
    assert (cluster["InstanceCount"], cluster["DedicatedMasterEnabled"], cluster["ZoneAwarenessEnabled"]) == (
        1,
        False,
        False,
    )
    assert domain["DeletionPolicy"] == "Delete"
    ingest = function_with(dev.template_json, "handlers.ingest.handler")["Properties"]
    assert "ReservedConcurrentExecutions" not in ingest, "a new account has only 10 concurrent executions"
    assert ingest["MemorySize"] == 2048


def test_prod_spans_two_zones_with_dedicated_masters_and_is_retained(prod: Synthesis) -> None:
    template = prod.template_json
    [domain] = resources(template, "AWS::OpenSearchService::Domain").values()
    cluster = domain["Properties"]["ClusterConfig"]
    assert cluster["DedicatedMasterEnabled"] and cluster["DedicatedMasterCount"] == 3
    assert cluster["ZoneAwarenessConfig"] == {"AvailabilityZoneCount": 2} and cluster["InstanceCount"] == 2
    assert domain["DeletionPolicy"] == "Retain" and domain["UpdatePolicy"] == {"EnableVersionUpgrade": True}
    assert all(b["DeletionPolicy"] == "Retain" for b in resources(template, "AWS::S3::Bucket").values())
    ingest = function_with(template, "handlers.ingest.handler")["Properties"]
    assert ingest["ReservedConcurrentExecutions"] == PROFILES["prod"].ingest_reserved_concurrency
    prod.template.has_resource_properties(
        "AWS::Lambda::Alias",
        {"ProvisionedConcurrencyConfig": {"ProvisionedConcurrentExecutions": 1}, "Name": "live"},
    )


def test_the_query_function_gives_up_on_the_index_inside_its_own_timeout(synthesis: Synthesis) -> None:
    """A slow domain must get the API's 503 + Retry-After: if the function timed out, API Gateway would 502.

    The function's client budget comes from its environment as deployed; the request count per API call
    is checked against recorded traffic in tests/integration/test_deployed_access.py.
    """
    query = function_with(synthesis.template_json, "handlers.query.handler")["Properties"]
    variables = {k: v for k, v in query["Environment"]["Variables"].items() if isinstance(v, str)}
    settings = Settings.from_env({**variables, "SIMSEARCH_IMAGES_BUCKET": "b"})
    worst = INDEX_REQUESTS_PER_QUERY * (1 + settings.opensearch_retries) * settings.opensearch_timeout_s
    assert worst + QUERY_RESERVE_S <= query["Timeout"]


def test_vpc_variant_places_domain_and_functions_in_isolated_subnets(vpc_iam_template: Template) -> None:
    template = vpc_iam_template.to_json()
    [domain] = resources(template, "AWS::OpenSearchService::Domain").values()
    assert len(domain["Properties"]["VPCOptions"]["SubnetIds"]) == 2
    for function in our_functions(template).values():
        assert function["Properties"]["VpcConfig"]["SubnetIds"], "every function of the app runs in the VPC"
    vpc_iam_template.resource_count_is("AWS::EC2::NatGateway", 0)
    vpc_iam_template.has_resource_properties("AWS::EC2::FlowLog", {"TrafficType": "REJECT"})
    vpc_iam_template.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress", {"FromPort": 443, "ToPort": 443, "IpProtocol": "tcp"}
    )


THREE_ZONES = {"profile": "prod", "account_concurrency": "1000", "vpc": "true", "availability_zones": "3"}


def test_a_vpc_across_three_zones_without_account_and_region_stops_synth_with_the_way_out(
    tmp_path: Path,
) -> None:
    """Without an environment CDK knows two placeholder zones; the domain would get 2 subnets for 3 zones."""
    with pytest.raises(ConfigError, match=r"needs the target account and region.*-c availability_zones=2"):
        in_process_stack(tmp_path, **THREE_ZONES, data_nodes="3")


def test_a_vpc_across_three_zones_takes_the_regions_zones_when_bound_to_an_account(tmp_path: Path) -> None:
    """The CLI passes the caller's account and region (app.py); CDK looks the zones up and caches them."""
    lookup = "availability-zones:account=123456789012:region=eu-west-1"
    zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    stack = in_process_stack(
        tmp_path,
        env=cdk.Environment(account="123456789012", region="eu-west-1"),
        **THREE_ZONES,
        data_nodes="3",
        **{lookup: zones},
    )
    template = Template.from_stack(stack).to_json()
    [domain] = resources(template, "AWS::OpenSearchService::Domain").values()
    assert len(domain["Properties"]["VPCOptions"]["SubnetIds"]) == 3
    assert domain["Properties"]["ClusterConfig"]["ZoneAwarenessConfig"] == {"AvailabilityZoneCount": 3}
    subnets = resources(template, "AWS::EC2::Subnet").values()
    assert {s["Properties"]["AvailabilityZone"] for s in subnets} == set(zones)


def test_iam_auth_variant_signs_every_method_and_issues_no_api_key(vpc_iam_template: Template) -> None:
    methods = resources(vpc_iam_template.to_json(), "AWS::ApiGateway::Method").values()
    served = [m["Properties"] for m in methods if m["Properties"]["HttpMethod"] != "OPTIONS"]
    assert {m["AuthorizationType"] for m in served} == {"AWS_IAM"}
    vpc_iam_template.resource_count_is("AWS::ApiGateway::ApiKey", 0)
    vpc_iam_template.resource_count_is("AWS::ApiGateway::UsagePlan", 0)


def test_outputs_name_the_url_the_bucket_and_the_key(dev: Synthesis) -> None:
    outputs = dev.template_json["Outputs"]
    assert {
        "ApiUrl",
        "ApiKeyId",
        "ImagesBucket",
        "ServingAlias",
        "ModelId",
        "ReindexStateMachine",
        "ReindexFunction",
    } <= set(outputs)


def test_no_resource_name_is_hard_coded_for_a_second_stack_in_the_account(synthesis: Synthesis) -> None:
    """Physical names come from CloudFormation, so two stacks (dev and prod) can share an account."""
    text = json.dumps(synthesis.template_json["Resources"])
    for key in ("BucketName", "QueueName", "DomainName", "FunctionName", "TopicName", "RoleName"):
        assert not re.search(rf'"{key}": "', text), key


def test_a_restricted_cors_origin_reaches_the_gateway_and_the_query_function(
    vpc_iam_template: Template,
) -> None:
    template = vpc_iam_template.to_json()
    origins = {
        variables["SIMSEARCH_CORS_ORIGIN"]
        for function in our_functions(template).values()
        if (variables := function["Properties"]["Environment"]["Variables"]).get("SIMSEARCH_CORS_ORIGIN")
    }
    assert origins == {VARIANT_CORS_ORIGIN}
    preflights = [
        m["Properties"]["Integration"]["IntegrationResponses"][0]["ResponseParameters"]
        for m in resources(template, "AWS::ApiGateway::Method").values()
        if m["Properties"]["HttpMethod"] == "OPTIONS"
    ]
    assert preflights
    assert {p["method.response.header.Access-Control-Allow-Origin"] for p in preflights} == {
        f"'{VARIANT_CORS_ORIGIN}'"
    }
