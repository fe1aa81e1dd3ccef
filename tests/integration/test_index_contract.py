"""One contract for every VectorIndex adapter: the embedded index and OpenSearch on the real node.

``pytest -m "not integration"`` runs the embedded half; the OpenSearch half needs the node from
``tests/conftest.py`` and runs once per engine: lucene, and faiss without native graphs (the node has
no faiss library; tests/faiss_node.py says what that leaves out). Each test gets a fresh, uniquely
named index, deleted afterwards.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from opensearchpy import OpenSearch

from simsearch.errors import InvalidRequestError, InvalidVectorError, NotFoundError
from simsearch.index import mapping
from simsearch.index.embedded import DEFAULT_HNSW_THRESHOLD, EmbeddedIndex, HnswParams
from simsearch.index.naming import alias_name
from simsearch.index.opensearch import IndexConfig, OpenSearchIndex, RetryPolicy
from simsearch.index.port import Filters, Hit, VectorIndex
from tests.faiss_node import faiss_without_graphs
from tests.index_factories import document, on_circle, unit, unit_vectors

DIM = 8
MODEL_ID = "test-model"


@pytest.fixture(
    params=[
        "embedded",
        "embedded-hnsw",
        pytest.param("opensearch", marks=pytest.mark.integration),
        pytest.param("opensearch-faiss", marks=pytest.mark.integration),
    ]
)
def unensured(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorIndex]:
    """A handle on an index that does not exist yet.

    ``embedded-hnsw`` puts the embedded index in HNSW mode from the first vector (threshold 0), so
    its graph, removed-vector bookkeeping and exact fallback meet the same contract. ``opensearch`` is
    the lucene engine; ``opensearch-faiss`` the deployed one, faiss.
    """
    prefix = f"t{uuid.uuid4().hex[:12]}"
    if request.param.startswith("embedded"):
        hnsw = HnswParams(threshold=0 if request.param == "embedded-hnsw" else DEFAULT_HNSW_THRESHOLD)
        path = tmp_path / "index.sqlite"
        yield EmbeddedIndex.open(path, prefix=prefix, model_id=MODEL_ID, dim=DIM, hnsw=hnsw)
        return
    client: OpenSearch = request.getfixturevalue("opensearch_client")
    faiss = request.param == "opensearch-faiss"
    with faiss_without_graphs(client, prefix) if faiss else nullcontext():
        yield OpenSearchIndex(
            client,
            alias=alias_name(prefix, MODEL_ID),
            config=IndexConfig(dim=DIM, engine="faiss" if faiss else "lucene"),
            refresh=True,
            retry=RetryPolicy(attempts=2, initial_backoff=0.01),
        )
        client.indices.delete(index=f"{prefix}-*")


@pytest.fixture
def index(unensured: VectorIndex) -> VectorIndex:
    unensured.ensure()
    return unensured


def ids(hits: list[Hit]) -> list[str]:
    return [hit.image_id for hit in hits]


E0 = unit([1, 0, 0, 0, 0, 0, 0, 0])


def test_ensure_creates_version_1_behind_the_alias_and_is_idempotent(unensured: VectorIndex) -> None:
    first = unensured.ensure()
    assert first == f"{unensured.name}-v1"
    assert unensured.ensure() == first
    assert unensured.count() == 0


def test_using_an_index_before_ensure_raises_not_found(unensured: VectorIndex) -> None:
    with pytest.raises(NotFoundError, match="ensure"):
        unensured.search(E0, k=1)


def test_an_empty_index_finds_nothing(index: VectorIndex) -> None:
    assert index.search(E0, k=10) == []
    assert index.count() == 0


def test_an_indexed_vector_is_its_own_nearest_neighbour(index: VectorIndex) -> None:
    vectors = unit_vectors(20, DIM, seed=1)
    docs = [document(f"photos/{i}.jpg", v) for i, v in enumerate(vectors)]
    result = index.upsert(docs)
    assert set(result.succeeded) == {d.image_id for d in docs} and not result.failed
    for doc in docs[:5]:
        best = index.search(doc.vector, k=1)[0]
        assert best.image_id == doc.image_id
        assert best.similarity == pytest.approx(1.0, abs=1e-5)


def test_upserting_the_same_documents_again_changes_nothing(index: VectorIndex) -> None:
    docs = [document(f"photos/{i}.jpg", v) for i, v in enumerate(unit_vectors(10, DIM, seed=2))]
    index.upsert(docs)
    before = [(h.image_id, h.similarity) for h in index.search(docs[0].vector, k=10)]
    result = index.upsert(docs)
    assert len(result.succeeded) == 10
    assert index.count() == 10
    after = [(h.image_id, h.similarity) for h in index.search(docs[0].vector, k=10)]
    assert [i for i, _ in after] == [i for i, _ in before]
    assert [s for _, s in after] == pytest.approx([s for _, s in before], abs=1e-6)


def test_upserting_an_existing_id_replaces_its_vector_and_metadata(index: VectorIndex) -> None:
    old = document("photos/a.jpg", on_circle(80), label="cat")
    index.upsert([old, document("photos/b.jpg", on_circle(40), label="cat")])
    new = document("photos/a.jpg", on_circle(10), label="dog")
    index.upsert([new])

    assert index.count() == 2
    stored = index.get(new.image_id)
    assert stored.metadata.label == "dog"
    np.testing.assert_allclose(stored.vector, new.vector, atol=1e-6)
    assert ids(index.search(E0, k=1)) == [new.image_id]
    assert ids(index.search(E0, k=5, filters=Filters(label="dog"))) == [new.image_id]
    assert new.image_id not in ids(index.search(E0, k=5, filters=Filters(label="cat")))


def test_a_repeated_id_in_one_batch_keeps_the_last(index: VectorIndex) -> None:
    first = document("photos/a.jpg", on_circle(0), label="first")
    last = document("photos/a.jpg", on_circle(90), label="last")
    result = index.upsert([first, last])
    assert result.succeeded == (last.image_id,)
    assert index.get(last.image_id).metadata.label == "last"
    assert index.count() == 1


def test_a_deleted_document_is_gone_from_search_get_and_count(index: VectorIndex) -> None:
    docs = [document(f"photos/{i}.jpg", v) for i, v in enumerate(unit_vectors(5, DIM, seed=3))]
    index.upsert(docs)
    result = index.delete([docs[0].image_id])
    assert result.succeeded == (docs[0].image_id,) and not result.failed
    assert docs[0].image_id not in ids(index.search(docs[0].vector, k=5))
    assert index.count() == 4
    with pytest.raises(NotFoundError):
        index.get(docs[0].image_id)


def test_deleting_an_unknown_id_counts_as_deleted(index: VectorIndex) -> None:
    result = index.delete(["0" * 32])
    assert result.succeeded == ("0" * 32,) and not result.failed


def test_get_returns_the_stored_vector_and_every_metadata_field(index: VectorIndex) -> None:
    doc = document("photos/a b+c.jpg", unit_vectors(1, DIM, seed=4)[0], label="cat")
    index.upsert([doc])
    stored = index.get(doc.image_id)
    assert stored.image_id == doc.image_id
    assert stored.metadata == doc.metadata
    assert stored.vector.dtype == np.float32
    np.testing.assert_allclose(stored.vector, doc.vector, atol=1e-6)


def test_lookup_answers_for_the_ids_it_holds_in_one_read_without_vectors(index: VectorIndex) -> None:
    docs = [document(f"photos/{i}.jpg", v, label=f"l{i}") for i, v in enumerate(unit_vectors(3, DIM, seed=5))]
    index.upsert(docs)
    unknown = "0" * 32

    found = index.lookup([docs[2].image_id, unknown, docs[0].image_id, docs[0].image_id])

    assert set(found) == {docs[0].image_id, docs[2].image_id}
    assert found[docs[0].image_id].metadata == docs[0].metadata
    assert found[docs[2].image_id].image_id == docs[2].image_id
    assert index.lookup([]) == {}


def test_lookup_before_ensure_raises_not_found(unensured: VectorIndex) -> None:
    with pytest.raises(NotFoundError):
        unensured.lookup(["0" * 32])


def test_a_vector_that_is_not_unit_length_is_stored_normalised(index: VectorIndex) -> None:
    doc = document("photos/a.jpg", E0)
    index.upsert([replace(doc, vector=E0 * 3)])
    np.testing.assert_allclose(index.get(doc.image_id).vector, E0, atol=1e-6)


@pytest.mark.parametrize("magnitude", [3e38, 1e-45, 1e300, 1e-300], ids=str)
def test_a_query_of_any_finite_magnitude_ranks_by_the_cosine_of_its_direction(
    index: VectorIndex, magnitude: float
) -> None:
    """3e38 and 1e-45 are float32's extremes (the largest, a subnormal); 1e300 and 1e-300 come as JSON."""
    half = unit([1, 1, 1, 1, 0, 0, 0, 0])
    index.upsert([document("photos/e0.jpg", E0), document("photos/half.jpg", half)])
    dtype = np.float32 if magnitude in (3e38, 1e-45) else np.float64
    query = np.full(DIM, magnitude, dtype=dtype)  # the direction of (1, ..., 1), whatever the magnitude
    hits = index.search(query, k=2)  # type: ignore[arg-type]  # JSON's float64 reaches the port too
    expected = {"photos/half.jpg": 4 / math.sqrt(8) / 2, "photos/e0.jpg": 1 / math.sqrt(8)}
    assert [hit.metadata.key for hit in hits] == list(expected)
    for hit in hits:
        assert hit.similarity == pytest.approx(expected[hit.metadata.key], abs=1e-3)


