"""Each S3 event type, as moto produces it, through the real handler into each index backend."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from simsearch.settings import Settings
from tests.factories import s3_notification, s3_record, s3_test_event, sqs_event, sqs_record
from tests.image_factories import photo
from tests.integration.conftest import Invoke
from tests.integration.ingest_world import IndexView, Uploads, emitted_metrics, event_names

pytestmark = pytest.mark.usefixtures("cloud")


def created_by(uploads: Uploads, how: str, key: str, data: bytes) -> str:
    """Create ``key`` the way ``how`` names (an S3 event name suffix); returns its ETag."""
    if how == "Put":
        return uploads.put(key, data)
    if how == "Post":  # a browser form upload to a presigned POST, as the query page would send
        form = uploads.s3.generate_presigned_post(Bucket=uploads.bucket, Key=key)
        answer = requests.post(form["url"], data=form["fields"], files={"file": ("upload.jpg", data)})
        assert answer.status_code == 204
    elif how == "Copy":
        uploads.put("incoming/source.jpg", data)
        uploads.s3.copy_object(
            Bucket=uploads.bucket,
            Key=key,
            CopySource={"Bucket": uploads.bucket, "Key": "incoming/source.jpg"},
        )
    elif how == "CompleteMultipartUpload":
        started = uploads.s3.create_multipart_upload(Bucket=uploads.bucket, Key=key)
        part = uploads.s3.upload_part(
            Bucket=uploads.bucket, Key=key, UploadId=started["UploadId"], PartNumber=1, Body=data
        )
        uploads.s3.complete_multipart_upload(
            Bucket=uploads.bucket,
            Key=key,
            UploadId=started["UploadId"],
            MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
        )
    return str(uploads.s3.head_object(Bucket=uploads.bucket, Key=key)["ETag"]).strip('"')


def only_event(event: dict[str, Any], name: str) -> dict[str, Any]:
    """The records of ``event`` whose notification is ``name`` (moto also sends a Put before a multipart)."""
    records = [record for record in event["Records"] if event_names({"Records": [record]}) == [name]]
    assert records, f"moto sent no {name}: {event_names(event)}"
    return {"Records": records}


@pytest.mark.parametrize("how", ["Put", "Post", "Copy", "CompleteMultipartUpload"])
def test_every_kind_of_creation_indexes_the_object_with_its_metadata(
    uploads: Uploads, ingest: Invoke, index_view: IndexView, how: str
) -> None:
    data = photo(1)
    uploads.messages()  # the set-up's test event, and the source object of a copy
    started = datetime.now(UTC)
    etag = created_by(uploads, how, "cats/tabby.jpg", data)

    response = ingest(only_event(uploads.event(), f"ObjectCreated:{how}"))

    assert response == {"batchItemFailures": []}
    document = index_view.document("cats/tabby.jpg")
    assert document is not None
    metadata = document.metadata
    assert (metadata.bucket, metadata.key, metadata.etag) == ("images", "cats/tabby.jpg", etag)
    assert (metadata.width, metadata.height, metadata.bytes) == (96, 72, len(data))
    assert metadata.content_type == "image/jpeg"
    assert metadata.content_sha256 == hashlib.sha256(data).hexdigest()
    assert metadata.label == "cats"
    assert metadata.model_id == "mobilenet_v2-imagenet1k_v1-c1"
    assert metadata.indexed_at is not None
    assert started - timedelta(seconds=1) <= metadata.indexed_at <= datetime.now(UTC)
    assert document.vector.shape == (1280,)


@pytest.mark.parametrize("kind", ["Delete", "DeleteMarkerCreated"])
def test_every_kind_of_removal_removes_the_document(
    request: pytest.FixtureRequest, ingest: Invoke, index_view: IndexView, kind: str
) -> None:
    uploads: Uploads = request.getfixturevalue("uploads" if kind == "Delete" else "versioned_uploads")
    uploads.put("cats/tabby.jpg", photo(1))
    ingest(uploads.event())
    assert index_view.document("cats/tabby.jpg") is not None

    uploads.delete("cats/tabby.jpg")
    if kind == "Delete":
        event = uploads.event()
        assert event_names(event) == ["ObjectRemoved:Delete"]
    else:  # moto sends no notification for a delete marker: S3's own record shape, for the real marker
        assert uploads.messages() == []
        event = sqs_event(
            sqs_record(s3_notification(s3_record("ObjectRemoved:DeleteMarkerCreated", "cats/tabby.jpg")))
        )
    response = ingest(event)

    assert response == {"batchItemFailures": []}
    assert index_view.document("cats/tabby.jpg") is None


def test_the_test_event_s3_sends_on_set_up_is_acknowledged_and_ignored(
    uploads: Uploads, ingest: Invoke, index_view: IndexView, capsys: pytest.CaptureFixture[str]
) -> None:
    event = uploads.event()
    assert event_names(event) == ["s3:TestEvent"]

    response = ingest(event)

    assert response == {"batchItemFailures": []}
    assert index_view.count() == 0
    assert emitted_metrics(capsys.readouterr().out) == {"NotificationsIgnored": 1}


def test_a_hand_written_test_event_is_ignored_too(ingest: Invoke) -> None:
    assert ingest(sqs_event(sqs_record(s3_test_event()))) == {"batchItemFailures": []}


def test_keys_with_spaces_plus_signs_and_unicode_are_decoded(
    uploads: Uploads, ingest: Invoke, index_view: IndexView
) -> None:
    key = "chats noirs/Größe 1+1 ü 猫.jpg"
    uploads.messages()
    uploads.put(key, photo(2))
    event = uploads.event()
    assert "Gr%C3%B6%C3%9Fe+1%2B1" in event["Records"][0]["body"]  # what S3 (and moto) put on the wire

    assert ingest(event) == {"batchItemFailures": []}

    document = index_view.document(key)
    assert document is not None
    assert (document.metadata.key, document.metadata.label) == (key, "chats noirs")


def test_the_label_set_as_object_metadata_wins_over_the_folder(
    uploads: Uploads, ingest: Invoke, index_view: IndexView
) -> None:
    uploads.put("cats/actually-a-dog.jpg", photo(3), Metadata={"label": "dogs"})
    uploads.put("unsorted.jpg", photo(4))

    assert ingest(uploads.event()) == {"batchItemFailures": []}

    labelled, unlabelled = index_view.document("cats/actually-a-dog.jpg"), index_view.document("unsorted.jpg")
    assert labelled is not None and unlabelled is not None
    assert (labelled.metadata.label, unlabelled.metadata.label) == ("dogs", None)


def test_query_uploads_are_never_indexed(
    uploads: Uploads, ingest: Invoke, index_view: IndexView, ingest_settings: Settings
) -> None:
    uploads.put(f"{ingest_settings.query_upload_prefix}query-1.jpg", photo(5))
    uploads.put("cats/kept.jpg", photo(6))

    assert ingest(uploads.event()) == {"batchItemFailures": []}

    assert index_view.document(f"{ingest_settings.query_upload_prefix}query-1.jpg") is None
    assert index_view.count() == 1


def test_the_newest_sequencer_of_the_indexed_version_is_stored(
    uploads: Uploads, ingest: Invoke, index_view: IndexView
) -> None:
    """moto sends no sequencers; S3 does, of varying length, compared as numbers (not as text)."""
    etag = uploads.put("cats/tabby.jpg", photo(7))
    uploads.messages()
    records = [
        s3_record("ObjectCreated:Put", "cats/tabby.jpg", etag=etag, sequencer=sequencer)
        for sequencer in ("0055AED6DCD90281E4", "6AED6DCD90281E", "0055AED6DCD90281E6", "0055AED6DCD90281E5")
    ]
    stale = s3_record("ObjectCreated:Put", "cats/tabby.jpg", etag="0" * 32, sequencer="0155AED6DCD90281E7")
    event = sqs_event(*(sqs_record(s3_notification(record)) for record in [*records, stale]))

    assert ingest(event) == {"batchItemFailures": []}

    document = index_view.document("cats/tabby.jpg")
    assert document is not None
    assert document.metadata.sequencer == "0055AED6DCD90281E6"  # the stale ETag's newer one does not count


def test_relabelling_an_object_in_place_updates_its_label(
    uploads: Uploads, ingest: Invoke, index_view: IndexView
) -> None:
    """A copy onto itself that replaces the metadata keeps the ETag: the label alone changed."""
    etag = uploads.put("cats/misfiled.jpg", photo(8))
    ingest(uploads.event())
    uploads.s3.copy_object(
        Bucket=uploads.bucket,
        Key="cats/misfiled.jpg",
        CopySource={"Bucket": uploads.bucket, "Key": "cats/misfiled.jpg"},
        MetadataDirective="REPLACE",
        Metadata={"label": "dogs"},
    )
    event = uploads.event()
    assert event_names(event) == ["ObjectCreated:Copy"]

    assert ingest(event) == {"batchItemFailures": []}

    document = index_view.document("cats/misfiled.jpg")
    assert document is not None
    assert (document.metadata.label, document.metadata.etag) == ("dogs", etag)
