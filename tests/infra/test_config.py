"""Does CDK context become the deployment we asked for, and is every mistake reported before synth?"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from aws_cdk import RemovalPolicy

from infra.config import PROFILES, DeploymentConfig
from simsearch.delivery import INGEST_BATCH_SIZE, SLOW_MODEL_INGEST_BATCH_SIZE
from simsearch.errors import ConfigError

pytestmark = pytest.mark.infra

DEPLOY_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def test_without_context_the_dev_profile_applies_with_resnet50() -> None:
    config = DeploymentConfig.from_context({})
    assert config == PROFILES["dev"]
    assert (config.model, config.engine_version, config.ingest_memory_mb) == ("resnet50", "2.19", 2048)
    assert config.removal_policy == RemovalPolicy.DESTROY


def test_ingest_batches_are_sized_by_the_models_speed_unless_stated() -> None:
    """Fifty MobileNetV2 images embed in about the time of ten ResNet50 ones (``make bench-ingest``)."""
    assert DeploymentConfig.from_context({}).ingest_batch == SLOW_MODEL_INGEST_BATCH_SIZE
    assert DeploymentConfig.from_context({"model": "mobilenet_v2"}).ingest_batch == INGEST_BATCH_SIZE
    custom = {"model": "mobilenet_v2", "model_dir": "build/models/whitened"}
    assert DeploymentConfig.from_context(custom).ingest_batch == SLOW_MODEL_INGEST_BATCH_SIZE
    assert DeploymentConfig.from_context({"ingest_batch_size": "200"}).ingest_batch == 200


def test_prod_keeps_data_and_runs_dedicated_masters_across_zones() -> None:
    config = DeploymentConfig.from_context({"profile": "prod", "account_concurrency": "1000"})
    assert config.removal_policy == RemovalPolicy.RETAIN
    assert (config.master_nodes, config.availability_zones, config.index_replicas) == (3, 2, 1)


def test_command_line_strings_are_parsed_by_field_type() -> None:
    """`-c` values always arrive as strings; cdk.json values as JSON types. Both must work."""
    from_cli = DeploymentConfig.from_context(
        {
            "profile": "prod",
            "vpc": "true",
            "data_nodes": "4",
            "api_auth": "iam",
            "account_concurrency": "1000",
        }
    )
    from_json = DeploymentConfig.from_context(
        {"profile": "prod", "vpc": True, "data_nodes": 4, "api_auth": "iam", "account_concurrency": 1000}
    )
    assert from_cli == from_json
    assert (from_cli.vpc, from_cli.data_nodes, from_cli.api_auth, from_cli.account_concurrency) == (
        True,
        4,
        "iam",
        1000,
    )


def test_every_bad_value_and_unknown_key_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as raised:
        DeploymentConfig.from_context(
            {"data_nodes": "two", "vpc": "yes", "api_auth": "cognito", "ingest_memmory_mb": "4096"}
        )
    message = str(raised.value)
    for expected in (
        "data_nodes='two'",
        "vpc='yes'",
        "api_auth='cognito'",
        "unknown context key 'ingest_memmory_mb'",
    ):
        assert expected in message


def test_cdk_own_context_keys_are_not_mistaken_for_typos() -> None:
    config = DeploymentConfig.from_context(
        {"@aws-cdk/core:checkSecretUsage": True, "aws:cdk:bundling-stacks": []}
    )
    assert config == PROFILES["dev"]


def test_an_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"profile='staging'.*\['dev', 'prod'\]"):
        DeploymentConfig.from_context({"profile": "staging"})


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"data_nodes": "3", "availability_zones": "2"}, "multiple of availability_zones"),
        ({"master_nodes": "2"}, "quorum"),
        ({"index_replicas": "1"}, "never assign"),
        ({"ingest_max_concurrency": "1"}, "at least 2"),
        (
            {"ingest_reserved_concurrency": "1", "ingest_max_concurrency": "2"},
            "at least ingest_max_concurrency",
        ),
        ({"query_timeout_s": "30"}, "29 s"),
        ({"log_retention_days": "10"}, "log_retention_days"),
        ({"ingest_batch_size": "-1"}, "ingest_batch_size must be 1..10,000"),
        ({"ingest_batch_size": "10001"}, "ingest_batch_size must be 1..10,000"),
    ],
)
def test_combinations_aws_would_refuse_mid_deployment_stop_synth(
    overrides: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        DeploymentConfig.from_context(overrides)


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"profile": "prod"}, "quota must be at least 111: state the quota"),
        ({"profile": "prod", "account_concurrency": "10"}, "account_concurrency=10 is below it"),
        ({"query_provisioned_concurrency": "1", "account_concurrency": "100"}, "at least 101"),
    ],
)
def test_concurrency_the_account_cannot_spare_stops_synth_with_the_way_out(
    context: dict[str, str], expected: str
) -> None:
    """Lambda refuses reservations that leave under 100 unreserved (developer guide); new accounts have 10."""
    with pytest.raises(ConfigError, match=expected) as raised:
        DeploymentConfig.from_context(context)
    assert "-c account_concurrency=N" in str(raised.value)
    assert "-c ingest_reserved_concurrency=0 -c query_provisioned_concurrency=0" in str(raised.value)


def test_a_stated_quota_with_room_for_the_reservations_deploys() -> None:
    config = DeploymentConfig.from_context({"profile": "prod", "account_concurrency": "111"})
    assert config.committed_concurrency == 11
    assert DeploymentConfig.from_context({"profile": "dev"}).committed_concurrency == 0  # no quota needed


def test_the_deploy_guide_documents_every_context_key() -> None:
    guide = DEPLOY_GUIDE.read_text(encoding="utf-8")
    undocumented = [f.name for f in fields(DeploymentConfig) if f"`{f.name}`" not in guide]
    assert undocumented == []


def test_with_the_quota_measured_prod_parses_without_it_and_every_other_rule_still_holds() -> None:
    """Preflight reads the quota from the account, so it must get a config before the user knows it."""
    assert DeploymentConfig.from_context({"profile": "prod"}, quota_measured=True).account_concurrency == 0
    with pytest.raises(ConfigError, match="master_nodes must be 0, 3 or 5"):
        DeploymentConfig.from_context({"profile": "prod", "master_nodes": "2"}, quota_measured=True)