@pytest.mark.parametrize("count", [0, 6, 7], ids=["empty", "whole pages", "a partial page"])
def test_scan_lists_every_document_once_in_id_order_page_by_page(index: VectorIndex, count: int) -> None:
    docs = [
        document(f"photos/{i}.jpg", v, label="cat") for i, v in enumerate(unit_vectors(count, DIM, seed=9))
    ]
    index.upsert(docs)
    listed = list(index.scan(page_size=3))
    assert [item.image_id for item in listed] == sorted(doc.image_id for doc in docs)
    by_id = {doc.image_id: doc.metadata for doc in docs}
    assert all(item.metadata == by_id[item.image_id] for item in listed)


def test_scan_leaves_removed_documents_out(index: VectorIndex) -> None:
    docs = [document(f"photos/{i}.jpg", v) for i, v in enumerate(unit_vectors(4, DIM, seed=10))]
    index.upsert(docs)
    index.delete([docs[1].image_id])
    assert {item.image_id for item in index.scan()} == {docs[0].image_id, docs[2].image_id, docs[3].image_id}


def test_get_of_an_unknown_id_raises_not_found(index: VectorIndex) -> None:
    with pytest.raises(NotFoundError, match="no image"):
        index.get("f" * 32)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.ones(DIM + 1, dtype=np.float32), "shape"),
        (np.full(DIM, np.nan, dtype=np.float32), "finite"),
        (np.array([np.inf] + [0] * (DIM - 1), dtype=np.float32), "finite"),
        (np.zeros(DIM, dtype=np.float32), "length 0"),
    ],
)
def test_a_bad_vector_anywhere_in_a_batch_writes_nothing(
    index: VectorIndex, bad: np.ndarray, message: str
) -> None:
    good = [document(f"photos/{i}.jpg", v) for i, v in enumerate(unit_vectors(4, DIM, seed=5))]
    broken = replace(good[0], image_id="bad", vector=bad)
    with pytest.raises(InvalidVectorError, match=message):
        index.upsert([*good[:2], broken, *good[2:]])
    assert index.count() == 0


