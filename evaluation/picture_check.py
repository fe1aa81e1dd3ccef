"""The pixel check (``simsearch.same_picture``) on the near-duplicate benchmark, decided as the API decides.

The duplicates API proposes candidates by cosine (at least the model's gate) and keeps those whose
thumbnails correlate at least the picture threshold. Here each half's pairs are rescored that way: a pair
below the gate scores -1 (never a duplicate), one at or above it scores its thumbnails' correlation. The
rescored halves go through the same rules as a cosine threshold (``evaluation.duplicate_benchmark``), so
the picture threshold is chosen on the development half and judged on the held-out one.

The gate is chosen on the development half too: the highest cosine that keeps ``GATE_RECALL`` of its
duplicate pairs, so the check decides nearly every duplicate and as few other pairs as that allows.

Thumbnails are made from each member's bytes as the API makes them (``same_picture.thumbnail_of``) and
cached in ``<cache dir>/thumbnails-<side>.npz`` by ``Member.cache_key``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from evaluation.duplicate_benchmark import Half
from evaluation.duplicate_pairs import Pairs, ScoredPairs, Scores, duplicate_pair_count
from evaluation.duplicate_set import Member
from evaluation.duplicate_vectors import member_bytes, save_npz
from evaluation.threshold import Curve, curve, grid
from simsearch.preprocess import ImageLimits
from simsearch.same_picture import THUMBNAIL_SIDE, Thumbnail, correlation, thumbnail_of

GATE_RECALL = 0.995
"""The share of the development half's duplicate pairs the cosine gate lets through to the check."""

BELOW_GATE = -1.0

SCORE = "the correlation of the two thumbnails, -1 for a pair below the cosine gate"

MAX_CANDIDATES = 300_000
"""The most pairs the check compares on one half (~15 min on two cores). A model whose gate lets more
through separates nothing (synthetic weights score every pair alike), and its check would say nothing."""


class TooManyCandidates(Exception):
    """The gate lets more than ``MAX_CANDIDATES`` pairs through."""


def member_thumbnails(members: Sequence[Member], *, cache_dir: Path, threads: int) -> dict[str, Thumbnail]:
    """Each member's thumbnail by ``Member.cache_key``; only those missing from the cache are made."""
    path = cache_dir / f"thumbnails-{THUMBNAIL_SIDE}.npz"
    cached = _read(path)
    missing = [m for m in {m.cache_key: m for m in members}.values() if m.cache_key not in cached]
    if missing:
        from tqdm import tqdm  # as the other commands: only a run that makes thumbnails needs it

        limits = ImageLimits.deployed()
        with (
            ThreadPoolExecutor(max_workers=max(threads, 1)) as pool,
            tqdm(total=len(missing), unit="image", desc="thumbnails", file=sys.stderr) as bar,
        ):
            for member, thumb in zip(
                missing,
                pool.map(lambda m: thumbnail_of(member_bytes(m, limits=limits), limits=limits), missing),
                strict=True,
            ):
                cached[member.cache_key] = thumb
                bar.update()
        _write(path, cached)
    return {member.cache_key: cached[member.cache_key] for member in members}


def gate(scores: Curve, *, recall: float = GATE_RECALL) -> float:
    """The highest grid cosine at which the recall of ``scores`` (a half's all-pairs curve) is still at
    least ``recall``."""
    thresholds = grid()
    kept = scores.recall >= recall
    return float(thresholds[kept].max()) if kept.any() else float(thresholds[0])


def checked_half(half: Half, thumbnails: dict[str, Thumbnail], *, gate: float, threads: int) -> Half:
    """``half`` with every pair rescored by the check behind a cosine ``gate`` (module docstring)."""
    thumbs = [thumbnails[member.cache_key] for member in half.members]
    scored: dict[tuple[int, int], float] = {}
    candidates = {
        (int(a), int(b))
        for view in (half.pairs, half.knn)
        for pairs, scores in _views(view)
        for a, b in pairs[scores >= gate].tolist()
    }
    if len(candidates) > MAX_CANDIDATES:
        raise TooManyCandidates(f"cosine ≥ {gate:.3f} lets {len(candidates):,} pairs of {half.name} through")
    order = sorted(candidates)
    # Processes, not threads: the comparison is many small numpy calls, which hold the GIL.
    with ProcessPoolExecutor(max(threads, 1), initializer=_adopt, initargs=(thumbs,)) as pool:
        scored.update(zip(order, pool.map(_correlated, order, chunksize=256), strict=True))

    def rescored(view: ScoredPairs) -> ScoredPairs:
        duplicate, hard, easy = (_rescore(pairs, scores, scored, gate=gate) for pairs, scores in _views(view))
        return replace(view, duplicate_scores=duplicate, hard_scores=hard, easy_scores=easy)

    pairs, knn = rescored(half.pairs), rescored(half.knn)
    negatives = len(pairs.hard_scores) + len(pairs.easy_scores)
    return replace(
        half,
        pairs=pairs,
        knn=knn,
        pairs_curve=curve(pairs.duplicate_scores, pairs.other_scores),
        knn_curve=curve(
            knn.duplicate_scores,
            knn.other_scores,
            positives=duplicate_pair_count(list(half.members)),
            negatives=negatives,
        ),
    )


_thumbs: list[Thumbnail] = []  # a worker process's copy of the half's thumbnails


def _adopt(thumbs: list[Thumbnail]) -> None:
    _thumbs[:] = thumbs


def _correlated(pair: tuple[int, int]) -> float:
    return correlation(_thumbs[pair[0]], _thumbs[pair[1]])


def _views(view: ScoredPairs) -> tuple[tuple[Pairs, Scores], ...]:
    return (
        (view.duplicates, view.duplicate_scores),
        (view.hard, view.hard_scores),
        (view.easy, view.easy_scores),
    )


def _rescore(pairs: Pairs, scores: Scores, scored: dict[tuple[int, int], float], *, gate: float) -> Scores:
    rescored = np.full(len(scores), BELOW_GATE, dtype=np.float32)
    for row in np.flatnonzero(scores >= gate).tolist():
        a, b = pairs[row].tolist()
        rescored[row] = scored[a, b]
    return rescored


def _read(path: Path) -> dict[str, Thumbnail]:
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as stored:
        shapes, flat = stored["shapes"], stored["pixels"]
        ends = np.cumsum(shapes[:, 0] * shapes[:, 1])
        starts = ends - shapes[:, 0] * shapes[:, 1]
        return {
            key: (flat[start:end].reshape(shape).astype(np.float32) / 255)
            for key, start, end, shape in zip(
                stored["keys"].tolist(), starts.tolist(), ends.tolist(), shapes.tolist(), strict=True
            )
        }


def _write(path: Path, cached: dict[str, Thumbnail]) -> None:
    """One flat uint8 array of every thumbnail (they are 8-bit greys)."""
    save_npz(
        path,
        keys=np.array(list(cached)),
        shapes=np.array([thumb.shape for thumb in cached.values()], dtype=np.int64),
        pixels=np.concatenate([np.round(thumb.ravel() * 255).astype(np.uint8) for thumb in cached.values()]),
    )
