"""Exact and near duplicates in the core, on the embedded index: what counts as which, and folding results."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from infra.config import QUERY_RESERVE_S
from localmode.duplicates import model_rule
from model.images import photograph
from simsearch import bootstrap, duplicates
from simsearch.duplicates import (
    PICTURE_CHECK_S,
    PictureCheck,
    clusters,
    collapse,
    contents,
    duplicate_of,
    find_duplicates,
    near_groups,
    stored_thumbnails,
)
from simsearch.errors import ConfigError, InvalidRequestError, NotFoundError
from simsearch.index.embedded import EmbeddedIndex
from simsearch.index.port import Hit, ImageMetadata, IndexedImage, IndexInfo
from simsearch.manifest import ModelManifest
from simsearch.preprocess import ImageLimits, decode_image
from simsearch.same_picture import Thumbnail, thumbnail_of
from simsearch.search import PictureCheckView
from simsearch.settings import Settings
from tests.fakes import MemoryImageStore
from tests.image_factories import another_frame, manifest_for, reframed
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
def test_the_api_decides_by_the_serving_models_recorded_rule_else_the_settings(
    index: EmbeddedIndex, tmp_path: Path, recorded: float | None, near: list[str]
) -> None:
    """The bucket holds none of the images here, so every candidate falls back to the cosine threshold."""
    model = MeasuredModel(
        manifest_for(
            resize=8,
            input_size=8,
            model_id="test-model",
            near_duplicate_threshold=recorded,
            near_duplicate_gate=None if recorded is None else 0.9,
        )
    )
    settings = replace(Settings(model_dir=tmp_path, images_bucket="images"), near_duplicate_threshold=0.93)
    service = bootstrap.search(settings, images=MemoryImageStore(), embedder=model, index=index)
    original = document("photos/a.jpg", on_circle(0)).image_id

    view = service.duplicates(original)

    assert view.threshold == (0.93 if recorded is None else recorded)
    assert view.picture_check == PictureCheckView(
        gate=settings.near_duplicate_gate if recorded is None else 0.9,
        threshold=settings.picture_match_threshold,
    )
    assert [each.key for each in view.near] == near  # cos 10° = 0.985, cos 20° = 0.940
    assert {each.match for each in view.near} == {None}  # nothing was compared
    asked = service.duplicates(original, threshold=0.9)  # a threshold asked for: the cosine alone
    assert asked.picture_check is None and asked.threshold == 0.9
    assert [each.key for each in asked.near] == ["photos/a-small.jpg", "photos/a-cropped.jpg"]


def test_the_cli_reads_the_serving_models_threshold_from_its_manifest_when_it_is_on_this_machine(
    tmp_path: Path,
) -> None:
    settings = Settings(model_dir=tmp_path, images_bucket="images")
    manifest_for(resize=8, input_size=8, model_id="m", near_duplicate_threshold=0.97).save(tmp_path)
    serving = IndexInfo(name="images-m-v1", model_id="m", model_uri=str(tmp_path), dim=8)

    assert model_rule(serving, settings) == (0.97, settings.near_duplicate_gate)
    manifest_for(
        resize=8, input_size=8, model_id="m", near_duplicate_threshold=0.97, near_duplicate_gate=0.9
    ).save(tmp_path)
    assert model_rule(serving, settings) == (0.97, 0.9)
    defaults = (0.954, 0.875)
    assert model_rule(replace(serving, model_uri="s3://models/m/"), settings) == defaults
    assert model_rule(replace(serving, model_uri=str(tmp_path / "gone")), settings) == defaults


# the picture check ----------------------------------------------------------------------------------

LIMITS = ImageLimits.deployed()
SAME_PICTURE = Settings.picture_match_threshold


@pytest.fixture(scope="module")
def pictures() -> dict[str, Thumbnail]:
    """Thumbnails for the index fixture's keys: a.jpg (and its exact copy) is a photograph, a-small.jpg a
    reframed copy of it, a-cropped.jpg the same scene with a part moved (another frame), other.jpg
    another photograph."""
    china = photograph("china.jpg")
    made = {
        "photos/a.jpg": china,
        "copies/a.jpg": china,
        "photos/a-small.jpg": reframed(china, keep=0.9, scale=0.5, quality=80),
        "photos/a-cropped.jpg": another_frame(decode_image(china, limits=LIMITS).rgb),
        "photos/other.jpg": photograph("flower.jpg"),
    }
    return {key: thumbnail_of(data, limits=LIMITS) for key, data in made.items()}


def checking(thumbs: Mapping[str, Thumbnail | None], *, gate: float = 0.9, **options: float) -> PictureCheck:
    return PictureCheck(
        gate=gate, threshold=SAME_PICTURE, thumbnails=lambda image: thumbs.get(image.key), **options
    )


def test_the_picture_check_keeps_a_copy_whose_pixels_line_up_and_drops_another_frame(
    index: EmbeddedIndex, pictures: dict[str, Thumbnail]
) -> None:
    original = document("photos/a.jpg", on_circle(0)).image_id
    cosine_alone = find_duplicates(index, original, threshold=0.93)
    assert [hit.metadata.key for hit in cosine_alone.near] == ["photos/a-small.jpg", "photos/a-cropped.jpg"]

    found = find_duplicates(index, original, threshold=0.93, check=checking(pictures))

    assert [hit.metadata.key for hit in found.near] == ["photos/a-small.jpg"]
    [(matched, score)] = found.matches.items()
    assert matched == found.near[0].image_id and score >= SAME_PICTURE
    assert [image.metadata.key for image in found.exact] == ["copies/a.jpg"]  # exact needs no pixels


def test_a_candidate_whose_picture_cannot_be_had_is_judged_by_the_cosine_threshold(
    index: EmbeddedIndex, pictures: dict[str, Thumbnail]
) -> None:
    original = document("photos/a.jpg", on_circle(0)).image_id
    unreadable = {**pictures, "photos/a-cropped.jpg": None}  # deleted since indexed, or not decodable

    assert [
        h.metadata.key
        for h in find_duplicates(index, original, threshold=0.93, check=checking(unreadable)).near
    ] == [
        "photos/a-small.jpg",
        "photos/a-cropped.jpg",  # cos 20° = 0.940 ≥ 0.93
    ]
    found = find_duplicates(index, original, threshold=0.95, check=checking(unreadable))
    assert [hit.metadata.key for hit in found.near] == ["photos/a-small.jpg"]
    assert set(found.matches) == {found.near[0].image_id}

    without_original = {**pictures, "photos/a.jpg": None}  # nothing to compare with: the cosine decides all
    found = find_duplicates(index, original, threshold=0.93, check=checking(without_original))
    assert len(found.near) == 2 and not found.matches


def test_a_read_that_outlasts_the_budget_leaves_its_candidate_to_the_cosine(
    index: EmbeddedIndex, pictures: dict[str, Thumbnail]
) -> None:
    released = threading.Event()

    def slow_for_the_copy(image: ImageMetadata) -> Thumbnail | None:
        if image.key == "photos/a-small.jpg":
            released.wait(timeout=10)  # S3 not answering
        return pictures.get(image.key)

    check = PictureCheck(gate=0.9, threshold=SAME_PICTURE, thumbnails=slow_for_the_copy, budget_s=0.2)
    try:
        found = find_duplicates(
            index, document("photos/a.jpg", on_circle(0)).image_id, threshold=0.95, check=check
        )
    finally:
        released.set()

    assert [hit.metadata.key for hit in found.near] == ["photos/a-small.jpg"]  # 0.985 ≥ 0.95, unread
    assert not found.matches  # the moved frame was read, compared and dropped; the copy was not read


def test_near_groups_with_the_picture_check_read_each_image_once_and_keep_frames_apart(
    index: EmbeddedIndex, pictures: dict[str, Thumbnail]
) -> None:
    reads: list[str] = []

    def counted(image: ImageMetadata) -> Thumbnail | None:
        reads.append(image.key)
        return pictures.get(image.key)

    check = PictureCheck(gate=0.9, threshold=SAME_PICTURE, thumbnails=counted)
    groups = near_groups(index, contents(index.scan()), threshold=0.93, check=check)

    made = clusters(groups)
    assert [sorted(c.images[0].metadata.key for c in cluster.contents) for cluster in made] == [
        ["copies/a.jpg", "photos/a-small.jpg"]  # the content of a.jpg (both keys) and its copy
    ]
    assert len(reads) == len(set(reads))


def test_stored_thumbnails_read_the_indexed_bytes_and_nothing_else() -> None:
    store = MemoryImageStore()
    china = photograph("china.jpg")
    etag = store.put("images", "photos/a.jpg", china)
    store.put("images", "photos/broken.jpg", b"not an image")
    thumbnails = stored_thumbnails(store, limits=LIMITS)

    def indexed(key: str, etag: str | None) -> ImageMetadata:
        return ImageMetadata(bucket="images", key=key, etag=etag)

    found = thumbnails(indexed("photos/a.jpg", etag))
    assert found is not None
    np.testing.assert_array_equal(found, thumbnail_of(china, limits=LIMITS))
    assert thumbnails(indexed("photos/a.jpg", None)) is not None  # indexed before ETags were kept
    assert thumbnails(indexed("photos/a.jpg", "0" * 32)) is None  # replaced since it was indexed
    assert thumbnails(indexed("photos/gone.jpg", None)) is None
    assert thumbnails(indexed("photos/broken.jpg", None)) is None
    small = stored_thumbnails(store, limits=ImageLimits(max_bytes=1000, max_pixels=LIMITS.max_pixels))
    assert small(indexed("photos/a.jpg", etag)) is None  # too large to read


def test_a_refused_read_falls_back_to_the_cosine_and_says_why(caplog: pytest.LogCaptureFixture) -> None:
    """Access denied (a role without the object's KMS key, say) costs that pair its pixel check, not the
    whole answer; the log names the object and the reason."""
    store = MemoryImageStore(failing=ConfigError("access to s3://images/photos/a.jpg denied (AccessDenied)"))
    thumbnails = stored_thumbnails(store, limits=LIMITS)

    assert thumbnails(ImageMetadata(bucket="images", key="photos/a.jpg")) is None
    assert "no picture check for s3://images/photos/a.jpg" in caplog.text
    assert "config_error" in caplog.text


def test_a_picture_check_refuses_a_gate_or_threshold_no_similarity_can_reach() -> None:
    with pytest.raises(InvalidRequestError, match=r"gate is 1\.5"):
        PictureCheck(gate=1.5, threshold=0.9, thumbnails=lambda _: None)
    with pytest.raises(InvalidRequestError, match=r"threshold is -1\.5"):
        PictureCheck(gate=0.9, threshold=-1.5, thumbnails=lambda _: None)


def test_the_apis_picture_check_ends_inside_the_query_functions_reserve() -> None:
    """The reads a duplicates call waits for end inside the share of the timeout the index does not take
    (reads still under way then are abandoned, their candidates judged by the cosine)."""
    assert PICTURE_CHECK_S < QUERY_RESERVE_S


def test_near_groups_compare_each_pair_of_contents_once(
    index: EmbeddedIndex, pictures: dict[str, Thumbnail], monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[int, int]] = []
    measured = duplicates.correlation

    def counted(one: Thumbnail, other: Thumbnail) -> float:
        compared.append((id(one), id(other)))
        return measured(one, other)

    monkeypatch.setattr(duplicates, "correlation", counted)
    near_groups(index, contents(index.scan()), threshold=0.93, check=checking(pictures))

    # above the gate: a ~ a-small (joined), a ~ a-cropped and a-small ~ a-cropped (refused): three pairs,
    # whichever content is searched first; a refusal is not checked again from the other side
    assert len(compared) == 3