def test_a_query_vector_of_the_wrong_dimension_is_rejected(index: VectorIndex) -> None:
    with pytest.raises(InvalidVectorError, match=rf"\({DIM},\)"):
        index.search(np.ones(DIM - 1, dtype=np.float32), k=1)


@pytest.mark.parametrize("k", [0, -1, 10_001])
def test_k_outside_1_to_10000_is_rejected(index: VectorIndex, k: int) -> None:
    with pytest.raises(InvalidRequestError, match="k is"):
        index.search(E0, k=k)


def test_k_larger_than_the_collection_returns_every_document(index: VectorIndex) -> None:
    docs = [document(f"photos/{i}.jpg", v) for i, v in enumerate(unit_vectors(7, DIM, seed=6))]
    index.upsert(docs)
    assert sorted(ids(index.search(E0, k=100))) == sorted(d.image_id for d in docs)


def test_the_order_is_the_exact_cosine_order(index: VectorIndex) -> None:
    vectors = unit_vectors(40, DIM, seed=7)
    docs = [document(f"photos/{i}.jpg", v) for i, v in enumerate(vectors)]
    index.upsert(docs)
    for query in unit_vectors(5, DIM, seed=8):
        cosines = vectors @ query
        expected = [docs[i].image_id for i in np.argsort(-cosines)[:15]]
        hits = index.search(query, k=15)
        assert ids(hits) == expected
        np.testing.assert_allclose([h.similarity for h in hits], np.sort(cosines)[::-1][:15], atol=1e-5)


