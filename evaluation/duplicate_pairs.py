"""Cosine similarity of the collection's pairs, sorted by what each pair is.

Two views of one half of the collection (``evaluation.duplicate_set``):

- ``all_pairs``: every unordered pair of members is scored: the strict view, independent of any index.
- ``knn_pairs``: what the duplicates API does: each member asks for its ``k`` nearest other members,
  and a pair is proposed when either finds the other. A duplicate pair no search proposed is missed at
  every threshold.

Vectors are the embedder's unit rows (or a whitening's), so a dot product is the cosine the index ranks by.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from evaluation.duplicate_set import ListedKind, ListedPair, Member, pair_kind

Vectors = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float32]
Pairs = npt.NDArray[np.int64]
"""Shape ``(n, 2)``: row indices ``i < j`` into the members."""


@dataclass(frozen=True, kw_only=True)
class ScoredPairs:
    """The scored pairs of one view: duplicates (with their kind), hard and easy negatives."""

    duplicates: Pairs
    duplicate_scores: Scores
    duplicate_kinds: tuple[str, ...]
    hard: Pairs  # same person, another picture
    hard_scores: Scores
    easy: Pairs  # another person
    easy_scores: Scores

    @property
    def other_scores(self) -> Scores:
        return np.concatenate([self.hard_scores, self.easy_scores])


def all_pairs(members: Sequence[Member], vectors: Vectors, *, listed: Sequence[ListedPair]) -> ScoredPairs:
    """Every unordered pair of ``members`` (rows of ``vectors``), scored and sorted."""
    rows, columns = np.triu_indices(len(members), k=1)
    scores = (vectors @ vectors.T)[rows, columns]  # n x n floats; gathering row pairs would be n² x dim
    pairs = np.stack([rows, columns], axis=1).astype(np.int64)
    return _scored(members, pairs, scores, listed=listed)


def knn_pairs(
    members: Sequence[Member], vectors: Vectors, *, k: int, listed: Sequence[ListedPair]
) -> ScoredPairs:
    """The pairs a ``k``-nearest-neighbour search from every member proposes (each pair once)."""
    proposed: set[tuple[int, int]] = set()
    block = 512  # rows of the similarity matrix at a time: 512 x 5,000 floats, not 5,000 x 5,000
    for start in range(0, len(members), block):
        similarity = vectors[start : start + block] @ vectors.T
        for offset, row in enumerate(similarity):
            me = start + offset
            row[me] = -np.inf  # a member is not its own neighbour
            nearest = np.argpartition(-row, min(k, len(row) - 1))[:k] if len(row) > k else np.arange(len(row))
            proposed.update((min(me, int(n)), max(me, int(n))) for n in nearest if n != me)
    pairs = np.array(sorted(proposed), dtype=np.int64).reshape(-1, 2)
    scores = np.einsum("ij,ij->i", vectors[pairs[:, 0]], vectors[pairs[:, 1]])  # about k x n pairs
    return _scored(members, pairs, scores, listed=listed)


def duplicate_pair_count(members: Sequence[Member]) -> int:
    """How many unordered pairs of ``members`` show the same picture."""
    _, sizes = np.unique([member.picture for member in members], return_counts=True)
    return int((sizes * (sizes - 1) // 2).sum())


def _scored(
    members: Sequence[Member],
    pairs: Pairs,
    similarities: npt.NDArray[np.floating],
    *,
    listed: Sequence[ListedPair],
) -> ScoredPairs:
    counted = ~_ignored(members, pairs, listed=listed)
    pairs, scores = pairs[counted], similarities[counted].astype(np.float32)
    picture = _codes([member.picture for member in members])
    label = _codes([member.label for member in members])
    same_picture = picture[pairs[:, 0]] == picture[pairs[:, 1]]
    same_person = label[pairs[:, 0]] == label[pairs[:, 1]]
    hard, easy = same_person & ~same_picture, ~same_person
    kinds_of_listed: dict[frozenset[str], ListedKind] = {
        frozenset((pair.key_a, pair.key_b)): pair.kind for pair in listed
    }
    duplicates = pairs[same_picture]
    return ScoredPairs(
        duplicates=duplicates,
        duplicate_scores=scores[same_picture],
        duplicate_kinds=tuple(
            pair_kind(members[i], members[j], listed=kinds_of_listed) for i, j in duplicates.tolist()
        ),
        hard=pairs[hard],
        hard_scores=scores[hard],
        easy=pairs[easy],
        easy_scores=scores[easy],
    )


def _ignored(
    members: Sequence[Member], pairs: Pairs, *, listed: Sequence[ListedPair]
) -> npt.NDArray[np.bool_]:
    """Pairs between two pictures an ``ignore`` pair joins (copies included)."""
    codes = _codes([member.picture for member in members])
    code_of = {member.key: codes[n] for n, member in enumerate(members) if member.edit is None}
    left, right = codes[pairs[:, 0]], codes[pairs[:, 1]]
    ignored = np.zeros(len(pairs), dtype=bool)
    for pair in listed:
        if pair.kind == "ignore" and pair.key_a in code_of and pair.key_b in code_of:
            a, b = code_of[pair.key_a], code_of[pair.key_b]
            ignored |= ((left == a) & (right == b)) | ((left == b) & (right == a))
    return ignored


def _codes(values: Sequence[str]) -> npt.NDArray[np.int64]:
    _, codes = np.unique(np.asarray(values, dtype=object), return_inverse=True)
    return codes.astype(np.int64)
