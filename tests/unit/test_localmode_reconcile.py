"""Starting the local stack makes the index mirror the bucket: documents without their object go, objects
the index does not hold at their ETag are listed for ingestion, and the report names both."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from localmode.reconcile import SHOWN_KEYS, Reconciled, reconcile
from simsearch.index.embedded import EmbeddedIndex
from tests.fakes import MemoryImageStore
from tests.index_factories import document, unit_vectors

BUCKET = "images"


@pytest.fixture
def index(tmp_path: Path) -> EmbeddedIndex:
    opened = EmbeddedIndex.open(tmp_path / "index.sqlite", prefix="images", model_id="m", dim=4)
    opened.ensure()
    return opened


def indexed(
    index: EmbeddedIndex, store: MemoryImageStore, key: str, *, etag: str | None = None, bucket: str = BUCKET
) -> None:
    """A document for ``key`` as ingestion writes it, with the object's ETag unless one is given."""
    doc = document(key, unit_vectors(1, 4, seed=len(key))[0], bucket=bucket)
    current = etag or store.head(bucket, key).etag
    index.upsert([replace(doc, metadata=replace(doc.metadata, etag=current))])


def test_documents_without_their_object_are_removed_and_named(index: EmbeddedIndex) -> None:
    store = MemoryImageStore()
    store.put(BUCKET, "kept.jpg", b"kept")
    indexed(index, store, "kept.jpg")
    indexed(index, store, "gone.jpg", etag="e1")
    indexed(index, store, "elsewhere.jpg", etag="e2", bucket="old-bucket")

    result = reconcile(index, store, bucket=BUCKET, ignored_prefix="_queries/")

    assert result.removed == ("gone.jpg", "s3://old-bucket/elsewhere.jpg")
    assert [item.metadata.key for item in index.scan()] == ["kept.jpg"]
    assert result.to_index == ()


def test_objects_not_indexed_at_their_etag_are_listed_and_query_uploads_never(index: EmbeddedIndex) -> None:
    store = MemoryImageStore()
    for key in ("new.jpg", "changed.jpg", "same.jpg", "_queries/q1"):
        store.put(BUCKET, key, key.encode())
    indexed(index, store, "same.jpg")
    indexed(index, store, "changed.jpg", etag="an-older-etag")

    result = reconcile(index, store, bucket=BUCKET, ignored_prefix="_queries/")

    assert result.to_index == ("changed.jpg", "new.jpg")
    assert result.removed == ()
    assert index.count() == 2  # a changed object's document stays until ingestion replaces it


def test_an_index_that_mirrors_the_bucket_reports_nothing(index: EmbeddedIndex) -> None:
    store = MemoryImageStore()
    store.put(BUCKET, "a.jpg", b"a")
    indexed(index, store, "a.jpg")
    assert reconcile(index, store, bucket=BUCKET, ignored_prefix="_queries/").report() == ""


def test_the_report_names_each_key_up_to_a_limit() -> None:
    removed = tuple(f"gone/{n:03}.jpg" for n in range(SHOWN_KEYS + 5))
    report = Reconciled(removed=removed, to_index=("new.jpg",)).report()
    first, second = report.splitlines()
    assert first.startswith(f"removed {SHOWN_KEYS + 5} documents whose images are not in the bucket")
    assert "gone/000.jpg" in first
    assert first.endswith("and 5 more")
    assert second == "re-queued 1 image the index did not hold: new.jpg"


def test_an_index_being_built_loses_its_orphans_but_is_left_for_the_backfill_to_fill(
    index: EmbeddedIndex, tmp_path: Path
) -> None:
    building = EmbeddedIndex.open(tmp_path / "index.sqlite", prefix="images", model_id="new", dim=4)
    building.ensure()
    store = MemoryImageStore()
    store.put(BUCKET, "a.jpg", b"a")
    store.put(BUCKET, "b.jpg", b"b")
    indexed(index, store, "a.jpg")
    indexed(index, store, "b.jpg")
    indexed(building, store, "a.jpg")
    indexed(building, store, "gone.jpg", etag="e1")

    result = reconcile(index, store, bucket=BUCKET, ignored_prefix="_queries/", also=[building])

    assert result.removed == ("gone.jpg",)
    assert [item.metadata.key for item in building.scan()] == ["a.jpg"]
    assert result.to_index == ()  # b.jpg is missing from the new index only: the backfill's work