def test_similarities_span_minus_one_to_one_and_scores_follow_the_engine_formula(index: VectorIndex) -> None:
    angles = [0, 30, 60, 90, 120, 150, 180]
    docs = [document(f"photos/{a}.jpg", on_circle(a)) for a in angles]
    index.upsert(docs)
    hits = index.search(E0, k=len(angles))
    assert ids(hits) == [d.image_id for d in docs]
    expected = [math.cos(math.radians(a)) for a in angles]
    assert [h.similarity for h in hits] == pytest.approx(expected, abs=1e-5)
    assert all(-1.0 <= h.similarity <= 1.0 for h in hits)
    for hit in hits:
        assert mapping.similarity_from_score(hit.score, space_type="innerproduct") == pytest.approx(
            hit.similarity, abs=1e-5
        )


@pytest.mark.parametrize(("threshold", "expected_angles"), [(0.4, [0, 30, 60]), (-0.6, [0, 30, 60, 90, 120])])
def test_min_similarity_drops_the_less_similar_hits(
    index: VectorIndex, threshold: float, expected_angles: list[int]
) -> None:
    angles = [0, 30, 60, 90, 120, 150, 180]
    docs = {a: document(f"photos/{a}.jpg", on_circle(a)) for a in angles}
    index.upsert(list(docs.values()))
    hits = index.search(E0, k=10, min_similarity=threshold)
    assert ids(hits) == [docs[a].image_id for a in expected_angles]


def test_min_similarity_outside_minus_one_to_one_is_rejected(index: VectorIndex) -> None:
    with pytest.raises(InvalidRequestError, match="min_similarity"):
        index.search(E0, k=1, min_similarity=1.5)


def labelled_collection(index: VectorIndex) -> dict[str, list[str]]:
    """30 documents: labels cat/dog/bird, keys under cats/, dogs/, cats-old/ and 100%_off/."""
    groups: dict[str, list[str]] = {"cat": [], "dog": [], "bird": [], "cats/": [], "100%_off/": []}
    docs = []
    for i, vector in enumerate(unit_vectors(30, DIM, seed=9)):
        label = ("cat", "dog", "bird")[i % 3]
        folder = ("cats/", "dogs/", "cats-old/", "100%_off/", "100%Xoff/")[i % 5]
        doc = document(f"{folder}{i}.jpg", vector, label=label)
        docs.append(doc)
        groups[label].append(doc.image_id)
        groups.setdefault(folder, []).append(doc.image_id)
    index.upsert(docs)
    return groups


def test_a_label_filter_returns_only_that_label_and_up_to_k_of_them(index: VectorIndex) -> None:
    groups = labelled_collection(index)
    hits = index.search(E0, k=100, filters=Filters(label="dog"))
    assert sorted(ids(hits)) == sorted(groups["dog"])
    assert all(h.metadata.label == "dog" for h in hits)
    assert len(index.search(E0, k=3, filters=Filters(label="dog"))) == 3
    assert index.search(E0, k=3, filters=Filters(label="fish")) == []


