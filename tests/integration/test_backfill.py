"""Backfilling a bucket that already holds images: counts, idempotence, resuming, and the command."""

from __future__ import annotations

import pytest

from localmode.cloud import LocalCloud
from simsearch import bootstrap
from simsearch.backfill import BackfillSummary, backfill, main
from simsearch.ingestion import Ingestion, KeyOutcome
from simsearch.settings import Settings
from simsearch.storage import S3ImageStore
from tests.image_factories import photo
from tests.integration.ingest_world import IndexView, Uploads

CATS = [f"zoo/cats/{n}.jpg" for n in range(7)]
DOGS = [f"zoo/dogs/{n}.jpg" for n in range(5)]


@pytest.fixture
def bucket(cloud: LocalCloud) -> Uploads:
    """A bucket filled before ingestion existed: twelve images, a corrupt one, and two elsewhere."""
    uploads = Uploads.of(cloud)
    for seed, key in enumerate(CATS + DOGS):
        uploads.put(key, photo(seed))
    uploads.put("zoo/corrupt.jpg", b"\xff\xd8\xff not really")
    uploads.put("other/elsewhere.jpg", photo(99))
    uploads.put("_queries/someones-query.jpg", photo(98))
    return uploads


@pytest.fixture
def service(bucket: Uploads, ingest_settings: Settings) -> Ingestion:
    bootstrap.attach(ingest_settings)  # the deployment's index, as its bootstrap makes it
    return bootstrap.ingestion(ingest_settings, images=S3ImageStore(bucket.s3))


def run(service: Ingestion, bucket: Uploads, prefix: str, *, batch_size: int = 32) -> BackfillSummary:
    return backfill(
        service, S3ImageStore(bucket.s3), bucket=bucket.bucket, prefix=prefix, batch_size=batch_size
    )


def test_a_backfill_indexes_everything_under_the_prefix_and_counts_it(
    service: Ingestion, bucket: Uploads, index_view: IndexView
) -> None:
    seen: list[KeyOutcome] = []

    summary = backfill(
        service,
        S3ImageStore(bucket.s3),
        bucket=bucket.bucket,
        prefix="zoo/",
        batch_size=5,
        on_batch=seen.extend,
    )

    assert summary.counts == {"indexed": 12, "failed": 1}
    assert summary.complete
    assert [(p.key, p.reason) for p in summary.problems] == [("zoo/corrupt.jpg", "invalid_image")]
    assert sorted(outcome.key for outcome in seen) == sorted([*CATS, *DOGS, "zoo/corrupt.jpg"])
    assert index_view.count() == 12
    assert index_view.failure_of("zoo/corrupt.jpg").reason_code == "invalid_image"


def test_a_second_backfill_skips_what_is_indexed_and_picks_up_changes(
    service: Ingestion, bucket: Uploads, index_view: IndexView
) -> None:
    run(service, bucket, "zoo/")
    bucket.put(CATS[0], photo(1234))

    again = run(service, bucket, "zoo/")

    assert again.counts == {"unchanged": 11, "indexed": 1, "failed": 1}
    document = index_view.document(CATS[0])
    assert document is not None
    assert document.metadata.etag == bucket.s3.head_object(Bucket=bucket.bucket, Key=CATS[0])["ETag"].strip(
        '"'
    )


def test_an_interrupted_backfill_resumes_where_it_stopped(
    service: Ingestion, bucket: Uploads, index_view: IndexView
) -> None:
    run(service, bucket, "zoo/cats/")  # as far as the first run got

    resumed = run(service, bucket, "zoo/")

    assert resumed.counts == {"unchanged": 7, "indexed": 5, "failed": 1}
    assert index_view.count() == 12


def test_a_whole_bucket_backfill_leaves_query_uploads_out(
    service: Ingestion, bucket: Uploads, index_view: IndexView
) -> None:
    summary = run(service, bucket, "", batch_size=4)

    assert summary.counts == {"indexed": 13, "failed": 1, "skipped": 1}
    assert index_view.document("_queries/someones-query.jpg") is None


def test_the_command_backfills_a_prefix_with_settings_from_the_environment(
    bucket: Uploads,
    ingest_settings: Settings,
    index_view: IndexView,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in ingest_settings.to_env().items():
        monkeypatch.setenv(name, value)

    status = main([f"s3://{bucket.bucket}/zoo/dogs/", "--batch-size", "2"])

    assert status == 0
    assert capsys.readouterr().out.strip() == "5 objects: 5 indexed"
    assert index_view.count() == 5
