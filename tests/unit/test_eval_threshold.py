"""Precision/recall curves of a similarity threshold, and the choice of the threshold on them."""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.threshold import Curve, choose_threshold, curve, grid, precision_first


def scores(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def test_the_grid_runs_from_0_to_1_by_thousandths() -> None:
    steps = grid()
    assert (len(steps), steps[0], steps[-1], steps[950]) == (1001, 0.0, 1.0, 0.95)


def test_counts_precision_and_recall_at_a_threshold() -> None:
    made = curve(scores(0.99, 0.97, 0.95, 0.90), scores(0.96, 0.50, 0.20))
    point = made.at(0.95)
    assert (point.true_positives, point.false_positives, point.false_negatives) == (3, 1, 1)
    assert (point.precision, point.recall) == (0.75, 0.75)
    assert point.false_positive_rate == pytest.approx(1 / 3)


def test_a_score_equal_to_the_threshold_counts_even_in_float32() -> None:
    # the cosine of two byte-identical images is 0.99999994 in float32 as often as 1.0
    made = curve(scores(np.nextafter(np.float32(1), np.float32(0)), 0.95), scores())
    assert made.at(1.0).true_positives == 1
    assert made.at(0.95).true_positives == 2


def test_with_nothing_predicted_precision_is_1_and_recall_0() -> None:
    point = curve(scores(0.5), scores(0.4)).at(0.9)
    assert (point.precision, point.recall) == (1.0, 0.0)


def test_recall_counts_the_duplicates_a_search_never_proposed() -> None:
    found_by_search = curve(scores(0.99), scores(0.3), positives=4)
    assert found_by_search.at(0.9).recall == 0.25
    with pytest.raises(ValueError, match="positives"):
        curve(scores(0.99, 0.98), scores(), positives=1)


def test_a_threshold_off_the_grid_is_refused() -> None:
    with pytest.raises(ValueError, match="grid"):
        curve(scores(0.9), scores(0.1)).at(0.9505)


def test_the_choice_is_the_middle_of_the_thresholds_meeting_both_targets() -> None:
    # duplicates score 0.90 or more, other pairs 0.80 or less: every threshold in (0.80, 0.90] is perfect
    made = curve(scores(0.90, 0.95, 1.0), scores(0.80, 0.5))
    choice = choose_threshold(made, precision_target=0.99, recall_target=0.99)
    assert choice.meets_targets
    assert choice.threshold == pytest.approx(0.85, abs=0.001)
    assert choice.rule == "balanced: middle of [0.801, 0.900], where both targets are met"


def test_when_no_threshold_meets_both_the_closest_is_chosen() -> None:
    # a duplicate at 0.93 below a non-duplicate at 0.94: recall 2/3 and precision 1, or recall 1 and 3/4
    made = curve(scores(0.93, 0.97, 0.99), scores(0.94, 0.1))
    choice = choose_threshold(made, precision_target=0.99, recall_target=0.99)
    assert not choice.meets_targets
    assert "[0.101, 0.930]" in choice.rule  # precision 3/4 is closer to 0.99 than recall 2/3
    assert "none meets both" in choice.rule


def test_the_longest_run_wins_over_an_earlier_shorter_one() -> None:
    steps = np.round(np.arange(0, 1.0001, 0.1), 6)
    made = Curve(
        thresholds=steps,
        true_positives=np.array([10, 10, 10, 10, 10, 10, 10, 10, 9, 9, 9]),
        false_positives=np.array([9, 0, 5, 0, 0, 0, 0, 5, 0, 0, 0]),
        positives=10,
        negatives=100,
    )
    choice = choose_threshold(made, precision_target=0.99, recall_target=0.99)
    assert choice.threshold == 0.4
    assert "[0.300, 0.600]" in choice.rule


def test_precision_first_takes_the_lowest_threshold_from_which_precision_holds() -> None:
    steps = np.round(np.arange(0, 1.0001, 0.1), 6)
    made = Curve(
        thresholds=steps,
        true_positives=np.array([100, 100, 100, 100, 99, 98, 95, 90, 80, 50, 10]),
        false_positives=np.array([50, 0, 20, 5, 1, 1, 0, 0, 1, 0, 0]),  # a dip at 0.8 keeps 0.1 from counting
        positives=100,
        negatives=1000,
    )
    choice = precision_first(made, precision_target=0.99, recall_target=0.99)
    assert choice.threshold == 0.9
    assert not choice.meets_targets  # recall 0.5 there
    assert choice.rule.startswith("precision first")
    made = curve(scores(0.995, 0.99, 0.97), scores(0.96, 0.5))
    best = precision_first(made, precision_target=0.99, recall_target=0.99)
    assert (best.threshold, best.meets_targets) == (0.961, True)