def test_a_key_prefix_filter_matches_keys_that_start_with_it_literally(index: VectorIndex) -> None:
    groups = labelled_collection(index)
    assert sorted(ids(index.search(E0, k=100, filters=Filters(key_prefix="cats/")))) == sorted(
        groups["cats/"]
    )
    assert sorted(ids(index.search(E0, k=100, filters=Filters(key_prefix="cats")))) == sorted(
        groups["cats/"] + groups["cats-old/"]
    )
    # % and _ are ordinary characters in keys, not wildcards
    assert sorted(ids(index.search(E0, k=100, filters=Filters(key_prefix="100%_off/")))) == sorted(
        groups["100%_off/"]
    )


def test_label_and_key_prefix_filters_combine(index: VectorIndex) -> None:
    groups = labelled_collection(index)
    hits = index.search(E0, k=100, filters=Filters(label="cat", key_prefix="cats/"))
    assert sorted(ids(hits)) == sorted(set(groups["cat"]) & set(groups["cats/"]))


def test_a_filtered_search_is_ordered_by_similarity(index: VectorIndex) -> None:
    labelled_collection(index)
    hits = index.search(E0, k=100, filters=Filters(label="bird"))
    similarities = [h.similarity for h in hits]
    assert similarities == sorted(similarities, reverse=True)


def test_excluded_ids_never_come_back_and_k_is_still_filled(index: VectorIndex) -> None:
    docs = [document(f"photos/{a}.jpg", on_circle(a)) for a in (0, 20, 40, 60, 80)]
    index.upsert(docs)
    hits = index.search(E0, k=3, exclude_ids=[docs[0].image_id, docs[1].image_id])
    assert ids(hits) == [d.image_id for d in docs[2:5]]


# content identity: the embedding cache ----------------------------------------------------------------

CONTENT_A, CONTENT_B, UNKNOWN = "a1" * 32, "b2" * 32, "c3" * 32


def test_vectors_by_content_gives_one_stored_vector_per_known_content(index: VectorIndex) -> None:
    a, b = unit_vectors(2, DIM, seed=21)
    index.upsert(
        [
            document("photos/a.jpg", a, content_sha256=CONTENT_A),
            document("copies/a.jpg", a, content_sha256=CONTENT_A),
            document("photos/b.jpg", b, content_sha256=CONTENT_B),
        ]
    )
    found = index.vectors_by_content([CONTENT_A, CONTENT_B, UNKNOWN, CONTENT_A], model_id=MODEL_ID)
    assert set(found) == {CONTENT_A, CONTENT_B}
    np.testing.assert_allclose(found[CONTENT_A], a, atol=1e-6)
    np.testing.assert_allclose(found[CONTENT_B], b, atol=1e-6)
    assert found[CONTENT_A].dtype == np.float32


def test_vectors_by_content_is_keyed_by_model_too(index: VectorIndex) -> None:
    index.upsert([document("photos/a.jpg", E0, content_sha256=CONTENT_A, model_id="older-model")])
    assert index.vectors_by_content([CONTENT_A], model_id=MODEL_ID) == {}
    assert set(index.vectors_by_content([CONTENT_A], model_id="older-model")) == {CONTENT_A}


def test_vectors_by_content_of_nothing_or_of_removed_documents_is_empty(index: VectorIndex) -> None:
    doc = document("photos/a.jpg", E0, content_sha256=CONTENT_A)
    index.upsert([doc])
    assert index.vectors_by_content([], model_id=MODEL_ID) == {}
    index.delete([doc.image_id])
    assert index.vectors_by_content([CONTENT_A], model_id=MODEL_ID) == {}


def test_with_content_lists_the_documents_of_one_content_in_id_order(index: VectorIndex) -> None:
    a, b = unit_vectors(2, DIM, seed=22)
    copies = [document(f"copies/{n}.jpg", a, content_sha256=CONTENT_A) for n in range(5)]
    index.upsert([*copies, document("photos/b.jpg", b, content_sha256=CONTENT_B)])

    listed = index.with_content(CONTENT_A, limit=10)

    assert [item.image_id for item in listed] == sorted(doc.image_id for doc in copies)
    assert {item.metadata.content_sha256 for item in listed} == {CONTENT_A}
    assert [item.image_id for item in index.with_content(CONTENT_A, limit=2)] == [
        item.image_id for item in listed[:2]
    ]
    assert index.with_content(UNKNOWN, limit=10) == []
