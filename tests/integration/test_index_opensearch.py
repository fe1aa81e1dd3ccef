"""The OpenSearch adapter against the real node: its mapping, its score formulas, and its behaviour
when the node throttles, fails or is gone (faults injected by tests/faultproxy.py, through the real
client, transport and bulk helper).

Mappings and scores are checked for both engines; faiss indexes that store vectors build no native
graph (tests/faiss_node.py), since the node has no faiss library.
"""

from __future__ import annotations

import json
import math
import socket
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from simsearch.errors import ConfigError, IndexUnavailableError
from simsearch.index import connect_failure_log, connect_index
from simsearch.index.mapping import VECTOR_FIELD, index_body
from simsearch.index.naming import alias_name, failures_name
from simsearch.index.opensearch import (
    IndexConfig,
    OpenSearchFailureLog,
    OpenSearchIndex,
    RetryPolicy,
    client_for,
)
from simsearch.index.port import Document, FailureRecord, Filters
from simsearch.settings import Engine, Settings, SpaceType
from tests.faiss_node import faiss_without_graphs
from tests.faultproxy import FaultProxy
from tests.index_factories import document, on_circle, unit, unit_vectors

pytestmark = pytest.mark.integration

DIM = 8
FAST_RETRIES = RetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.05)


@pytest.fixture
def prefix(opensearch_client: OpenSearch) -> Iterator[str]:
    """A fresh index prefix; every index under it is deleted afterwards."""
    name = f"t{uuid.uuid4().hex[:12]}"
    yield name
    opensearch_client.indices.delete(index=f"{name}-*")


def settings_for(url: str, prefix: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "model_dir": Path("model"),
        "images_bucket": "images",
        "opensearch_url": url,
        "opensearch_auth": "none",
        "index_prefix": prefix,
        "engine": "lucene",  # the test node has no faiss library (tests/faiss_node.py)
    }
    return Settings(**(values | overrides))  # type: ignore[arg-type]


def index_through(
    url: str,
    prefix: str,
    *,
    engine: Engine = "lucene",
    space_type: SpaceType = "innerproduct",
    fp16: bool = False,
) -> OpenSearchIndex:
    """An index whose client talks to ``url`` (the node, or a proxy in front of it)."""
    return OpenSearchIndex(
        client_for(settings_for(url, prefix)),
        alias=alias_name(prefix, "m"),
        config=IndexConfig(dim=DIM, engine=engine, space_type=space_type, fp16=fp16),
        refresh=True,
        retry=FAST_RETRIES,
    )


def docs(n: int, *, seed: int = 0) -> list[Document]:
    return [document(f"photos/{i}.jpg", v) for i, v in enumerate(unit_vectors(n, DIM, seed=seed))]


@pytest.mark.parametrize(
    ("engine", "space_type", "fp16"),
    [
        ("lucene", "innerproduct", False),
        ("faiss", "innerproduct", False),
        ("faiss", "innerproduct", True),
        ("faiss", "cosinesimil", True),
    ],
)
def test_the_created_index_has_the_mapping_and_settings_of_index_body(
    opensearch_url: str,
    opensearch_client: OpenSearch,
    prefix: str,
    engine: Engine,
    space_type: SpaceType,
    fp16: bool,
) -> None:
    """The node takes each body as ``index_body`` writes it (no test-only setting) and keeps it as sent."""
    target = index_through(opensearch_url, prefix, engine=engine, space_type=space_type, fp16=fp16).ensure()
    expected = index_body(
        dim=DIM, engine=engine, space_type=space_type, m=16, ef_construction=128, ef_search=256, fp16=fp16
    )
    created = opensearch_client.indices.get(index=target, flat_settings=True)[target]
    assert created["mappings"] == expected["mappings"]
    sent = {f"index.{name}": str(value).lower() for name, value in expected["settings"]["index"].items()}
    assert {name: created["settings"].get(name) for name in sent} == sent
    assert [name for name in created["settings"] if name.startswith("index.knn") and name not in sent] == []
    assert list(created["aliases"]) == [alias_name(prefix, "m")]


def test_an_empty_faiss_index_accepts_the_adapters_query_with_every_option(
    opensearch_url: str, prefix: str
) -> None:
    """``method_parameters``, an efficient ``filter`` and ``min_score`` as the adapter sends them to faiss."""
    index = index_through(opensearch_url, prefix, engine="faiss")
    index.ensure()
    hits = index.search(
        unit([1] + [0] * 7),
        k=5,
        filters=Filters(label="cat", key_prefix="cats/"),
        min_similarity=0.5,
        exclude_ids=["x"],
    )
    assert hits == []


