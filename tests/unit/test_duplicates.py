"""Exact and near duplicates in the core, on the embedded index: what counts as which, and folding results."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from localmode.duplicates import model_threshold
from simsearch import bootstrap
from simsearch.duplicates import clusters, collapse, contents, duplicate_of, find_duplicates, near_groups
from simsearch.errors import InvalidRequestError, NotFoundError
from simsearch.index.embedded import EmbeddedIndex
from simsearch.index.port import Hit, ImageMetadata, IndexedImage, IndexInfo
from simsearch.manifest import ModelManifest
from simsearch.settings import Settings
from tests.fakes import MemoryImageStore
from tests.image_factories import manifest_for
from tests.index_factories import document, on_circle

A, B, C = "a1" * 32, "b2" * 32, "c3" * 32


@pytest.fixture
def index(tmp_path: Path) -> Iterator[EmbeddedIndex]:
    opened = EmbeddedIndex.open(tmp_path / "index.sqlite", prefix="t", model_id="test-model", dim=8)
    opened.ensure()
    opened.upsert(
        [
            document("photos/a.jpg", on_circle(0), content_sha256=A),
            document("copies/a.jpg", on_circle(0), content_sha256=A),  # the same bytes elsewhere
            document("photos/a-small.jpg", on_circle(10), content_sha256=B),  # cos 10° = 0.985
            document("photos/a-cropped.jpg", on_circle(20), content_sha256=C),  # cos 20° = 0.940
            document("photos/other.jpg", on_circle(90), content_sha256="d4" * 32),
        ]
    )
    yield opened
    opened.close()


def test_exact_duplicates_are_the_same_bytes_and_near_ones_other_bytes_above_the_threshold(
    index: EmbeddedIndex,
) -> None:
    original = document("photos/a.jpg", on_circle(0)).image_id

    found = find_duplicates(index, original, threshold=0.95)

    assert [image.metadata.key for image in found.exact] == ["copies/a.jpg"]
    assert [hit.metadata.key for hit in found.near] == ["photos/a-small.jpg"]
    assert found.near[0].similarity == pytest.approx(0.985, abs=1e-3)
    assert found.image.image_id == original
    assert [hit.metadata.key for hit in find_duplicates(index, original, threshold=0.9).near] == [
        "photos/a-small.jpg",
        "photos/a-cropped.jpg",
    ]


def test_an_exact_duplicate_is_never_listed_as_near_even_when_its_vector_is_found(
    index: EmbeddedIndex,
) -> None:
    copy = document("copies/a.jpg", on_circle(0)).image_id
    found = find_duplicates(index, copy, threshold=0.5, limit=1)  # more exact duplicates than the limit
    assert len(found.exact) == 1
    assert all(hit.metadata.content_sha256 != A for hit in found.near)


def test_an_image_indexed_without_a_content_id_has_near_duplicates_only(index: EmbeddedIndex) -> None:
    made = document("legacy/a.jpg", on_circle(0))
    legacy = replace(made, metadata=replace(made.metadata, content_sha256=None))
    index.upsert([legacy])

    found = find_duplicates(index, legacy.image_id, threshold=0.95)

    assert found.exact == ()
    assert {hit.metadata.key for hit in found.near} == {"photos/a.jpg", "copies/a.jpg", "photos/a-small.jpg"}


def test_unknown_ids_and_thresholds_out_of_range_are_refused(index: EmbeddedIndex) -> None:
    with pytest.raises(NotFoundError):
        find_duplicates(index, "f" * 32, threshold=0.95)
    with pytest.raises(InvalidRequestError, match="between -1 and 1"):
        find_duplicates(index, document("photos/a.jpg", on_circle(0)).image_id, threshold=1.5)


def hit(image_id: str, content: str | None) -> Hit:
    metadata = ImageMetadata(bucket="images", key=f"{image_id}.jpg", content_sha256=content)
    return Hit(image_id=image_id, similarity=0.5, score=1.5, metadata=metadata)


def test_duplicate_of_names_the_first_earlier_result_with_the_same_content() -> None:
    hits = [hit("1", A), hit("2", B), hit("3", A), hit("4", None), hit("5", None), hit("6", A), hit("7", B)]
    assert duplicate_of(hits) == [None, None, "1", None, None, "1", "2"]


def test_collapse_keeps_the_first_of_each_content_in_order_with_the_others_folded_in() -> None:
    hits = [hit("1", A), hit("2", B), hit("3", A), hit("4", None), hit("5", None), hit("6", A)]
    assert [(kept.image_id, folded) for kept, folded in collapse(hits)] == [
        ("1", ("3", "6")),
        ("2", ()),
        ("4", ()),  # no content id: nothing is known to be its copy
        ("5", ()),
    ]
    assert collapse([]) == []


# clusters over a whole index -------------------------------------------------------------------------


def test_contents_group_the_scan_by_content_id_and_legacy_images_stand_alone() -> None:
    images = [
        IndexedImage(
            image_id="1", metadata=ImageMetadata(bucket="b", key="z.jpg", content_sha256=A, bytes=10)
        ),
        IndexedImage(
            image_id="2", metadata=ImageMetadata(bucket="b", key="y.jpg", content_sha256=B, bytes=7)
        ),
        IndexedImage(
            image_id="3", metadata=ImageMetadata(bucket="b", key="a.jpg", content_sha256=A, bytes=10)
        ),
        IndexedImage(image_id="4", metadata=ImageMetadata(bucket="b", key="old.jpg")),
        IndexedImage(image_id="5", metadata=ImageMetadata(bucket="b", key="older.jpg")),
    ]
    found = contents(images)
    assert [[image.metadata.key for image in content.images] for content in found] == [
        ["a.jpg", "z.jpg"],  # by key within a content
        ["y.jpg"],
        ["old.jpg"],
        ["older.jpg"],
    ]
    assert [(content.content_id, content.size, content.wasted) for content in found[:2]] == [
        (A, 10, 10),
        (B, 7, 0),
    ]
    assert found[2].content_id is None and found[2].key != found[3].key


def test_near_groups_join_transitively_and_clusters_keep_the_largest_file(index: EmbeddedIndex) -> None:
    index.upsert([document("photos/a-more-cropped.jpg", on_circle(28), content_sha256="e5" * 32)])
    found = contents(index.scan())
    compared: list[str] = []

    groups = near_groups(
        index, found, threshold=0.98, on_compared=lambda content: compared.append(content.key)
    )

    assert len(compared) == len(found)
    # 0° ~ 10° ~ 20° ~ 28° in steps of at most 10° (cos ≥ 0.985), though 0° and 28° are 0.88 apart
    made = clusters(groups)
    assert [[c.images[0].metadata.key for c in cluster.contents] for cluster in made] == [
        ["copies/a.jpg", "photos/a-cropped.jpg", "photos/a-more-cropped.jpg", "photos/a-small.jpg"]
    ]  # all of 12345 bytes (the factory's): the keys break the tie
    [cluster] = made
    assert cluster.images == 5  # the exact copy of a.jpg too
    assert cluster.exact_reclaimable == 12345
    assert cluster.reclaimable == 4 * 12345  # every file but one


def test_without_near_groups_only_exact_copies_make_clusters(index: EmbeddedIndex) -> None:
    found = contents(index.scan())
    made = clusters([content] for content in found)
    assert [[image.metadata.key for image in cluster.contents[0].images] for cluster in made] == [
        ["copies/a.jpg", "photos/a.jpg"]
    ]


@dataclass
class MeasuredModel:
    """The serving model, as the query service sees it: an id and its manifest (it embeds nothing here)."""

    manifest: ModelManifest

    @property
    def model_id(self) -> str:
        return self.manifest.model_id

    @property
    def dim(self) -> int:
        return self.manifest.embedding_dim

    def close(self) -> None:
        return None


@pytest.mark.parametrize(
    ("recorded", "near"),
    [(0.98, ["photos/a-small.jpg"]), (None, ["photos/a-small.jpg", "photos/a-cropped.jpg"])],
)
def test_the_api_finds_near_duplicates_at_the_serving_models_recorded_threshold_else_the_settings(
    index: EmbeddedIndex, tmp_path: Path, recorded: float | None, near: list[str]
) -> None:
    model = MeasuredModel(
        manifest_for(resize=8, input_size=8, model_id="test-model", near_duplicate_threshold=recorded)
    )
    settings = replace(Settings(model_dir=tmp_path, images_bucket="images"), near_duplicate_threshold=0.93)
    service = bootstrap.search(settings, images=MemoryImageStore(), embedder=model, index=index)

    view = service.duplicates(document("photos/a.jpg", on_circle(0)).image_id)

    assert view.threshold == (0.93 if recorded is None else recorded)
    assert [each.key for each in view.near] == near  # cos 10° = 0.985, cos 20° = 0.940


def test_the_cli_reads_the_serving_models_threshold_from_its_manifest_when_it_is_on_this_machine(
    tmp_path: Path,
) -> None:
    settings = Settings(model_dir=tmp_path, images_bucket="images")
    manifest_for(resize=8, input_size=8, model_id="m", near_duplicate_threshold=0.97).save(tmp_path)
    serving = IndexInfo(name="images-m-v1", model_id="m", model_uri=str(tmp_path), dim=8)

    assert model_threshold(serving, settings) == 0.97
    assert model_threshold(replace(serving, model_uri="s3://models/m/"), settings) == 0.954
    assert model_threshold(replace(serving, model_uri=str(tmp_path / "gone")), settings) == 0.954
