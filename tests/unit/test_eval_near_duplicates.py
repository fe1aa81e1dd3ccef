"""The near-duplicate benchmark: which pairs are duplicates, how they are scored, and the command end to end.

Vectors are made by hand where the test is about pairs; the command runs on a tiny ONNX model and a
folder of generated images, so nothing here needs ``../shared``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from evaluation import picture_check
from evaluation.dataset import DatasetError, Item, scan
from evaluation.duplicate_benchmark import Targets, evaluate_variant, score_half
from evaluation.duplicate_pairs import Vectors, all_pairs, duplicate_pair_count, knn_pairs
from evaluation.duplicate_set import (
    ListedPair,
    Member,
    collection,
    identity_halves,
    pair_kind,
    pictures,
    read_listed_pairs,
)
from evaluation.edits import draw_edit
from evaluation.near_duplicates import main, weights_provenance
from evaluation.threshold import curve
from simsearch.manifest import ModelManifest
from tests.eval_datasets import folder_dataset
from tests.image_factories import manifest_for
from tests.unit.test_embedder import write_model


@pytest.fixture
def items(tmp_path: Path) -> list[Item]:
    """Two people, a/00..a/03 and b/00..b/03."""
    return scan(folder_dataset(tmp_path / "faces", {"a": 4, "b": 4}))


def unit_rows(rows: list[list[float]]) -> Vectors:
    array = np.array(rows, dtype=np.float32)
    unit: Vectors = array / np.linalg.norm(array, axis=1, keepdims=True)
    return unit


def test_the_duplicates_list_reads_exact_and_near_pairs(tmp_path: Path) -> None:
    listed = tmp_path / "d.tsv"
    listed.write_text(
        "kind\tfile_a\tfile_b\tnote\nexact\ta/00.jpg\ta/01.jpg\t\nnear(dHash=3)\tb/00.jpg\tb/01.jpg\t\n"
        "ignore(mirror)\ta/02.jpg\ta/03.jpg\tmirror images\n"
    )
    assert read_listed_pairs(listed) == [
        ListedPair(kind="exact", key_a="a/00.jpg", key_b="a/01.jpg"),
        ListedPair(kind="near", key_a="b/00.jpg", key_b="b/01.jpg"),
        ListedPair(kind="ignore", key_a="a/02.jpg", key_b="a/03.jpg"),
    ]
    listed.write_text("kind\tfile_a\tfile_b\nsimilar\ta/00.jpg\ta/01.jpg\n")
    with pytest.raises(DatasetError, match="line 2"):
        read_listed_pairs(listed)


def test_listed_pairs_join_pictures_transitively(items: list[Item]) -> None:
    joined = pictures(
        items,
        [
            ListedPair(kind="exact", key_a="a/02.jpg", key_b="a/01.jpg"),
            ListedPair(kind="near", key_a="a/02.jpg", key_b="a/03.jpg"),
        ],
    )
    assert {joined[f"a/0{n}.jpg"] for n in (1, 2, 3)} == {"a/01.jpg"}
    assert joined["a/00.jpg"] == "a/00.jpg"
    ignored = [ListedPair(kind="ignore", key_a="a/00.jpg", key_b="a/01.jpg")]
    assert pictures(items, ignored)["a/01.jpg"] == "a/01.jpg"  # an ignore pair joins no pictures
    with pytest.raises(DatasetError, match="does not hold"):
        pictures(items, [ListedPair(kind="exact", key_a="a/00.jpg", key_b="z/9.jpg")])


def test_the_collection_holds_every_image_and_its_copies_of_the_same_picture(items: list[Item]) -> None:
    members = collection(items, [], seed=0, copies_per_image=2)
    originals, copies = members[: len(items)], members[len(items) :]
    assert [m.key for m in originals] == [item.key for item in items]
    assert len(copies) == 2 * len(items)
    assert all(
        copy.picture == copy.source.key and copy.key.startswith(copy.source.key + "#") for copy in copies
    )
    assert collection(items, [], seed=0, copies_per_image=2) == members
    assert collection(items, [], seed=1, copies_per_image=2) != members


def test_copies_of_byte_identical_images_share_their_cache_key_only_with_the_same_edit(
    items: list[Item],
) -> None:
    original = Member(source=items[0], picture="p")
    copy = Member(source=items[0], picture="p", edit=draw_edit("jpeg", seed=0, key=items[0].key))
    assert original.cache_key == items[0].sha256
    assert copy.cache_key.startswith(items[0].sha256 + "|jpeg(quality=")
    assert (
        copy.cache_key
        != Member(source=items[0], picture="p", edit=draw_edit("jpeg", seed=1, key="x")).cache_key
    )


def test_the_halves_split_the_people_the_same_way_every_time() -> None:
    people = [f"person {n}" for n in range(17)]
    development, held_out = identity_halves(people, seed=0)
    assert (len(development), len(held_out)) == (8, 9)
    assert sorted(development + held_out) == sorted(people)
    assert identity_halves(reversed(people), seed=0) == (development, held_out)
    assert identity_halves(people, seed=1) != (development, held_out)
    with pytest.raises(DatasetError):
        identity_halves(["alone"], seed=0)


def test_a_pair_is_named_for_what_makes_it_alike(items: list[Item]) -> None:
    a0, a1 = (Member(source=items[n], picture="a/00.jpg") for n in (0, 1))
    crop = Member(source=items[0], picture="a/00.jpg", edit=draw_edit("crop", seed=0, key=items[0].key))
    jpeg = Member(source=items[0], picture="a/00.jpg", edit=draw_edit("jpeg", seed=0, key=items[0].key))
    listed = {frozenset((a0.key, a1.key)): "near"}
    assert pair_kind(a0, a1, listed=listed) == "listed near"  # type: ignore[arg-type]
    assert pair_kind(a0, crop, listed={}) == pair_kind(crop, a0, listed={}) == "crop"
    assert pair_kind(crop, jpeg, listed={}) == "two steps"
    assert pair_kind(a1, crop, listed={}) == "two steps"


def test_all_pairs_sorts_duplicates_same_person_and_other_person(items: list[Item]) -> None:
    a0, a1, b0 = items[0], items[1], items[4]
    members = [
        Member(source=a0, picture="a0"),
        Member(source=a0, picture="a0", edit=draw_edit("png", seed=0, key=a0.key)),
        Member(source=a1, picture="a1"),
        Member(source=b0, picture="b0"),
    ]
    vectors = unit_rows([[1, 0, 0], [1, 0.1, 0], [0.6, 0.8, 0], [0, 0, 1]])
    scored = all_pairs(members, vectors, listed=[])
    assert scored.duplicates.tolist() == [[0, 1]]
    assert scored.duplicate_kinds == ("png",)
    assert scored.hard.tolist() == [[0, 2], [1, 2]]
    assert scored.easy.tolist() == [[0, 3], [1, 3], [2, 3]]
    assert scored.duplicate_scores[0] == pytest.approx(1 / np.sqrt(1.01))
    assert duplicate_pair_count(members) == 1


def test_pairs_between_the_pictures_of_an_ignore_pair_count_neither_way(items: list[Item]) -> None:
    a0, a1, a2 = items[0], items[1], items[2]
    members = [
        Member(source=a0, picture=a0.key),
        Member(source=a1, picture=a1.key),
        Member(source=a2, picture=a2.key),
        Member(source=a1, picture=a1.key, edit=draw_edit("jpeg", seed=0, key=a1.key)),
    ]
    vectors = unit_rows([[1, 0], [1, 0.05], [0, 1], [1, 0.06]])
    ignore = [ListedPair(kind="ignore", key_a=a1.key, key_b=a0.key)]
    scored = all_pairs(members, vectors, listed=ignore)
    assert scored.duplicates.tolist() == [[1, 3]]
    assert scored.hard.tolist() == [[0, 2], [1, 2], [2, 3]]  # a0-a1 and a0-copy of a1 are left out
    assert knn_pairs(members, vectors, k=3, listed=ignore).hard.tolist() == [[0, 2], [1, 2], [2, 3]]


def test_a_knn_search_proposes_only_near_neighbours_but_recall_counts_every_duplicate(
    items: list[Item],
) -> None:
    a0, a1 = items[0], items[1]
    members = [
        Member(source=a0, picture="x"),
        Member(source=a1, picture="y"),
        Member(source=a0, picture="x", edit=draw_edit("webp", seed=0, key=a0.key)),
    ]
    # the copy (row 2) is nearer to a1 than to its own original: with k = 1 nobody proposes (0, 2)
    vectors = unit_rows([[1, 0], [0.8, 0.6], [0.6, 0.8]])
    knn = knn_pairs(members, vectors, k=1, listed=[])
    assert knn.duplicates.tolist() == []
    assert sorted(knn.hard.tolist()) == [[0, 1], [1, 2]]
    assert knn_pairs(members, vectors, k=2, listed=[]).duplicates.tolist() == [[0, 2]]


def test_the_threshold_is_chosen_on_development_and_read_on_held_out(items: list[Item]) -> None:
    members = collection(items, [], seed=0, copies_per_image=1)
    rng = np.random.default_rng(0)
    centres = {member.picture: rng.normal(size=16) for member in members}
    # a picture's copies lie close to it; other pictures are far: a clean separation on both halves
    vectors = unit_rows(
        [(centres[m.picture] + (0.05 * rng.normal(size=16) if m.edit else 0)).tolist() for m in members]
    )
    development = score_half("development", members, vectors, people=["a"], k=3, listed=[])
    held_out = score_half("held-out", members, vectors, people=["b"], k=3, listed=[])
    result = evaluate_variant(
        "tiny", "tiny-model", weights="none", development=development, held_out=held_out, targets=Targets()
    )
    assert set(result.chosen) == set(result.swapped) == {"balanced", "precision first"}
    balanced = result.chosen["balanced"]
    points = result.at(balanced.threshold)
    assert balanced.meets_targets
    assert points["held-out"]["pairs"].precision == points["held-out"]["pairs"].recall == 1.0
    assert development.pairs_curve.positives == held_out.pairs_curve.positives == 4
    assert {row.kind for row in held_out.recall_by_kind(balanced.threshold)} <= {
        "resize",
        "jpeg",
        "crop",
        "exif_rotation",
        "png",
        "webp",
        "colour",
    }


def test_the_command_writes_its_report_and_reuses_its_embeddings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = folder_dataset(tmp_path / "faces", {"a": 3, "b": 3, "c": 3, "d": 3})
    (tmp_path / "faces.duplicates.tsv").write_text("kind\tfile_a\tfile_b\nexact\ta/00.jpg\ta/01.jpg\n")
    model = write_model(tmp_path / "model")
    out = tmp_path / "out"
    argv = [str(dataset), "--model-dir", str(model), "--out", str(out), "--whitening", "none", "pca"]
    argv += ["--whitening-dims", "3", "--threads", "1"]
    assert main(argv) == 0
    first = capsys.readouterr()
    assert "embedding with" in first.err and "thumbnails" in first.err
    assert "| variant | rule | threshold |" in first.out
    report = json.loads((out / "near-duplicates.json").read_text())
    assert report["setup"]["originals"] == 12
    assert sum(report["setup"]["copies"].values()) == 24
    assert report["setup"]["listed_pairs"] == {"exact": 1}
    assert report["setup"]["duplicates_lists"] == [str(tmp_path / "faces.duplicates.tsv")]
    assert set(report["variants"][0]["rules"]) == {"balanced", "precision first"}
    plain, checked, whitened, whitened_checked = (variant["name"] for variant in report["variants"])
    assert (plain, whitened) == ("test", "test + pca 3 d, shrinkage 1")
    assert checked.startswith("test + picture check (cosine ≥ ")
    assert whitened_checked.startswith("test + pca 3 d, shrinkage 1 + picture check (cosine ≥ ")
    assert set(report["variants"][1]["rules"]) == {"balanced", "precision first"}
    assert report["variants"][0]["score"] == "cosine similarity"
    assert report["variants"][1]["score"].startswith("the correlation of the two thumbnails")
    assert "# Near-duplicate detection" in (out / "report.md").read_text()
    assert main(argv) == 0
    again = capsys.readouterr().err
    assert "embedding with" not in again and "thumbnails" not in again  # all came from the caches


def test_record_writes_the_precision_first_threshold_into_the_manifest_the_api_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = folder_dataset(tmp_path / "faces", {"a": 3, "b": 3, "c": 3, "d": 3})
    model = write_model(tmp_path / "model")
    out = tmp_path / "out"
    argv = [str(dataset), "--model-dir", str(model), "--out", str(out), "--threads", "1", "--record"]
    assert ModelManifest.load(model).near_duplicate_threshold is None

    assert main(argv) == 0

    chosen = json.loads((out / "near-duplicates.json").read_text())["variants"][0]["rules"]["precision first"]
    manifest = ModelManifest.load(model)
    recorded, gate = manifest.near_duplicate_threshold, manifest.near_duplicate_gate
    assert recorded == chosen["threshold"]
    checked = json.loads((out / "near-duplicates.json").read_text())["variants"][1]["name"]
    assert gate is not None and checked.endswith(f"(cosine ≥ {gate:.3f})")
    err = capsys.readouterr().err
    assert (
        f"recorded near_duplicate_threshold {recorded:.3f} (precision first) and near_duplicate_gate " in err
    )


def test_record_leaves_a_model_whose_weights_are_a_stand_in_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = folder_dataset(tmp_path / "faces", {"a": 3, "b": 3, "c": 3, "d": 3})
    model = write_model(tmp_path / "model")
    replace(ModelManifest.load(model), arch="resnet50", weights="synthetic").save(model)
    argv = [
        str(dataset),
        "--model-dir",
        str(model),
        "--out",
        str(tmp_path / "out"),
        "--threads",
        "1",
        "--record",
    ]

    assert main(argv) == 0

    assert ModelManifest.load(model).near_duplicate_threshold is None
    assert "not recorded" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"arch": "resnet50", "weights": "synthetic"}, "synthetic (seeded, never trained)"),
        (
            {"arch": "resnet50", "weights": "IMAGENET1K_V1", "weights_sha256": "0676ba61b6795bbe"},
            "the published",
        ),
        (
            {"arch": "resnet50", "weights": "IMAGENET1K_V1", "weights_sha256": "7b202f06aa"},
            "NOT the published",
        ),
        (
            {"arch": "mobilenet_v2", "weights": "IMAGENET1K_V1", "weights_sha256": "b0353104ff"},
            "the published",
        ),
        ({"arch": "test", "weights": "none"}, "does not know"),
    ],
)
def test_the_report_says_whether_the_weights_are_the_published_ones(
    overrides: dict[str, Any], says: str
) -> None:
    assert says in weights_provenance(manifest_for(resize=256, input_size=224, **overrides))


def test_confused_pictures_counts_look_alike_photos_once_whatever_their_copies(items: list[Item]) -> None:
    a0, a1, b0 = items[0], items[1], items[4]
    members = [
        Member(source=a0, picture=a0.key),
        Member(source=a0, picture=a0.key, edit=draw_edit("jpeg", seed=0, key=a0.key)),
        Member(source=a1, picture=a1.key),
        Member(source=a1, picture=a1.key, edit=draw_edit("jpeg", seed=0, key=a1.key)),
        Member(source=b0, picture=b0.key),
    ]
    vectors = unit_rows([[1, 0], [1, 0.01], [1, 0.02], [1, 0.03], [0, 1]])
    half = score_half("held-out", members, vectors, people=["a", "b"], k=4, listed=[])
    assert half.pairs_curve.at(0.99).false_positives == 4  # a0, its copy x a1, its copy
    assert half.confused_pictures(0.99) == 1
    assert half.confused_pictures(0.0) == 3  # and each of them with b0


def test_the_gate_is_the_highest_similarity_that_keeps_the_share_of_duplicates_asked_for() -> None:
    duplicates = np.array([0.80, *[0.95] * 198, 0.99], dtype=np.float32)  # 200 pairs
    others = np.array([0.5, 0.9], dtype=np.float32)
    scores = curve(duplicates, others)
    assert picture_check.gate(scores, recall=0.995) == pytest.approx(0.95)  # 199 / 200 at or above
    assert picture_check.gate(scores, recall=1.0) == pytest.approx(0.80)


def test_a_gate_that_lets_every_pair_through_skips_the_picture_check_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(picture_check, "MAX_CANDIDATES", 3)
    dataset = folder_dataset(tmp_path / "faces", {"a": 3, "b": 3, "c": 3, "d": 3})
    model = write_model(tmp_path / "model")
    out = tmp_path / "out"

    assert main([str(dataset), "--model-dir", str(model), "--out", str(out), "--threads", "1"]) == 0

    assert [v["name"] for v in json.loads((out / "near-duplicates.json").read_text())["variants"]] == ["test"]
    assert "test: no picture check: cosine ≥ " in capsys.readouterr().err
