"""Precision and recall of "similarity ≥ threshold means duplicate", over a grid, and the threshold chosen.

A curve counts, at every threshold of the grid, the duplicate pairs scored at or above it (true positives)
and the other pairs scored at or above it (false positives). Recall divides by every duplicate pair,
including those a k-NN search never proposed, so a search that misses a pair loses recall for it.
Precision with nothing predicted is 1: no answer, no wrong answer.

Two rules choose a threshold on the development pairs:

- ``balanced`` (``choose_threshold``): the middle of the longest run of grid thresholds that meet both
  targets, the farthest from failing either on a collection whose scores are not the development's.
  When none meets both, the run that gets closest, by the worse of the two ratios to its target.
- ``precision_first``: the lowest threshold above which precision never drops below its target: the
  most recall that keeps precision. For a feature that collapses or deletes, a false "duplicate" hides a
  photo, while a missed one only costs its bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Scores = npt.NDArray[np.float32]
Counts = npt.NDArray[np.int64]

GRID_STEP = 0.001


def grid(step: float = GRID_STEP) -> npt.NDArray[np.float64]:
    """Thresholds from 0 to 1 inclusive; cosine similarities of duplicates live near the top."""
    return np.round(np.arange(0.0, 1.0 + step / 2, step), 6)


@dataclass(frozen=True, kw_only=True)
class Curve:
    """True and false positives at each threshold, and the number of duplicate pairs there are."""

    thresholds: npt.NDArray[np.float64]
    true_positives: Counts
    false_positives: Counts
    positives: int
    negatives: int

    @property
    def precision(self) -> npt.NDArray[np.float64]:
        predicted = self.true_positives + self.false_positives
        return np.where(predicted > 0, self.true_positives / np.maximum(predicted, 1), 1.0)

    @property
    def recall(self) -> npt.NDArray[np.float64]:
        return self.true_positives / self.positives if self.positives else np.ones(len(self.thresholds))

    def at(self, threshold: float) -> Point:
        """The counts at ``threshold``, which need not lie on the grid."""
        return Point.of(self, threshold)


@dataclass(frozen=True, kw_only=True)
class Point:
    """Precision and recall at one threshold, with the counts behind them."""

    threshold: float
    precision: float
    recall: float
    true_positives: int
    false_positives: int
    positives: int
    negatives: int

    @property
    def false_negatives(self) -> int:
        return self.positives - self.true_positives

    @property
    def false_positive_rate(self) -> float:
        """The share of negative pairs passing: what scales with a larger collection."""
        return self.false_positives / self.negatives if self.negatives else 0.0

    @classmethod
    def of(cls, curve: Curve, threshold: float) -> Point:
        index = int(np.searchsorted(curve.thresholds, threshold - 1e-9))
        if index >= len(curve.thresholds) or abs(curve.thresholds[index] - threshold) > 1e-9:
            raise ValueError(f"threshold {threshold} is not on the curve's grid")
        return cls(
            threshold=float(threshold),
            precision=float(curve.precision[index]),
            recall=float(curve.recall[index]),
            true_positives=int(curve.true_positives[index]),
            false_positives=int(curve.false_positives[index]),
            positives=curve.positives,
            negatives=curve.negatives,
        )


def curve(
    duplicate_scores: Scores,
    other_scores: Scores,
    *,
    positives: int | None = None,
    negatives: int | None = None,
    thresholds: npt.NDArray[np.float64] | None = None,
) -> Curve:
    """Count, per threshold, the duplicate and other pairs scoring at or above it.

    Args:
        duplicate_scores: similarities of the duplicate pairs that were scored.
        other_scores: similarities of the other pairs that were scored.
        positives: every duplicate pair there is (default: those scored); more when a search skipped some.
        negatives: every other pair there is (default: those scored), for the false positive rate.
        thresholds: default ``grid()``.
    """
    steps = grid() if thresholds is None else thresholds
    total = len(duplicate_scores) if positives is None else positives
    if total < len(duplicate_scores):
        raise ValueError(f"{len(duplicate_scores)} duplicate pairs were scored, but positives is {total}")
    return Curve(
        thresholds=steps,
        true_positives=_at_or_above(duplicate_scores, steps),
        false_positives=_at_or_above(other_scores, steps),
        positives=total,
        negatives=len(other_scores) if negatives is None else negatives,
    )


@dataclass(frozen=True, kw_only=True)
class Choice:
    """The chosen threshold, whether it meets both targets where it was chosen, and how it was chosen."""

    threshold: float
    meets_targets: bool
    rule: str


def choose_threshold(chosen_on: Curve, *, precision_target: float, recall_target: float) -> Choice:
    """The middle of the longest run of thresholds meeting both targets (else the closest run's middle)."""
    precision, recall = chosen_on.precision, chosen_on.recall
    meets = (precision >= precision_target) & (recall >= recall_target)
    if meets.any():
        start, stop = _longest_run(meets)
    else:
        worse = np.minimum(precision / precision_target, recall / recall_target)
        start, stop = _longest_run(np.isclose(worse, worse.max(), rtol=0, atol=1e-12))
    steps = chosen_on.thresholds
    low, high = steps[start], steps[stop - 1]
    return Choice(
        threshold=float(steps[(start + stop - 1) // 2]),
        meets_targets=bool(meets.any()),
        rule=f"balanced: middle of [{low:.3f}, {high:.3f}], "
        + ("where both targets are met" if meets.any() else "the closest to both targets (none meets both)"),
    )


def precision_first(chosen_on: Curve, *, precision_target: float, recall_target: float) -> Choice:
    """The lowest threshold from which precision stays at or above its target (the top one if none does)."""
    keeps = chosen_on.precision >= precision_target
    from_here_up = np.logical_and.accumulate(keeps[::-1])[::-1]  # True where every higher threshold keeps it
    index = int(np.argmax(from_here_up)) if from_here_up.any() else len(keeps) - 1
    return Choice(
        threshold=float(chosen_on.thresholds[index]),
        meets_targets=bool(from_here_up.any() and chosen_on.recall[index] >= recall_target),
        rule=f"precision first: the lowest threshold above which precision stays ≥ {precision_target:g}",
    )


def _at_or_above(scores: Scores, thresholds: npt.NDArray[np.float64]) -> Counts:
    ordered = np.sort(np.asarray(scores, dtype=np.float64))
    # a tiny tolerance: float32 cosines of byte-identical images land on 0.99999994 as often as on 1.0
    below = np.searchsorted(ordered, thresholds - 1e-6, side="left")
    return (len(ordered) - below).astype(np.int64)


def _longest_run(mask: npt.NDArray[np.bool_]) -> tuple[int, int]:
    """``(start, stop)`` of the longest run of True (the first of equals); ``mask`` has at least one True."""
    best, start = (0, 0), None
    for index, value in enumerate([*mask.tolist(), False]):
        if value and start is None:
            start = index
        elif not value and start is not None:
            if index - start > best[1] - best[0]:
                best = (start, index)
            start = None
    return best
