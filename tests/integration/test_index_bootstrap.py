"""The index bootstrap custom resource against the real node: idempotent, data-preserving, patient.

Events are shaped as CloudFormation sends them through the CDK provider framework: every property value
is a string. Here it is the vector index on the plain node, with S3 (the models bucket) and Step
Functions (the re-index it starts) in moto; ``Custom::SearchAccessRoles`` and ``Custom::SearchAuditLog``
run against the node with the security plugin in test_deployed_access.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from opensearchpy import OpenSearch

from handlers.index_bootstrap import handler, vector_index, with_retries
from simsearch.errors import ConfigError
from simsearch.index.mapping import SLOW_LOG_THRESHOLDS, index_body
from simsearch.index.naming import alias_name, failures_name, pointer_name, version_name
from simsearch.index.opensearch import client_for
from simsearch.manifest import MANIFEST_FILE, ModelManifest
from simsearch.models import s3_model_uri
from simsearch.settings import Settings
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

DIM = 8
MODELS_BUCKET = "models-bucket"
REGION = "us-east-1"

Event = Callable[..., dict[str, Any]]


@pytest.fixture
def prefix(opensearch_client: OpenSearch) -> Iterator[str]:
    name = f"boot{uuid.uuid4().hex[:8]}"
    yield name
    opensearch_client.indices.delete(index=f"{name}-*", ignore_unavailable=True)


@pytest.fixture
def event(prefix: str, state_machine: str) -> Event:
    def make(
        request: str = "Create", physical_id: str | None = None, model: str = "model-a", **overrides: str
    ) -> dict[str, Any]:
        properties = {
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:provider",
            "Endpoint": "ignored: the function reads its settings",
            "Prefix": prefix,
            "ModelId": model,
            "ModelUri": s3_model_uri(MODELS_BUCKET, model),
            "StateMachineArn": state_machine,
            "Dimension": str(DIM),
            "Engine": "lucene",  # the test node has no faiss libraries
            "SpaceType": "innerproduct",
            "M": "16",
            "EfConstruction": "128",
            "EfSearch": "128",
            "Replicas": "0",
            **overrides,
        }
        raw: dict[str, Any] = {
            "RequestType": request,
            "ResourceType": "Custom::VectorIndex",
            "ResourceProperties": properties,
        }
        if physical_id is not None:
            raw["PhysicalResourceId"] = physical_id
        return raw

    return make


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def state_machine(aws: None) -> str:  # noqa: ARG001 - inside moto
    """The re-index state machine as far as the bootstrap sees it: something to start an execution of."""
    machine = boto3.client("stepfunctions", region_name=REGION).create_state_machine(
        name="reindex",
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
        roleArn="arn:aws:iam::123456789012:role/states",
    )
    return str(machine["stateMachineArn"])


def executions(state_machine: str) -> list[dict[str, Any]]:
    """The input of every execution started, oldest first."""
    client = boto3.client("stepfunctions", region_name=REGION)
    started = client.list_executions(stateMachineArn=state_machine)["executions"]
    return [
        json.loads(client.describe_execution(executionArn=e["executionArn"])["input"])
        for e in sorted(started, key=lambda e: e["startDate"])
    ]


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch, opensearch_url: str, model_dir: Path, aws: None) -> None:  # noqa: ARG001
    """The function's environment as infra writes it, pointing at the test node; its models bucket."""
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=MODELS_BUCKET)
    for name, value in _settings(opensearch_url, model_dir=model_dir).to_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.mark.usefixtures("deployed")
def test_create_makes_version_one_behind_the_alias_with_the_shared_mapping(
    event: Event, prefix: str, opensearch_client: OpenSearch
) -> None:
    response = handler(event(), None)
    alias = alias_name(prefix, "model-a")
    assert response == {"PhysicalResourceId": alias, "Data": {"Index": version_name(alias, 1)}}
    stored = opensearch_client.indices.get_mapping(index=alias)[version_name(alias, 1)]["mappings"]
    expected = index_body(
        dim=DIM, engine="lucene", space_type="innerproduct", m=16, ef_construction=128, ef_search=128
    )
    assert stored["properties"]["vector"] == expected["mappings"]["properties"]["vector"]
    assert opensearch_client.indices.exists(index=failures_name(prefix))


@pytest.mark.usefixtures("deployed")
def test_the_index_sets_slow_log_thresholds_so_the_published_slow_logs_are_not_empty(
    event: Event, prefix: str, opensearch_client: OpenSearch
) -> None:
    """OpenSearch writes a slow log only for an index with thresholds (they are off, -1, by default)."""
    index = handler(event(), None)["Data"]["Index"]
    opensearch_client.indices.put_settings(
        index=index, body={"index.search.slowlog.threshold.query.warn": "-1"}
    )
    handler(event("Update", physical_id=alias_name(prefix, "model-a")), None)  # an update puts them back
    stored = opensearch_client.indices.get_settings(index=index, flat_settings=True)[index]["settings"]
    assert {key: stored.get(f"index.{key}") for key in SLOW_LOG_THRESHOLDS} == SLOW_LOG_THRESHOLDS


@pytest.mark.usefixtures("deployed")
def test_repeated_creates_and_updates_keep_the_documents(
    event: Event, prefix: str, opensearch_client: OpenSearch
) -> None:
    alias = alias_name(prefix, "model-a")
    handler(event(), None)
    opensearch_client.index(index=alias, id="a", body={"image_id": "a", "vector": [0.5] * DIM}, refresh=True)
    handler(event(), None)
    handler(event("Update", physical_id=alias, EfSearch="256"), None)
    assert opensearch_client.count(index=alias)["count"] == 1
    assert sorted(opensearch_client.indices.get_alias(name=alias)) == [version_name(alias, 1)]


