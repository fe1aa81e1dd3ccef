"""A deterministic, stratified split: the same dataset and seed always give the same queries.

Each class is shuffled on its own, with a generator seeded by the seed and the class name, and its
first ``round(n * query_fraction)`` images (at least one, never all) become queries. Seeding per class
keeps a class's split unchanged when another class gains or loses images.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby

from evaluation.dataset import DatasetError, Item

DEFAULT_SEED = 0
DEFAULT_QUERY_FRACTION = 0.2


@dataclass(frozen=True, kw_only=True)
class Split:
    """Which images are indexed and which are queries; ``seed`` and ``query_fraction`` reproduce it."""

    seed: int
    query_fraction: float
    indexed: tuple[Item, ...]
    queries: tuple[Item, ...]


def stratified_split(
    items: Sequence[Item], *, seed: int = DEFAULT_SEED, query_fraction: float = DEFAULT_QUERY_FRACTION
) -> Split:
    """Split every class into indexed images and queries in the proportion asked.

    Raises:
        DatasetError: ``query_fraction`` is not strictly between 0 and 1.
    """
    if not 0 < query_fraction < 1:
        raise DatasetError(f"query_fraction is {query_fraction}; it must be between 0 and 1 (exclusive)")
    indexed: list[Item] = []
    queries: list[Item] = []
    ordered = sorted(items, key=lambda item: item.key)
    for label, members in groupby(sorted(ordered, key=lambda item: item.label), key=lambda item: item.label):
        shuffled = list(members)
        random.Random(f"{seed}:{label}").shuffle(shuffled)
        count = min(max(1, round(len(shuffled) * query_fraction)), len(shuffled) - 1)
        queries += shuffled[:count]
        indexed += shuffled[count:]
    return Split(
        seed=seed,
        query_fraction=query_fraction,
        indexed=tuple(sorted(indexed, key=lambda item: item.key)),
        queries=tuple(sorted(queries, key=lambda item: item.key)),
    )
