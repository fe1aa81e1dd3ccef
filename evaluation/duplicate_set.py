"""The near-duplicate benchmark's collection: a dataset's images, their edited copies, and who copies whom.

Every member belongs to a *picture*: the images the duplicates lists pair as ``exact`` or ``near`` share
one, and each edited copy (``evaluation.edits``) shares its source's. Two members are duplicates exactly
when they show the same picture; every other pair is a negative, *hard* when both show the same person
(the folder label), *easy* otherwise. An ``ignore`` pair is the same picture through edits outside the
benchmark's list (a mirror image, a replaced background): neither a duplicate nor a negative, its
pictures' pairs (copies included) are left out of the counts, as retrieval benchmarks leave out "junk".

The people are split in two halves: the threshold is chosen on one and judged on the other, so no
picture, person or copy the choice saw is judged.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from evaluation.dataset import DatasetError, Item
from evaluation.edits import EDITS_VERSION, KINDS, Edit, EditKind, draw_edit, kinds_for

ListedKind = Literal["exact", "near", "ignore"]
_LISTED_KINDS: tuple[ListedKind, ...] = ("exact", "near", "ignore")
ORIGINAL = "original"


@dataclass(frozen=True, kw_only=True, slots=True)
class ListedPair:
    """Two dataset images a duplicates list pairs: byte-identical, near-identical, or to be ignored."""

    kind: ListedKind
    key_a: str
    key_b: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Member:
    """One image of the collection: a dataset image (``edit`` None) or an edited copy of one."""

    source: Item
    picture: str  # members with the same picture are duplicates of each other
    edit: Edit | None = None

    @property
    def key(self) -> str:
        return self.source.key if self.edit is None else f"{self.source.key}#{self.edit.kind}"

    @property
    def label(self) -> str:
        return self.source.label

    @property
    def kind(self) -> str:
        return ORIGINAL if self.edit is None else self.edit.kind

    @property
    def cache_key(self) -> str:
        """What names its vector in the embedding cache: the source's content hash, and the edit's recipe."""
        if self.edit is None:
            return self.source.sha256
        return f"{self.source.sha256}|{self.edit.recipe}|edits-v{EDITS_VERSION}"


def read_listed_pairs(path: Path) -> list[ListedPair]:
    """A ``kind\\tfile_a\\tfile_b`` list (more columns are notes); ``near(dHash=3)`` reads as ``near``.

    Raises:
        DatasetError: the file is missing or a row is not of that shape.
    """
    try:
        with path.open(encoding="utf-8", newline="") as lines:
            rows = list(csv.DictReader(lines, delimiter="\t"))
    except OSError as error:
        raise DatasetError(f"cannot read the duplicates list {path}: {error}") from error
    pairs = []
    for number, row in enumerate(rows, start=2):
        kind = next((k for k in _LISTED_KINDS if k == (row.get("kind") or "").split("(")[0]), None)
        if kind is None or not row.get("file_a") or not row.get("file_b"):
            raise DatasetError(
                f"{path} line {number}: expected kind exact|near|ignore(...), file_a, file_b; got {dict(row)}"
            )
        pairs.append(ListedPair(kind=kind, key_a=row["file_a"], key_b=row["file_b"]))
    return pairs


def pictures(items: Sequence[Item], pairs: Iterable[ListedPair]) -> dict[str, str]:
    """Each item's picture: the smallest key among the items exact and near pairs join to (transitively).

    Raises:
        DatasetError: a pair names a key that is not among ``items``.
    """
    parent = {item.key: item.key for item in items}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for pair in pairs:
        missing = [key for key in (pair.key_a, pair.key_b) if key not in parent]
        if missing:
            raise DatasetError(f"the duplicates list names {missing}, which the dataset does not hold")
        if pair.kind != "ignore":
            a, b = sorted((root(pair.key_a), root(pair.key_b)))
            parent[b] = a
    return {key: root(key) for key in parent}


def ignored_pictures(items: Sequence[Item], pairs: Iterable[ListedPair]) -> set[frozenset[str]]:
    """The pairs of pictures that ``ignore`` pairs join: left out of every count."""
    listed = list(pairs)
    picture_of = pictures(items, listed)
    return {frozenset((picture_of[p.key_a], picture_of[p.key_b])) for p in listed if p.kind == "ignore"}


def collection(
    items: Sequence[Item],
    pairs: Iterable[ListedPair],
    *,
    seed: int,
    copies_per_image: int,
    kinds: tuple[EditKind, ...] = KINDS,
) -> list[Member]:
    """Every item, then ``copies_per_image`` copies of each, with distinct kinds drawn per image."""
    picture_of = pictures(items, pairs)
    originals = [Member(source=item, picture=picture_of[item.key]) for item in items]
    copies = [
        Member(source=item, picture=picture_of[item.key], edit=draw_edit(kind, seed=seed, key=item.key))
        for item in items
        for kind in kinds_for(item.key, seed=seed, count=copies_per_image, kinds=kinds)
    ]
    return originals + copies


def identity_halves(labels: Iterable[str], *, seed: int) -> tuple[list[str], list[str]]:
    """The people split in two (seeded): the first half to choose on, the second, held out, to judge.

    Raises:
        DatasetError: fewer than two people.
    """
    people = sorted(set(labels))
    if len(people) < 2:
        raise DatasetError(f"{len(people)} label(s): the halves need at least two people")
    random.Random(f"{seed}:identities").shuffle(people)
    middle = len(people) // 2
    return sorted(people[:middle]), sorted(people[middle:])


def pair_kind(a: Member, b: Member, *, listed: dict[frozenset[str], ListedKind]) -> str:
    """What makes two members of one picture alike: an edit of the other, a listed pair, or several steps."""
    if a.edit is None and b.edit is None:
        return f"listed {listed.get(frozenset((a.key, b.key)), 'exact')}"
    if a.source.key == b.source.key and (a.edit is None or b.edit is None):
        return a.kind if b.edit is None else b.kind
    return "two steps"  # two copies of one image, or a copy and the listed twin of its source
