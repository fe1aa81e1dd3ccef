"""At-least-once, out-of-order delivery: duplicates, stale creates and deletes, re-uploads.

Events are captured from moto's queue and handed to the handler in the order each test names, which
is what SQS may do: redeliver a message, or deliver an older notification after a newer one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.image_factories import photo
from tests.integration.conftest import Invoke
from tests.integration.ingest_world import IndexView, Uploads, emitted_metrics, event_names

KEY = "cats/tabby.jpg"


def next_event(uploads: Uploads, expected: str) -> dict[str, Any]:
    event = uploads.event()
    assert event_names(event) == [expected]
    return event


@pytest.fixture
def quiet(uploads: Uploads) -> Uploads:
    """``uploads`` with the set-up's test event consumed."""
    uploads.messages()
    return uploads


def test_a_duplicate_delivery_changes_nothing(
    quiet: Uploads, ingest: Invoke, index_view: IndexView, capsys: pytest.CaptureFixture[str]
) -> None:
    quiet.put(KEY, photo(1))
    created = next_event(quiet, "ObjectCreated:Put")
    ingest(created)
    first = index_view.document(KEY)
    capsys.readouterr()

    assert ingest(created) == {"batchItemFailures": []}

    again = index_view.document(KEY)
    assert first is not None and again is not None
    assert again.metadata == first.metadata  # indexed_at included: nothing was rewritten
    assert index_view.count() == 1
    assert emitted_metrics(capsys.readouterr().out) == {"ImagesUnchanged": 1}


def test_a_stale_create_after_the_delete_does_not_resurrect_the_image(
    quiet: Uploads, ingest: Invoke, index_view: IndexView
) -> None:
    quiet.put(KEY, photo(1))
    created = next_event(quiet, "ObjectCreated:Put")
    quiet.delete(KEY)
    removed = next_event(quiet, "ObjectRemoved:Delete")

    ingest(created)
    ingest(removed)
    assert index_view.document(KEY) is None
    assert ingest(created) == {"batchItemFailures": []}  # redelivered late
    assert index_view.document(KEY) is None


def test_a_create_that_arrives_only_after_its_delete_indexes_nothing(
    quiet: Uploads, ingest: Invoke, index_view: IndexView
) -> None:
    quiet.put(KEY, photo(1))
    created = next_event(quiet, "ObjectCreated:Put")
    quiet.delete(KEY)
    removed = next_event(quiet, "ObjectRemoved:Delete")

    assert ingest(removed) == {"batchItemFailures": []}
    assert ingest(created) == {"batchItemFailures": []}

    assert index_view.count() == 0


def test_a_reupload_with_new_content_replaces_the_vector_and_metadata(
    quiet: Uploads, ingest: Invoke, index_view: IndexView
) -> None:
    quiet.put(KEY, photo(1))
    first_event = next_event(quiet, "ObjectCreated:Put")
    ingest(first_event)
    before = index_view.document(KEY)

    etag = quiet.put(KEY, photo(2))
    ingest(next_event(quiet, "ObjectCreated:Put"))
    after = index_view.document(KEY)

    assert before is not None and after is not None
    assert after.metadata.etag == etag != before.metadata.etag
    assert after.metadata.content_sha256 != before.metadata.content_sha256
    assert float(np.dot(before.vector, after.vector)) < 0.99  # a different picture, a different vector
    ingest(first_event)  # the first upload's notification, redelivered
    latest = index_view.document(KEY)
    assert latest is not None and latest.metadata.etag == etag
    assert index_view.count() == 1


def test_a_stale_delete_after_a_reupload_keeps_the_new_image(
    quiet: Uploads, ingest: Invoke, index_view: IndexView
) -> None:
    quiet.put(KEY, photo(1))
    first = next_event(quiet, "ObjectCreated:Put")
    quiet.delete(KEY)
    removed = next_event(quiet, "ObjectRemoved:Delete")
    etag = quiet.put(KEY, photo(2))
    second = next_event(quiet, "ObjectCreated:Put")

    for event in (second, removed, first):  # newest first: each older one is stale
        assert ingest(event) == {"batchItemFailures": []}

    document = index_view.document(KEY)
    assert document is not None and document.metadata.etag == etag


def test_one_batch_with_a_create_and_a_delete_of_the_same_key_ends_with_the_bucket_state(
    quiet: Uploads, ingest: Invoke, index_view: IndexView
) -> None:
    quiet.put(KEY, photo(1))
    quiet.put("cats/kept.jpg", photo(2))
    quiet.delete(KEY)
    quiet.put("cats/overwritten.jpg", photo(3))
    etag = quiet.put("cats/overwritten.jpg", photo(4))
    event = quiet.event()
    assert len(event["Records"]) == 5

    assert ingest(event) == {"batchItemFailures": []}

    assert index_view.document(KEY) is None
    overwritten = index_view.document("cats/overwritten.jpg")
    assert overwritten is not None and overwritten.metadata.etag == etag
    assert index_view.count() == 2
