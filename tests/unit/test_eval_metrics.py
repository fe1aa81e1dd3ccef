"""The retrieval metrics on hand-made rankings whose scores are worked out in the comments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.dataset import Item
from evaluation.metrics import K, QueryRecord, Retrieved, ann_recall, average_precision, percentile, quality


def item(key: str, *, sha: str | None = None) -> Item:
    return Item(path=Path(key), label=key.split("/")[0], key=key, sha256=sha or key)


def record(query: Item, results: list[Item], *, latency_ms: float = 1.0) -> QueryRecord:
    return QueryRecord(
        query=query,
        results=tuple(Retrieved(key=r.key, label=r.label, sha256=r.sha256, similarity=0.5) for r in results),
        latency_ms=latency_ms,
        ann_recall=1.0,
    )


def filler(n: int, label: str = "z") -> list[Item]:
    return [item(f"{label}/{i}") for i in range(n)]


def test_hit_at_k_counts_a_query_from_the_rank_of_its_first_right_label() -> None:
    indexed = [item("a/1"), item("b/1"), *filler(10)]
    records = [
        record(item("a/q"), [item("a/1"), *filler(9)]),  # right at rank 1
        record(item("b/q"), [*filler(4), item("b/1"), *filler(5)]),  # right at rank 5
    ]
    scores = quality(records, indexed=indexed, exclude_duplicates=False)
    assert (scores.hit_at[1], scores.hit_at[4], scores.hit_at[5], scores.hit_at[10]) == (0.5, 0.5, 1.0, 1.0)
    assert scores.per_class_hit_at_10 == {"a": 1.0, "b": 1.0}


def test_precision_and_average_precision_at_10() -> None:
    # three relevant images indexed; found at ranks 1 and 3: AP = (1/1 + 2/3) / 3, P@10 = 2/10
    indexed = [item("a/1"), item("a/2"), item("a/3"), *filler(10)]
    records = [record(item("a/q"), [item("a/1"), item("z/0"), item("a/2"), *filler(7, "y")])]
    scores = quality(records, indexed=indexed, exclude_duplicates=False)
    assert scores.precision_at_10 == pytest.approx(0.2)
    assert scores.map_at_10 == pytest.approx((1 + 2 / 3) / 3)


def test_average_precision_divides_by_at_most_ten_relevant() -> None:
    assert average_precision([True] * K, relevant=50) == pytest.approx(1.0)
    assert average_precision([False] * K, relevant=0) == 0.0


def test_excluding_duplicates_drops_copies_of_the_query_and_scores_the_next_results() -> None:
    query = item("a/q", sha="same")
    copy = item("a/copy", sha="same")
    indexed = [copy, item("a/2"), *filler(12)]
    # the copy answers at rank 1; without it, the other "a" image is at rank 11 of the list → rank 10
    records = [record(query, [copy, *filler(9), item("a/2")])]
    with_copies = quality(records, indexed=indexed, exclude_duplicates=False)
    without = quality(records, indexed=indexed, exclude_duplicates=True)
    assert (with_copies.hit_at[1], with_copies.hit_at[10]) == (1.0, 1.0)
    assert (without.hit_at[1], without.hit_at[9], without.hit_at[10]) == (0.0, 0.0, 1.0)
    assert without.map_at_10 == pytest.approx(1 / 10)  # one relevant image left (R = 1), found at rank 10
    assert records[0].top(exclude_duplicates=True)[0].key == "z/0"


def test_ann_recall_is_the_share_of_the_exact_top_ten_returned() -> None:
    corpus = np.eye(20, dtype=np.float32)[:, :20]
    query = np.linspace(1.0, 0.05, 20, dtype=np.float32)  # exact order: rows 0, 1, 2, ...
    assert ann_recall(list(range(10)), query, corpus) == 1.0
    assert ann_recall([*range(8), 15, 16], query, corpus) == pytest.approx(0.8)


def test_ann_recall_treats_tied_copies_as_interchangeable() -> None:
    basis = np.eye(11, dtype=np.float32)
    corpus = np.stack([*basis[:10], basis[9], basis[10]])  # rows 9 and 10 are copies, tied at rank 10
    query = np.linspace(1.0, 0.1, 11, dtype=np.float32)
    assert ann_recall([*range(9), 10], query, corpus) == 1.0  # the other copy is as good an answer
    assert ann_recall([*range(9), 11], query, corpus) == pytest.approx(0.9)


def test_percentiles_interpolate_like_numpy() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
