"""``python -m evaluation.sweep DATASET``: choose a whitening's settings on some splits, judge it on another.

The real evaluation (``python -m evaluation``) indexes and queries through the handlers, minutes per
setting. Choosing dimensions and shrinkage needs dozens of settings on several splits, so this command
embeds the dataset once with the base model and, per split, fits ``model.projection`` on the indexed
images and ranks the queries by exact cosine over the same vectors: what the handlers compute, minus
the transport (a real run on the held-out split reproduces its row to the last digit).

``--unseen-labels N`` asks whether a learned whitening carries over to labels it was not fitted on:
per seed, N labels are drawn and left out of the fit, and only their images are indexed and queried.

Settings are chosen on the development seeds only, by the worst ratio to the targets
(``min(hit@1 / target, hit@10 / target)``, duplicates excluded, averaged over those seeds), and then
reported on the held-out seed, which the choice never saw. Prints a Markdown table, best first.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import get_args

import numpy as np
import numpy.typing as npt

from evaluation.dataset import Item, duplicate_counts, scan
from evaluation.metrics import K, Quality, QueryRecord, Retrieved, quality
from evaluation.split import DEFAULT_QUERY_FRACTION, stratified_split
from evaluation.vectors import embed_items
from model.projection import Method, WhiteningSettings
from simsearch.errors import InvalidRequestError, SimsearchError

Vectors = npt.NDArray[np.float32]
Transform = Callable[[Vectors, Sequence[Item], Vectors, Vectors], tuple[Vectors, Vectors]]
"""(vectors and items to fit on, indexed vectors, query vectors) -> the last two, transformed."""


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One setting's scores: mean over the development seeds, and on the held-out seed."""

    name: str
    development: tuple[float, float, float]  # hit@1, hit@10, mAP@10 (duplicates excluded)
    held_out: tuple[float, float, float]
    score: float  # min(hit@1 / target, hit@10 / target) over the development means


def exact_quality(
    indexed: Sequence[Item], queries: Sequence[Item], corpus: Vectors, asked: Vectors
) -> Quality:
    """Rank every indexed image for every query by cosine, and score as the evaluation scores."""
    similarity = asked @ corpus.T
    copies = duplicate_counts(indexed)
    records = []
    for row, query in enumerate(queries):
        ranked = np.argsort(-similarity[row], kind="stable")[: K + copies[query.sha256]]
        results = tuple(
            Retrieved(key=indexed[n].key, label=indexed[n].label, sha256=indexed[n].sha256, similarity=0.0)
            for n in ranked
        )
        records.append(QueryRecord(query=query, results=results, latency_ms=0.0, ann_recall=1.0))
    return quality(records, indexed=indexed, exclude_duplicates=True)


def whitening(settings: WhiteningSettings) -> Transform:
    def transform(
        fit_on: Vectors, fit_items: Sequence[Item], corpus: Vectors, asked: Vectors
    ) -> tuple[Vectors, Vectors]:
        labels = [item.label for item in fit_items]
        fitted = settings.fit(fit_on, labels=labels)
        return fitted.apply(corpus), fitted.apply(asked)

    return transform


