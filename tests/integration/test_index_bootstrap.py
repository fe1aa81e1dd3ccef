"""The index bootstrap custom resource against the real node: idempotent, data-preserving, patient.

Events are shaped as CloudFormation sends them through the CDK provider framework: every property value
is a string. Here it is the vector index on the plain node; ``Custom::SearchAccessRoles`` and
``Custom::SearchAuditLog`` run against the node with the security plugin in test_deployed_access.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opensearchpy import OpenSearch

from handlers.index_bootstrap import handler, vector_index, with_retries
from simsearch.errors import ConfigError
from simsearch.index.mapping import SLOW_LOG_THRESHOLDS, index_body
from simsearch.index.naming import alias_name, failures_name, version_name
from simsearch.index.opensearch import client_for
from simsearch.settings import Settings
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

DIM = 8

Event = Callable[..., dict[str, Any]]


@pytest.fixture
def prefix(opensearch_client: OpenSearch) -> Iterator[str]:
    name = f"boot{uuid.uuid4().hex[:8]}"
    yield name
    opensearch_client.indices.delete(index=f"{name}-*", ignore_unavailable=True)


@pytest.fixture
def event(prefix: str) -> Event:
    def make(request: str = "Create", physical_id: str | None = None, **overrides: str) -> dict[str, Any]:
        properties = {
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:provider",
            "Endpoint": "ignored: the function reads its settings",
            "Alias": alias_name(prefix, "model-a"),
            "FailuresIndex": failures_name(prefix),
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
def deployed(monkeypatch: pytest.MonkeyPatch, opensearch_url: str) -> None:
    """The function's environment as infra writes it, pointing at the test node."""
    for name, value in _settings(opensearch_url).to_env().items():
        monkeypatch.setenv(name, value)


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
def test_a_model_change_keeps_the_old_index_for_a_rollback(
    event: Event, prefix: str, opensearch_client: OpenSearch
) -> None:
    """CloudFormation replaces the resource (its physical id is the alias): Create new, then Delete old."""
    old, new = alias_name(prefix, "model-a"), alias_name(prefix, "model-b")
    handler(event(), None)
    handler(event(Alias=new), None)
    handler(event("Delete", physical_id=old), None)
    assert opensearch_client.indices.exists(index=version_name(old, 1))
    assert opensearch_client.indices.exists(index=version_name(new, 1))
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
        response = with_retries(lambda: vector_index(client, "Create", properties, ""), delays=(0, 0, 0))
    assert fault.injected == 2
    assert opensearch_client.indices.exists(index=response["Data"]["Index"])


def test_a_dimension_mismatch_fails_at_once_instead_of_retrying(opensearch_url: str, event: Event) -> None:
    with FaultProxy(opensearch_url) as proxy:
        client = client_for(_settings(proxy.url))
        vector_index(client, "Create", event()["ResourceProperties"], "")
        wider = event(Dimension=str(2 * DIM))["ResourceProperties"]
        before = len(proxy.seen)
        with pytest.raises(ConfigError, match=f"{DIM}-dimensional"):
            with_retries(lambda: vector_index(client, "Update", wider, wider["Alias"]), delays=(0, 0, 0))
        mapping_reads = [seen.path for seen in proxy.seen[before:] if "_mapping" in seen.path]
    assert len(mapping_reads) == 1


def _settings(url: str) -> Settings:
    return Settings(
        model_dir=Path("/unused"), images_bucket="unused", opensearch_url=url, opensearch_auth="none"
    )
