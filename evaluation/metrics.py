"""Retrieval quality, ANN recall and speed, computed from what the query path returned.

Quality is scored twice: on the results as returned, and with exact byte-duplicates of the query (the
``content_sha256`` the index recorded for a result equal to the query's ``simsearch.ids.content_id``)
removed from them. A dataset that holds copies of an image lets the copy answer its own
query; the second view measures finding *other* images of the class.

- hit@k: at least one of the top k results has the query's label (the paper's metric at k = 10);
- precision@10: the share of the top 10 with the query's label;
- mAP@10: the mean over queries of AP@10 = (1 / min(R, 10)) · Σ precision@i over the ranks i ≤ 10
  that hold a relevant result, where R is how many indexed images are relevant to the query.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from evaluation.dataset import Item

K = 10
TIE_TOLERANCE = 1e-5
"""Similarities this close count as equal: exact copies share a vector; either may rank first."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Retrieved:
    """One result of a query, as the API returned it, with the content id its document records."""

    key: str
    label: str | None
    sha256: str
    similarity: float


@dataclass(frozen=True, kw_only=True)
class QueryRecord:
    """One query: its results in rank order (``K`` plus the query's copies in the index), time and recall."""

    query: Item
    results: tuple[Retrieved, ...]
    latency_ms: float
    ann_recall: float

    def top(self, *, exclude_duplicates: bool) -> tuple[Retrieved, ...]:
        """The first ``K`` results, after leaving out the query's byte-identical copies if asked."""
        kept = [r for r in self.results if not (exclude_duplicates and r.sha256 == self.query.sha256)]
        return tuple(kept[:K])

    def relevance(self, *, exclude_duplicates: bool) -> list[bool]:
        return [r.label == self.query.label for r in self.top(exclude_duplicates=exclude_duplicates)]


@dataclass(frozen=True, kw_only=True)
class Quality:
    """Quality over all queries in one view (duplicates counted or excluded)."""

    queries: int
    hit_at: dict[int, float]  # k = 1..K
    precision_at_10: float
    map_at_10: float
    per_class_hit_at_10: dict[str, float]


def quality(records: Sequence[QueryRecord], *, indexed: Sequence[Item], exclude_duplicates: bool) -> Quality:
    """Score ``records`` against the labels of the ``indexed`` images."""
    relevant = _relevant_counts(records, indexed=indexed, exclude_duplicates=exclude_duplicates)
    rows = [record.relevance(exclude_duplicates=exclude_duplicates) for record in records]
    per_class: dict[str, list[bool]] = defaultdict(list)
    for record, row in zip(records, rows, strict=True):
        per_class[record.query.label].append(any(row))
    return Quality(
        queries=len(records),
        hit_at={k: _mean([any(row[:k]) for row in rows]) for k in range(1, K + 1)},
        precision_at_10=_mean([sum(row) / K for row in rows]),
        map_at_10=_mean([average_precision(row, relevant=r) for row, r in zip(rows, relevant, strict=True)]),
        per_class_hit_at_10={label: _mean(hits) for label, hits in sorted(per_class.items())},
    )


def average_precision(relevance: Sequence[bool], *, relevant: int) -> float:
    """AP@K of one ranked list; ``relevant`` is how many relevant images the index holds (R)."""
    if relevant == 0:
        return 0.0
    found, total = 0, 0.0
    for rank, is_relevant in enumerate(relevance[:K], start=1):
        if is_relevant:
            found += 1
            total += found / rank
    return total / min(relevant, K)


def ann_recall(
    returned: Sequence[int], query: npt.NDArray[np.float32], corpus: npt.NDArray[np.float32]
) -> float:
    """Share of the exact top ``K`` that the index returned; ``returned`` are rows of ``corpus``.

    Exact search is a matrix product over the same unit vectors. A returned row counts when its
    similarity reaches the exact ``K``-th best (within ``TIE_TOLERANCE``), so tied copies are interchangeable.
    """
    similarities = corpus @ query
    k = min(K, len(similarities))
    kth_best = float(np.partition(similarities, len(similarities) - k)[len(similarities) - k])
    found = sum(1 for row in returned[:k] if similarities[row] >= kth_best - TIE_TOLERANCE)
    return found / k


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def _relevant_counts(
    records: Sequence[QueryRecord], *, indexed: Sequence[Item], exclude_duplicates: bool
) -> list[int]:
    per_label = Counter(item.label for item in indexed)
    copies = Counter((item.label, item.sha256) for item in indexed)
    return [
        per_label[r.query.label] - (copies[(r.query.label, r.query.sha256)] if exclude_duplicates else 0)
        for r in records
    ]


def _mean(values: Sequence[float | bool]) -> float:
    return float(np.mean(values)) if values else float("nan")