def test_connect_index_with_a_url_talks_to_opensearch(opensearch_url: str, prefix: str) -> None:
    index = connect_index(settings_for(opensearch_url, prefix), model_id="m", dim=DIM)
    assert isinstance(index, OpenSearchIndex)
    assert index.ensure() == f"{prefix}-m-v1"


def test_ensure_refuses_an_existing_index_of_another_dimension(opensearch_url: str, prefix: str) -> None:
    index_through(opensearch_url, prefix).ensure()
    wider = OpenSearchIndex(
        client_for(settings_for(opensearch_url, prefix)),
        alias=alias_name(prefix, "m"),
        config=IndexConfig(dim=DIM * 2, engine="lucene"),
    )
    with pytest.raises(ConfigError, match=f"{DIM}-dimensional"):
        wider.ensure()


ANGLES = [0, 60, 90, 120, 180]
# From the docs' "Spaces" table (OpenSearch 2.19), for the cosines 1, 0.5, 0, -0.5, -1 of ANGLES:
DOCUMENTED_SCORES: dict[SpaceType, list[float]] = {
    "innerproduct": [2.0, 1.5, 1.0, 1 / 1.5, 0.5],  # faiss: d = -ip, 1 / (1 + d) if d >= 0 else -d + 1
    "cosinesimil": [1.0, 0.75, 0.5, 0.25, 0.0],  # d = 1 - cos: (2 - d) / 2
}


@pytest.mark.parametrize("space_type", ["innerproduct", "cosinesimil"])
@pytest.mark.parametrize("engine", ["lucene", "faiss"])
def test_scores_are_the_documented_ones_and_convert_back_to_the_cosine(
    opensearch_url: str, opensearch_client: OpenSearch, prefix: str, engine: Engine, space_type: SpaceType
) -> None:
    """lucene's HNSW, and faiss's exact search (no native graph here): the same scores, as k-NN 2.19 says."""
    with faiss_without_graphs(opensearch_client, prefix) if engine == "faiss" else nullcontext():
        index = index_through(opensearch_url, prefix, engine=engine, space_type=space_type)
        index.ensure()
        index.upsert([document(f"{a}.jpg", on_circle(a)) for a in ANGLES])
        hits = index.search(on_circle(0), k=len(ANGLES))
    assert [h.metadata.key for h in hits] == [f"{a}.jpg" for a in ANGLES]
    assert [h.score for h in hits] == pytest.approx(DOCUMENTED_SCORES[space_type], abs=1e-6)
    assert [h.similarity for h in hits] == pytest.approx(
        [math.cos(math.radians(a)) for a in ANGLES], abs=1e-6
    )


def test_a_document_the_node_rejects_fails_alone_with_the_nodes_reason(
    opensearch_url: str, prefix: str
) -> None:
    index = index_through(opensearch_url, prefix)
    index.ensure()
    batch = docs(5)
    too_wide = replace(
        batch[2], metadata=replace(batch[2].metadata, width=2**40)
    )  # not an OpenSearch integer
    result = index.upsert([*batch[:2], too_wide, *batch[3:]])
    assert set(result.failed) == {too_wide.image_id}
    assert "mapper_parsing_exception" in result.failed[too_wide.image_id]
    assert sorted(result.succeeded) == sorted(d.image_id for d in batch if d is not batch[2])
    assert index.count() == 4


def test_a_search_answer_carries_the_results_and_no_vector(opensearch_url: str, prefix: str) -> None:
    """The node sends back each hit's whole source unless told otherwise, the vector included (control);
    the adapter's query asks for what a result shows, so the vectors never cross the wire."""
    writer = index_through(opensearch_url, prefix)
    writer.ensure()
    batch = docs(5)
    writer.upsert(batch)
    client = client_for(settings_for(opensearch_url, prefix))
    unfiltered = client.search(index=writer.name, body={"query": {"match_all": {}}})["hits"]["hits"]
    assert all(len(hit["_source"][VECTOR_FIELD]) == DIM for hit in unfiltered)
    with FaultProxy(opensearch_url) as proxy:
        hits = index_through(proxy.url, prefix).search(batch[0].vector, k=5)
    [search] = [exchange for exchange in proxy.seen if "/_search" in exchange.path]
    answered = json.loads(search.answer)["hits"]["hits"]
    assert [hit["_id"] for hit in answered] == [hit.image_id for hit in hits]
    assert all(VECTOR_FIELD not in hit["_source"] and "fields" not in hit for hit in answered)
    assert {hit.metadata.key for hit in hits} == {doc.metadata.key for doc in batch}
    assert hits[0].image_id == batch[0].image_id


