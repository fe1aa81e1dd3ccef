"""One variant (model, whitening) on the near-duplicate benchmark: chosen on one half, judged on the other.

The development half's all-pairs curve chooses a threshold by each rule of ``evaluation.threshold``;
the held-out half is then read at it, in both views (all pairs, and the k-NN search the API runs). Each
choice is also made on the held-out half instead: if the two thresholds disagree much, one half's
threshold says little about a collection we do not have.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.duplicate_pairs import ScoredPairs, Vectors, all_pairs, duplicate_pair_count, knn_pairs
from evaluation.duplicate_set import ListedPair, Member
from evaluation.threshold import Choice, Curve, Point, choose_threshold, curve, precision_first

DEVELOPMENT, HELD_OUT = "development", "held-out"
RULES = {"balanced": choose_threshold, "precision first": precision_first}


@dataclass(frozen=True, kw_only=True)
class Targets:
    precision: float = 0.99
    recall: float = 0.99


@dataclass(frozen=True, kw_only=True)
class Setup:
    """The benchmark's collection, its halves and what to aim for: the same for every variant."""

    dataset: Path
    lists: tuple[Path, ...]  # the duplicates lists read
    members: tuple[Member, ...]
    listed: tuple[ListedPair, ...]
    development: tuple[str, ...]  # people the threshold is chosen on
    held_out: tuple[str, ...]  # people it is judged on
    seed: int
    copies_per_image: int
    k: int
    targets: Targets


@dataclass(frozen=True, kw_only=True)
class KindRecall:
    """How many duplicate pairs of one kind score at or above the threshold, and the lowest score."""

    kind: str
    found: int
    total: int
    lowest: float

    @property
    def recall(self) -> float:
        return self.found / self.total if self.total else 1.0


@dataclass(frozen=True, kw_only=True)
class ScoredPair:
    """One pair to show in the report: the two keys, their kinds and the similarity."""

    key_a: str
    key_b: str
    kind: str
    score: float


@dataclass(frozen=True, kw_only=True)
class Half:
    """One half of the people, its members and both views of its pairs."""

    name: str
    people: tuple[str, ...]
    members: tuple[Member, ...]
    pairs: ScoredPairs
    knn: ScoredPairs
    pairs_curve: Curve
    knn_curve: Curve

    def recall_by_kind(self, threshold: float) -> list[KindRecall]:
        """The all-pairs recall of each kind of duplicate pair at ``threshold``, weakest kind first."""
        by_kind: dict[str, list[float]] = defaultdict(list)
        for kind, score in zip(self.pairs.duplicate_kinds, self.pairs.duplicate_scores.tolist(), strict=True):
            by_kind[kind].append(score)
        rows = [
            KindRecall(
                kind=kind,
                found=sum(score >= threshold - 1e-6 for score in scores),
                total=len(scores),
                lowest=min(scores),
            )
            for kind, scores in by_kind.items()
        ]
        return sorted(rows, key=lambda row: (row.recall, row.lowest))

    def weakest_duplicates(self, count: int) -> list[ScoredPair]:
        """The duplicate pairs with the lowest similarity: the copies a threshold misses first."""
        order = np.argsort(self.pairs.duplicate_scores, kind="stable")[:count]
        return [
            self._shown(
                self.pairs.duplicates[n], self.pairs.duplicate_kinds[n], self.pairs.duplicate_scores[n]
            )
            for n in order.tolist()
        ]

    def confused_pictures(self, threshold: float) -> int:
        """How many pairs of distinct pictures have at least one pair of members at or above ``threshold``.

        Copies multiply pairs: two look-alike photos with two copies each make nine false positive pairs.
        """
        pairs = np.concatenate([self.pairs.hard, self.pairs.easy])
        passing = pairs[self.pairs.other_scores >= threshold - 1e-6]
        return len(
            {frozenset((self.members[a].picture, self.members[b].picture)) for a, b in passing.tolist()}
        )

    def strongest_negatives(self, count: int) -> list[ScoredPair]:
        """The other pairs with the highest similarity, same person or not: the first false positives."""
        pairs = np.concatenate([self.pairs.hard, self.pairs.easy])
        scores = self.pairs.other_scores
        kinds = ["same person"] * len(self.pairs.hard) + ["other person"] * len(self.pairs.easy)
        order = np.argsort(-scores, kind="stable")[:count]
        return [self._shown(pairs[n], kinds[n], scores[n]) for n in order.tolist()]

    def _shown(self, pair: np.ndarray, kind: str, score: np.floating) -> ScoredPair:
        a, b = (self.members[int(n)] for n in pair)
        return ScoredPair(key_a=a.key, key_b=b.key, kind=kind, score=float(score))


@dataclass(frozen=True, kw_only=True)
class VariantResult:
    """A model (and whitening) on both halves, with the thresholds each rule chose on the development half."""

    name: str
    model_id: str
    weights: str  # where the model's weights come from (``near_duplicates.weights_provenance``)
    chosen: dict[str, Choice]  # by rule name (``RULES``)
    swapped: dict[str, Choice]  # chosen on the held-out half instead, to see how much the choice moves
    development: Half
    held_out: Half
    score: str = "cosine similarity"  # what the thresholds and the pairs' scores measure

    def at(self, threshold: float) -> dict[str, dict[str, Point]]:
        """``{half: {"pairs": point, "knn": point}}`` at ``threshold``."""
        return {
            half.name: {"pairs": half.pairs_curve.at(threshold), "knn": half.knn_curve.at(threshold)}
            for half in (self.development, self.held_out)
        }


def score_half(
    name: str,
    members: Sequence[Member],
    vectors: Vectors,
    *,
    people: Sequence[str],
    k: int,
    listed: Sequence[ListedPair],
) -> Half:
    """Both views of the pairs among the members showing ``people``."""
    chosen = set(people)
    rows = [n for n, member in enumerate(members) if member.label in chosen]
    own, own_vectors = [members[n] for n in rows], vectors[rows]
    pairs = all_pairs(own, own_vectors, listed=listed)
    knn = knn_pairs(own, own_vectors, k=k, listed=listed)
    negatives = len(pairs.hard_scores) + len(pairs.easy_scores)
    return Half(
        name=name,
        people=tuple(sorted(chosen)),
        members=tuple(own),
        pairs=pairs,
        knn=knn,
        pairs_curve=curve(pairs.duplicate_scores, pairs.other_scores),
        knn_curve=curve(
            knn.duplicate_scores, knn.other_scores, positives=duplicate_pair_count(own), negatives=negatives
        ),
    )


def evaluate_variant(
    name: str,
    model_id: str,
    *,
    weights: str,
    development: Half,
    held_out: Half,
    targets: Targets,
) -> VariantResult:
    """Choose by each rule on ``development``'s all-pairs curve (and, to compare, on ``held_out``'s)."""
    chosen, instead = {}, {}
    for rule, choose in RULES.items():
        chosen[rule] = choose(
            development.pairs_curve, precision_target=targets.precision, recall_target=targets.recall
        )
        instead[rule] = choose(
            held_out.pairs_curve, precision_target=targets.precision, recall_target=targets.recall
        )
    return VariantResult(
        name=name,
        model_id=model_id,
        weights=weights,
        chosen=chosen,
        swapped=instead,
        development=development,
        held_out=held_out,
    )
