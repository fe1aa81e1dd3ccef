"""The near-duplicate benchmark's report: ``report.md`` to read, ``near-duplicates.json`` with every curve."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.duplicate_benchmark import Half, KindRecall, ScoredPair, Setup, Targets, VariantResult
from evaluation.threshold import Curve, Point

SHOWN_PAIRS = 12  # weakest duplicates and strongest non-duplicates listed per variant
VIEWS = {"pairs": "all pairs", "knn": "k-NN"}


def write_report(setup: Setup, results: Sequence[VariantResult], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown(setup, results), encoding="utf-8")
    payload = {"setup": setup_facts(setup), "variants": [variant_facts(result) for result in results]}
    (out / "near-duplicates.json").write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")


def summary_table(results: Sequence[VariantResult], *, targets: Targets) -> str:
    """A row per variant and rule: the threshold chosen on development, P/R on both halves, the swap."""
    lines = [
        "| variant | rule | threshold | development P / R | **held-out P / R** | held-out P / R, k-NN "
        "| held-out false positives (same person / other) | held-out missed | chosen on held-out instead "
        f"| held-out P ≥ {targets.precision:g} and R ≥ {targets.recall:g} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        for rule, choice in result.chosen.items():
            points = result.at(choice.threshold)
            development, held_out = points[result.development.name], points[result.held_out.name]
            same, other = _false_positives_by_person(result.held_out, choice.threshold)
            met = (
                held_out["pairs"].precision >= targets.precision
                and held_out["pairs"].recall >= targets.recall
            )
            lines.append(
                f"| {result.name} | {rule} | {choice.threshold:.3f} | {_pr(development['pairs'])} "
                f"| **{_pr(held_out['pairs'])}** | {_pr(held_out['knn'])} | {same} / {other} "
                f"| {held_out['pairs'].false_negatives} | {result.swapped[rule].threshold:.3f} "
                f"| {'yes' if met else 'no'} |"
            )
    return "\n".join(lines)


def curve_table(development: Curve, held_out: Curve, *, marks: Sequence[float]) -> str:
    """Precision and recall on both halves every 0.01 around ``marks`` (shown in bold)."""
    low, high = min(marks) - 0.06, max(marks) + 0.04
    steps = sorted({*(round(m, 3) for m in marks), *np.round(np.arange(low, high + 1e-9, 0.01), 2).tolist()})
    lines = [
        "| threshold | development P | development R | held-out P | held-out R | held-out FP | missed |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step in (s for s in steps if 0 <= s <= 1):
        dev, held = development.at(step), held_out.at(step)
        bold = "**" if any(abs(step - m) < 1e-9 for m in marks) else ""
        lines.append(
            f"| {bold}{step:.3f}{bold} | {dev.precision:.4f} | {dev.recall:.4f} | {held.precision:.4f} "
            f"| {held.recall:.4f} | {held.false_positives} | {held.false_negatives} |"
        )
    return "\n".join(lines)


def markdown(setup: Setup, results: Sequence[VariantResult]) -> str:
    parts = [
        "# Near-duplicate detection",
        _setup_text(setup),
        "## Summary",
        "Thresholds chosen on the development half's all-pairs curve (grid step 0.001) by two rules: "
        f"*balanced*, the middle of the longest run meeting precision ≥ {setup.targets.precision:g} and "
        f"recall ≥ {setup.targets.recall:g} (if none does, of the run closest to both); *precision first*, "
        f"the lowest threshold above which precision stays ≥ {setup.targets.precision:g}.",
        summary_table(results, targets=setup.targets),
    ]
    parts += [_variant_text(result) for result in results]
    return "\n\n".join(parts) + "\n"


def setup_facts(setup: Setup) -> dict[str, Any]:
    copies = Counter(member.kind for member in setup.members if member.edit is not None)
    return {
        "dataset": str(setup.dataset),
        "duplicates_lists": [str(path) for path in setup.lists],
        "originals": sum(member.edit is None for member in setup.members),
        "copies": dict(sorted(copies.items())),
        "listed_pairs": dict(sorted(Counter(pair.kind for pair in setup.listed).items())),
        "development_people": list(setup.development),
        "held_out_people": list(setup.held_out),
        "seed": setup.seed,
        "copies_per_image": setup.copies_per_image,
        "k": setup.k,
        "targets": asdict(setup.targets),
    }


def variant_facts(result: VariantResult) -> dict[str, Any]:
    halves = (result.development, result.held_out)
    return {
        "name": result.name,
        "model_id": result.model_id,
        "weights": result.weights,
        "score": result.score,
        "rules": {
            rule: {
                "threshold": choice.threshold,
                "rule": choice.rule,
                "meets_targets_on_development": choice.meets_targets,
                "chosen_on_held_out_instead": result.swapped[rule].threshold,
                "at_threshold": {
                    half: {view: _point_facts(point) for view, point in views.items()}
                    for half, views in result.at(choice.threshold).items()
                },
                "pictures_confused": {half.name: half.confused_pictures(choice.threshold) for half in halves},
                "recall_by_kind": {
                    half.name: [asdict(row) for row in half.recall_by_kind(choice.threshold)]
                    for half in halves
                },
            }
            for rule, choice in result.chosen.items()
        },
        "curves": {
            half.name: {view: _curve_facts(getattr(half, f"{view}_curve")) for view in VIEWS}
            for half in halves
        },
        "weakest_duplicates": {
            half.name: [asdict(p) for p in half.weakest_duplicates(SHOWN_PAIRS)] for half in halves
        },
        "strongest_non_duplicates": {
            half.name: [asdict(p) for p in half.strongest_negatives(SHOWN_PAIRS)] for half in halves
        },
    }


def _setup_text(setup: Setup) -> str:
    facts = setup_facts(setup)
    copies = ", ".join(f"{kind} {count:,}" for kind, count in facts["copies"].items())
    listed = ", ".join(f"{count} {kind}" for kind, count in facts["listed_pairs"].items()) or "none"
    lists = ", ".join(f"`{path}`" for path in setup.lists) or "none"
    return "\n".join(
        [
            f"- Dataset: `{setup.dataset}`, {facts['originals']:,} images of "
            f"{len(setup.development) + len(setup.held_out)} people.",
            f"- Duplicates lists: {lists}; pairs: {listed} (an *ignore* pair is the same picture through an "
            "edit outside the benchmark's list, e.g. a mirror image: its pairs count neither way).",
            f"- Edited copies: {setup.copies_per_image} per image, kinds drawn per image "
            f"(seed {setup.seed}): {sum(facts['copies'].values()):,} ({copies}).",
            f"- Development half ({len(setup.development)} people; thresholds are chosen here): "
            + ", ".join(setup.development)
            + ".",
            f"- Held-out half ({len(setup.held_out)} people; judged only): "
            + ", ".join(setup.held_out)
            + ".",
            "- Duplicates: two members showing one picture (a listed pair, an image and its copy, two copies "
            "of one image). Every other pair is a negative: *same person* (another photo of them) or *other "
            "person*.",
            f"- Views: *all pairs* scores every pair of a half; *k-NN* keeps the pairs a {setup.k}-nearest-"
            "neighbour search from each member proposes (what the duplicates API does); its recall counts "
            "every duplicate pair, proposed or not.",
        ]
    )


def _variant_text(result: VariantResult) -> str:
    marks = [choice.threshold for choice in result.chosen.values()]
    choices = [
        f"- {rule}: **{choice.threshold:.3f}** ({choice.rule}); chosen on the held-out half instead: "
        f"{result.swapped[rule].threshold:.3f}"
        for rule, choice in result.chosen.items()
    ]
    return "\n\n".join(
        [
            f"## {result.name} (`{result.model_id}`)",
            f"Weights: {result.weights}. Scores and thresholds: {result.score}.",
            "\n".join(choices),
            _points_table(result),
            "### Recall by kind of duplicate pair (all pairs)",
            _kinds_table(result),
            "### Precision / recall around the thresholds (all pairs)",
            curve_table(result.development.pairs_curve, result.held_out.pairs_curve, marks=marks),
            "### Held-out: the weakest duplicate pairs",
            _pairs_table(result.held_out.weakest_duplicates(SHOWN_PAIRS)),
            "### Held-out: the most similar non-duplicate pairs",
            _pairs_table(result.held_out.strongest_negatives(SHOWN_PAIRS)),
            "### Development: the most similar non-duplicate pairs",
            _pairs_table(result.development.strongest_negatives(SHOWN_PAIRS)),
        ]
    )


def _points_table(result: VariantResult) -> str:
    lines = [
        "| rule | half | view | threshold | precision | recall | duplicate pairs found "
        "| false positives (same person / other) | pictures confused | missed | negative pairs "
        "| false positive rate |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rule, choice in result.chosen.items():
        points = result.at(choice.threshold)
        for half in (result.development, result.held_out):
            for view, point in points[half.name].items():
                same, other = _false_positives_by_person(half, choice.threshold, knn=view == "knn")
                lines.append(
                    f"| {rule} | {half.name} | {VIEWS[view]} | {choice.threshold:.3f} "
                    f"| {point.precision:.4f} | {point.recall:.4f} "
                    f"| {point.true_positives:,} / {point.positives:,} "
                    f"| {point.false_positives} ({same} / {other}) "
                    f"| {half.confused_pictures(choice.threshold) if view == 'pairs' else '–'} "
                    f"| {point.false_negatives} "
                    f"| {point.negatives:,} | {point.false_positive_rate:.1e} |"
                )
    return "\n".join(lines)


def _kinds_table(result: VariantResult) -> str:
    rules = list(result.chosen)
    halves = (result.held_out, result.development)
    found = {
        (half.name, rule): {row.kind: row for row in half.recall_by_kind(result.chosen[rule].threshold)}
        for half in halves
        for rule in rules
    }
    heads = [
        f"{half.name} found at {rule} ({result.chosen[rule].threshold:.3f})"
        for half in halves
        for rule in rules
    ]
    lines = [
        "| kind | " + " | ".join(heads) + " | held-out lowest | development lowest |",
        "|---|" + "---:|" * (len(heads) + 2),
    ]
    kinds = sorted(
        {kind for rows in found.values() for kind in rows},
        key=lambda kind: min(rows[kind].lowest for rows in found.values() if kind in rows),
    )
    for kind in kinds:
        cells = [_found(found[half.name, rule].get(kind)) for half in halves for rule in rules]
        lowest = [found[half.name, rules[0]].get(kind) for half in halves]
        lines.append(
            f"| {kind} | "
            + " | ".join(cells)
            + " | "
            + " | ".join(f"{r.lowest:.3f}" if r else "–" for r in lowest)
            + " |"
        )
    return "\n".join(lines)


def _found(row: KindRecall | None) -> str:
    return f"{row.found} / {row.total}" if row else "–"


def _pairs_table(pairs: Sequence[ScoredPair]) -> str:
    lines = ["| score | kind | image | image |", "|---:|---|---|---|"]
    lines += [f"| {p.score:.4f} | {p.kind} | `{p.key_a}` | `{p.key_b}` |" for p in pairs]
    return "\n".join(lines)


def _false_positives_by_person(half: Half, threshold: float, *, knn: bool = False) -> tuple[int, int]:
    scored = half.knn if knn else half.pairs
    floor = threshold - 1e-6  # as the curve counts
    return int((scored.hard_scores >= floor).sum()), int((scored.easy_scores >= floor).sum())


def _pr(point: Point) -> str:
    return f"{point.precision:.4f} / {point.recall:.4f}"


def _point_facts(point: Point) -> dict[str, float | int]:
    return {
        "precision": point.precision,
        "recall": point.recall,
        "true_positives": point.true_positives,
        "false_positives": point.false_positives,
        "false_negatives": point.false_negatives,
        "positives": point.positives,
        "negatives": point.negatives,
    }


def _curve_facts(curve: Curve) -> dict[str, Any]:
    return {
        "thresholds": curve.thresholds.tolist(),
        "precision": np.round(curve.precision, 6).tolist(),
        "recall": np.round(curve.recall, 6).tolist(),
        "true_positives": curve.true_positives.tolist(),
        "false_positives": curve.false_positives.tolist(),
        "positives": curve.positives,
        "negatives": curve.negatives,
    }