@pytest.mark.parametrize(("status", "times"), [(429, 2), (503, 5)])
def test_bulk_writes_succeed_after_throttling_and_outages(
    opensearch_url: str, prefix: str, status: int, times: int
) -> None:
    """429s back off in our retry loop; 503s are first resent by the transport (2 retries), then by it."""
    index_through(opensearch_url, prefix).ensure()
    with FaultProxy(opensearch_url) as proxy:
        index = index_through(proxy.url, prefix)
        fault = proxy.fail(status=status, times=times, path_contains="_bulk")
        batch = docs(12)
        result = index.upsert(batch)
        assert fault.injected == times
    assert sorted(result.succeeded) == sorted(d.image_id for d in batch) and not result.failed
    assert index_through(opensearch_url, prefix).count() == 12


def test_when_retries_are_exhausted_the_caller_gets_every_failed_id(opensearch_url: str, prefix: str) -> None:
    index_through(opensearch_url, prefix).ensure()
    batch = docs(6)
    with FaultProxy(opensearch_url) as proxy:
        fault = proxy.fail(status=429, times=1_000, path_contains="_bulk")
        result = index_through(proxy.url, prefix).upsert(batch)
        deletion = index_through(proxy.url, prefix).delete([batch[0].image_id])
    assert fault.injected == 2 * FAST_RETRIES.attempts
    assert result.succeeded == ()
    assert set(result.failed) == {d.image_id for d in batch}
    assert all(
        "429" in reason and "rejected_execution_exception" in reason for reason in result.failed.values()
    )
    assert set(deletion.failed) == {batch[0].image_id}
    assert index_through(opensearch_url, prefix).count() == 0


@pytest.mark.parametrize("status", [429, 503])
def test_reads_raise_index_unavailable_while_the_node_is_failing(
    opensearch_url: str, prefix: str, status: int
) -> None:
    index_through(opensearch_url, prefix).ensure()
    with FaultProxy(opensearch_url) as proxy:
        index = index_through(proxy.url, prefix)
        proxy.fail(status=status, times=1_000)
        with pytest.raises(IndexUnavailableError, match=str(status)) as raised:
            index.search(unit_vectors(1, DIM)[0], k=3)
        with pytest.raises(IndexUnavailableError):
            index.get("0" * 32)
        with pytest.raises(IndexUnavailableError):
            index.count()
    assert raised.value.retryable


def test_an_unreachable_node_is_index_unavailable_and_writes_report_their_ids(prefix: str) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"  # bound but not listening: refused
        index = index_through(url, prefix)
        with pytest.raises(IndexUnavailableError):
            index.search(unit_vectors(1, DIM)[0], k=3)
        batch = docs(3)
        result = index.upsert(batch)
    assert set(result.failed) == {d.image_id for d in batch} and result.succeeded == ()


def test_the_failure_log_keeps_one_record_per_object_version_newest_first(
    opensearch_url: str, prefix: str
) -> None:
    assert isinstance(connect_failure_log(settings_for(opensearch_url, prefix)), OpenSearchFailureLog)
    client = client_for(settings_for(opensearch_url, prefix))
    log = OpenSearchFailureLog(client, name=failures_name(prefix), refresh=True)
    log.ensure()
    log.ensure()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for minutes, key, etag, code in [
        (0, "a.jpg", "e1", "invalid_image"),
        (1, "b.svg", None, "unsupported_image"),
        (2, "a.jpg", "e1", "image_too_large"),
        (3, "a.jpg", "e2", "invalid_image"),
    ]:
        at = start + timedelta(minutes=minutes)
        log.record(FailureRecord(key=key, etag=etag, reason_code=code, message=f"{code} {key}", at=at))
    recent = log.recent(10)
    assert [(r.key, r.etag, r.reason_code) for r in recent] == [
        ("a.jpg", "e2", "invalid_image"),
        ("a.jpg", "e1", "image_too_large"),
        ("b.svg", None, "unsupported_image"),
    ]
    assert recent[0].at == start + timedelta(minutes=3)
    assert len(log.recent(1)) == 1