@pytest.mark.usefixtures("deployed")
def test_an_update_of_a_faiss_index_changes_its_ef_search_in_place(
    event: Event, prefix: str, opensearch_client: OpenSearch
) -> None:
    """The deployed engine (no vectors are written, so the node needs no faiss library)."""
    alias = alias_name(prefix, "model-a")
    target = version_name(alias, 1)
    handler(event(Engine="faiss"), None)
    vector = opensearch_client.indices.get_mapping(index=target)[target]["mappings"]["properties"]["vector"]
    assert vector["method"]["engine"] == "faiss"
    assert ef_search_of(opensearch_client, target) == "128"
    handler(event("Update", physical_id=alias, Engine="faiss", EfSearch="512"), None)
    assert ef_search_of(opensearch_client, target) == "512"


def ef_search_of(client: OpenSearch, index: str) -> str:
    settings = client.indices.get_settings(index=index, flat_settings=True)[index]["settings"]
    return str(settings["index.knn.algo_param.ef_search"])


@pytest.mark.usefixtures("deployed")
def test_create_copies_the_carried_model_to_the_models_bucket_once(
    event: Event, prefix: str, model_dir: Path
) -> None:
    handler(event(), None)
    s3 = boto3.client("s3", region_name=REGION)
    manifest = ModelManifest.load(model_dir)
    stored = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=MODELS_BUCKET)["Contents"]}
    assert sorted(stored) == [
        f"models/model-a/{name}" for name in sorted((MANIFEST_FILE, manifest.onnx_file))
    ]
    handler(event("Update", physical_id=alias_name(prefix, "model-a"), EfSearch="256"), None)
    again = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=MODELS_BUCKET)["Contents"]}
    assert again == stored


@pytest.mark.usefixtures("deployed")
def test_a_model_change_builds_beside_the_serving_index_and_starts_the_reindex_once(
    event: Event, prefix: str, state_machine: str, opensearch_client: OpenSearch
) -> None:
    """CloudFormation updates the resource to a new physical id (the new model's alias), then deletes
    the old one: the old index keeps serving until the re-index switches, and stays for a rollback."""
    old, new = alias_name(prefix, "model-a"), alias_name(prefix, "model-b")
    handler(event(), None)
    assert executions(state_machine) == []  # the first model serves at once: nothing to fill
    response = handler(event("Update", physical_id=old, model="model-b"), None)
    assert response["PhysicalResourceId"] == new
    serving, writing = (pointer_name(prefix, p) for p in ("serving", "writing"))
    aliases = opensearch_client.indices.get_alias(index=f"{prefix}-*")
    assert sorted(aliases[version_name(old, 1)]["aliases"]) == sorted([old, serving, writing])
    assert sorted(aliases[version_name(new, 1)]["aliases"]) == sorted([new, writing])
    assert executions(state_machine) == [{"target": version_name(new, 1), "prefix": ""}]
    handler(event("Update", physical_id=new, model="model-b", Replicas="0"), None)  # a later update
    handler(event("Delete", physical_id=old), None)
    assert len(executions(state_machine)) == 1
    assert opensearch_client.indices.exists(index=version_name(old, 1))
    handler(event("Delete", physical_id=old), None)  # deleting again is not an error


@pytest.mark.usefixtures("deployed")
def test_a_delete_after_a_failed_create_touches_nothing(
    event: Event, prefix: str, opensearch_client: OpenSearch
) -> None:
    """A failed Create leaves the provider's request id as physical id; its Delete must not remove data."""
    alias = alias_name(prefix, "model-a")
    handler(event(), None)
    handler(event("Delete", physical_id="request-id-of-a-failed-create"), None)
    assert opensearch_client.indices.exists(index=version_name(alias, 1))


def test_access_denied_while_the_policy_propagates_is_retried(
    opensearch_url: str, event: Event, opensearch_client: OpenSearch
) -> None:
    with FaultProxy(opensearch_url) as proxy:
        fault = proxy.fail(status=403, times=2)
        client = client_for(_settings(proxy.url))
        properties = event()["ResourceProperties"]
        response = with_retries(
            lambda: vector_index(client, "Create", properties, "", **NO_AWS), delays=(0, 0, 0)
        )
    assert fault.injected == 2
    assert opensearch_client.indices.exists(index=response["Data"]["Index"])


def test_a_dimension_mismatch_fails_at_once_instead_of_retrying(opensearch_url: str, event: Event) -> None:
    with FaultProxy(opensearch_url) as proxy:
        client = client_for(_settings(proxy.url))
        vector_index(client, "Create", event()["ResourceProperties"], "", **NO_AWS)
        wider = event(Dimension=str(2 * DIM))["ResourceProperties"]
        before = len(proxy.seen)
        physical_id = alias_name(wider["Prefix"], wider["ModelId"])
        with pytest.raises(ConfigError, match=f"{DIM}-dimensional"):
            with_retries(
                lambda: vector_index(client, "Update", wider, physical_id, **NO_AWS), delays=(0, 0, 0)
            )
        mapping_reads = [seen.path for seen in proxy.seen[before:] if "_mapping" in seen.path]
    assert len(mapping_reads) == 1


NO_AWS: dict[str, Any] = {"publish_model": lambda _uri: None, "start_reindex": lambda _arn, _target: None}


def _settings(url: str, *, model_dir: Path = Path("/unused")) -> Settings:
    return Settings(
        model_dir=model_dir,
        images_bucket="unused",
        opensearch_url=url,
        opensearch_auth="none",
        aws_region=REGION,
    )
