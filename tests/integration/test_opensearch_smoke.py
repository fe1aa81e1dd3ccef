"""Does the test node serve k-NN search the way the adapter needs: lucene HNSW, painless, exact ranking?"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest
from opensearchpy import OpenSearch, helpers

pytestmark = pytest.mark.integration

DIM = 64
COUNT = 300
K = 10
QUERIES = 5

Matrix = npt.NDArray[np.float32]


def unit_rows(rng: np.random.Generator, rows: int) -> Matrix:
    raw = rng.standard_normal((rows, DIM)).astype(np.float32)
    unit: Matrix = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    return unit


def exact_top_ids(vectors: Matrix, query: npt.NDArray[np.float32]) -> list[str]:
    return [str(i) for i in np.argsort(-(vectors @ query))[:K]]


def hit_ids(response: dict[str, object]) -> list[str]:
    hits = response["hits"]
    assert isinstance(hits, dict)
    return [hit["_id"] for hit in hits["hits"]]


@pytest.fixture(scope="module")
def vectors() -> Matrix:
    return unit_rows(np.random.default_rng(7), COUNT)


@pytest.fixture(scope="module")
def queries() -> Matrix:
    return unit_rows(np.random.default_rng(8), QUERIES)


@pytest.fixture(scope="module")
def knn_index(opensearch_client: OpenSearch, vectors: Matrix) -> Iterator[str]:
    """A lucene HNSW index holding ``vectors`` under ids "0".."299"; deleted afterwards."""
    name = f"smoke-{uuid.uuid4().hex}"
    opensearch_client.indices.create(
        index=name,
        body={
            "settings": {"index": {"knn": True, "number_of_shards": 1, "number_of_replicas": 0}},
            "mappings": {
                "properties": {
                    "vec": {
                        "type": "knn_vector",
                        "dimension": DIM,
                        "method": {
                            "name": "hnsw",
                            "engine": "lucene",  # the Maven k-NN zip has no faiss/nmslib libraries
                            "space_type": "innerproduct",
                            "parameters": {"m": 16, "ef_construction": 128},
                        },
                    }
                }
            },
        },
    )
    try:
        actions = ({"_index": name, "_id": str(i), "vec": v.tolist()} for i, v in enumerate(vectors))
        indexed, errors = helpers.bulk(opensearch_client, actions)
        assert (indexed, errors) == (COUNT, [])
        opensearch_client.indices.refresh(index=name)
        yield name
    finally:
        opensearch_client.indices.delete(index=name)


def test_knn_plugin_is_installed(opensearch_client: OpenSearch) -> None:
    plugins = opensearch_client.cat.plugins(format="json")
    assert "opensearch-knn" in {plugin["component"] for plugin in plugins}


def test_hnsw_search_returns_the_exact_top_10(
    opensearch_client: OpenSearch, knn_index: str, vectors: Matrix, queries: Matrix
) -> None:
    for query in queries:
        response = opensearch_client.search(
            index=knn_index,
            body={
                "size": K,
                "_source": False,
                # a beam as wide as the index makes HNSW exhaustive, so it must agree with numpy;
                # with the default beam (k) only about a third of these queries get the exact top 10
                "query": {
                    "knn": {
                        "vec": {"vector": query.tolist(), "k": K, "method_parameters": {"ef_search": COUNT}}
                    }
                },
            },
        )
        assert hit_ids(response) == exact_top_ids(vectors, query)


def test_painless_knn_functions_rank_exactly(
    opensearch_client: OpenSearch, knn_index: str, vectors: Matrix, queries: Matrix
) -> None:
    """Exercises the lang-painless module that ``fetch`` assembles and k-NN's painless extension."""
    response = opensearch_client.search(
        index=knn_index,
        body={
            "size": K,
            "_source": False,
            "query": {
                "script_score": {
                    "query": {"match_all": {}},
                    "script": {
                        "source": "1.0 + cosineSimilarity(params.q, doc['vec'])",
                        "params": {"q": queries[0].tolist()},
                    },
                }
            },
        },
    )
    assert hit_ids(response) == exact_top_ids(vectors, queries[0])
