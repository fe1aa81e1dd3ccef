"""The whitening sweep: settings are ranked on the development seeds; the held-out seed is only reported."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from evaluation.dataset import Item, scan
from evaluation.split import stratified_split
from evaluation.sweep import Vectors, exact_quality, main, sweep, table, whitening
from model.projection import WhiteningSettings
from simsearch.errors import InvalidRequestError
from tests.eval_datasets import folder_dataset

LABELS, PER_LABEL, WIDTH = 5, 10, 32


def dataset_with_vectors(root: Path) -> tuple[list[Item], npt.NDArray[np.float32]]:
    """Items of five labels; their vectors differ by label a little and by a shared nuisance a lot."""
    items = scan(folder_dataset(root, {f"l{n}": PER_LABEL for n in range(LABELS)}))
    rng = np.random.default_rng(0)
    rows = []
    for item in items:
        label = int(item.label[1:])
        nuisance = np.zeros(WIDTH)
        nuisance[LABELS : 2 * LABELS] = rng.normal(size=LABELS)
        rows.append(1.0 + 0.3 * np.eye(WIDTH)[label] + nuisance + 0.02 * rng.normal(size=WIDTH))
    vectors = np.array(rows)
    return items, (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_exact_quality_scores_a_perfect_ranking_as_perfect(tmp_path: Path) -> None:
    items, _ = dataset_with_vectors(tmp_path / "d")
    split = stratified_split(items, seed=0)
    one_hot = np.eye(LABELS, dtype=np.float32)
    corpus = one_hot[[int(item.label[1:]) for item in split.indexed]]
    asked = one_hot[[int(item.label[1:]) for item in split.queries]]
    scored = exact_quality(split.indexed, split.queries, corpus, asked)
    assert (scored.hit_at[1], scored.precision_at_10, scored.map_at_10) == (1.0, 0.8, 1.0)  # 8 per label


def test_the_sweep_ranks_by_the_development_seeds_and_reports_the_held_out_one(tmp_path: Path) -> None:
    items, vectors = dataset_with_vectors(tmp_path / "d")
    candidates = sweep(
        items,
        vectors,
        {"none": None, "learned 8": whitening(WhiteningSettings(method="learned", dims=8, shrinkage=0.1))},
        development=[1, 2],
        held_out=0,
        targets=(0.5, 0.9),
    )
    assert [c.name for c in candidates] == ["learned 8", "none"]
    best, raw = candidates
    assert best.development[0] > raw.development[0]
    assert best.score == pytest.approx(min(best.development[0] / 0.5, best.development[1] / 0.9))
    assert best.held_out[0] > raw.held_out[0]
    rendered = table(candidates, development=[1, 2], held_out=0).splitlines()
    assert rendered[0].startswith("| setting | score | hit@1 (seeds 1,2) |")
    assert "| hit@1 (seed 0) |" in rendered[0]
    assert rendered[2].startswith("| learned 8 | ")


def test_the_held_out_seed_cannot_also_be_a_development_seed(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--development-seeds", "0,1", "--held-out-seed", "0"])


def test_a_whitening_fitted_on_other_labels_is_scored_on_the_unseen_ones_only(tmp_path: Path) -> None:
    items, vectors = dataset_with_vectors(tmp_path / "d")
    fitted_on: list[set[str]] = []

    def spy(
        fit_on: Vectors, fit_items: Sequence[Item], corpus: Vectors, asked: Vectors
    ) -> tuple[Vectors, Vectors]:
        fitted_on.append({item.label for item in fit_items})
        assert len(corpus) == 2 * 8 and len(asked) == 2 * 2  # two unseen labels: 8 indexed + 2 queries each
        return whitening(WhiteningSettings(method="learned", dims=4, shrinkage=0.1))(
            fit_on, fit_items, corpus, asked
        )

    (candidate,) = sweep(
        items, vectors, {"spy": spy}, development=[1], held_out=0, targets=(0.5, 0.9), unseen_labels=2
    )
    assert all(len(labels) == LABELS - 2 for labels in fitted_on)
    assert 0.0 <= candidate.held_out[0] <= 1.0
    with pytest.raises(InvalidRequestError, match="the dataset has 5 labels"):
        sweep(
            items, vectors, {"none": None}, development=[1], held_out=0, targets=(0.5, 0.9), unseen_labels=5
        )
