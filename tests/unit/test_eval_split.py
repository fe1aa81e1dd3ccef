"""The dataset scan and the stratified split: deterministic, proportional per class, refusing bad folders."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from evaluation.dataset import DatasetError, duplicate_counts, scan
from evaluation.split import stratified_split
from tests.eval_datasets import folder_dataset


def test_scan_labels_each_image_by_its_folder_and_keys_it_as_label_slash_file(tmp_path: Path) -> None:
    root = folder_dataset(tmp_path, {"cats": 2, "dogs": 3})
    (root / "cats" / "notes.txt").write_text("not an image")
    items = scan(root)
    assert [item.key for item in items] == [
        "cats/00.jpg",
        "cats/01.jpg",
        "dogs/00.jpg",
        "dogs/01.jpg",
        "dogs/02.jpg",
    ]
    assert {item.label for item in items} == {"cats", "dogs"}
    assert all(len(item.sha256) == 64 for item in items)


def test_byte_identical_files_share_a_content_hash(tmp_path: Path) -> None:
    root = folder_dataset(tmp_path, {"a": 2, "b": 2})
    (root / "b" / "copy.jpg").write_bytes((root / "a" / "00.jpg").read_bytes())
    items = scan(root)
    assert max(duplicate_counts(items).values()) == 2


@pytest.mark.parametrize(
    ("counts", "message"),
    [({"only": 5}, "at least 2"), ({"a": 3, "b": 1}, "fewer than 2 images")],
)
def test_a_dataset_that_cannot_be_split_is_refused(
    tmp_path: Path, counts: dict[str, int], message: str
) -> None:
    with pytest.raises(DatasetError, match=message):
        scan(folder_dataset(tmp_path, counts))


def test_a_missing_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        scan(tmp_path / "absent")


def test_every_class_gives_a_fifth_of_its_images_as_queries(tmp_path: Path) -> None:
    items = scan(folder_dataset(tmp_path, {"a": 10, "b": 20, "c": 3}))
    split = stratified_split(items, seed=7)
    assert Counter(item.label for item in split.queries) == {"a": 2, "b": 4, "c": 1}
    assert {i.key for i in split.queries}.isdisjoint({i.key for i in split.indexed})
    assert sorted([*split.queries, *split.indexed], key=lambda item: item.key) == items


def test_the_same_seed_gives_the_same_split_and_another_seed_another(tmp_path: Path) -> None:
    items = scan(folder_dataset(tmp_path, {"a": 20, "b": 20}))
    assert stratified_split(items, seed=1) == stratified_split(list(reversed(items)), seed=1)
    assert stratified_split(items, seed=1).queries != stratified_split(items, seed=2).queries


def test_a_class_keeps_its_split_when_another_class_changes(tmp_path: Path) -> None:
    small = scan(folder_dataset(tmp_path / "one", {"a": 20, "b": 20}))
    large = scan(folder_dataset(tmp_path / "two", {"a": 20, "b": 20, "c": 9}))
    queries_of_a = [
        [item.key for item in stratified_split(items, seed=3).queries if item.label == "a"]
        for items in (small, large)
    ]
    assert queries_of_a[0] == queries_of_a[1]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2])
def test_a_query_fraction_outside_zero_to_one_is_refused(tmp_path: Path, fraction: float) -> None:
    items = scan(folder_dataset(tmp_path, {"a": 4, "b": 4}))
    with pytest.raises(DatasetError, match="between 0 and 1"):
        stratified_split(items, query_fraction=fraction)