def sweep(
    items: Sequence[Item],
    vectors: Vectors,
    transforms: dict[str, Transform | None],
    *,
    development: Sequence[int],
    held_out: int,
    targets: tuple[float, float],
    unseen_labels: int = 0,
) -> list[Candidate]:
    """Score every transform on every seed; best development score first.

    With ``unseen_labels``, each seed also draws that many labels whose images the fit never sees:
    the transform is fitted on the other labels' indexed images, and only the unseen labels' images
    are indexed and queried (does the whitening carry over to people it was not fitted on?).
    """
    row_of = {item.key: row for row, item in enumerate(items)}
    labels = sorted({item.label for item in items})
    if not 0 <= unseen_labels < len(labels):
        raise InvalidRequestError(f"unseen_labels is {unseen_labels}; the dataset has {len(labels)} labels")
    rows = {}
    for seed in {*development, held_out}:
        split = stratified_split(items, seed=seed, query_fraction=DEFAULT_QUERY_FRACTION)
        unseen = set(random.Random(seed).sample(labels, unseen_labels))
        scored_labels = unseen or set(labels)
        fit = [item for item in split.indexed if item.label not in unseen]
        indexed = [item for item in split.indexed if item.label in scored_labels]
        queries = [item for item in split.queries if item.label in scored_labels]
        rows[seed] = (fit, indexed, queries)
    candidates = []
    for name, transform in transforms.items():
        scores = {}
        for seed, (fit, indexed, queries) in rows.items():
            corpus = vectors[[row_of[item.key] for item in indexed]]
            asked = vectors[[row_of[item.key] for item in queries]]
            if transform is not None:
                corpus, asked = transform(vectors[[row_of[item.key] for item in fit]], fit, corpus, asked)
            scored = exact_quality(indexed, queries, corpus, asked)
            scores[seed] = (scored.hit_at[1], scored.hit_at[K], scored.map_at_10)
        mean = tuple(float(np.mean([scores[seed][n] for seed in development])) for n in range(3))
        candidates.append(
            Candidate(
                name=name,
                development=(mean[0], mean[1], mean[2]),
                held_out=scores[held_out],
                score=min(mean[0] / targets[0], mean[1] / targets[1]),
            )
        )
    return sorted(candidates, key=lambda candidate: -candidate.score)


def table(candidates: Sequence[Candidate], *, development: Sequence[int], held_out: int) -> str:
    seeds = ",".join(str(seed) for seed in development)
    lines = [
        f"| setting | score | hit@1 (seeds {seeds}) | hit@10 | mAP@10 "
        f"| hit@1 (seed {held_out}) | hit@10 | mAP@10 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for candidate in candidates:
        numbers = [candidate.score, *candidate.development, *candidate.held_out]
        lines.append(f"| {candidate.name} | " + " | ".join(f"{n:.3f}" for n in numbers) + " |")
    return "\n".join(lines)


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",")]


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="a folder with one subfolder of images per class")
    parser.add_argument("--model-dir", type=Path, default=Path("build/models/mobilenet_v2"))
    parser.add_argument("--method", choices=get_args(Method), default="learned")
    parser.add_argument("--dims", type=_ints, default=[128, 192, 256, 320, 384, 512], help="comma-separated")
    parser.add_argument(
        "--shrinkage", type=_floats, default=[0.05, 0.1, 0.15, 0.2, 0.3], help="comma-separated"
    )
    parser.add_argument("--development-seeds", type=_ints, default=[1, 2, 3, 4])
    parser.add_argument("--held-out-seed", type=int, default=0, help="the split CI evaluates")
    parser.add_argument("--targets", type=_floats, default=[0.55, 0.92], help="hit@1,hit@10 to aim for")
    parser.add_argument(
        "--unseen-labels",
        type=int,
        default=0,
        help="fit on all but this many labels (drawn per seed) and score only on those",
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.held_out_seed in args.development_seeds:
        parser.error("the held-out seed must not be one of the development seeds")
    if len(args.targets) != 2:
        parser.error("--targets takes two numbers: hit@1,hit@10")
    try:
        items = scan(args.dataset)
        vectors = embed_items(items, args.model_dir, threads=args.threads)
    except SimsearchError as error:
        print(f"error ({error.code}): {error}", file=sys.stderr)
        return 1
    transforms: dict[str, Transform | None] = {"none": None}
    for dims, shrinkage in product(args.dims, args.shrinkage):
        settings = WhiteningSettings(method=args.method, dims=dims, shrinkage=shrinkage)
        transforms[str(settings)] = whitening(settings)
    try:
        candidates = sweep(
            items,
            vectors,
            transforms,
            development=args.development_seeds,
            held_out=args.held_out_seed,
            targets=(args.targets[0], args.targets[1]),
            unseen_labels=args.unseen_labels,
        )
    except SimsearchError as error:
        print(f"error ({error.code}): {error}", file=sys.stderr)
        return 1
    print(table(candidates, development=args.development_seeds, held_out=args.held_out_seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
