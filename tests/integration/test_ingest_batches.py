"""More uploads than one batch, end to end: S3 notifications through the queue, in the event source's
batches, into the index."""

from __future__ import annotations

import json
from collections import Counter
from urllib.parse import unquote_plus

import pytest

from handlers import ingest as ingest_handler
from localmode.api_gateway import LocalContext
from localmode.harness import BATCH_SIZE, discard_unpublished_metrics
from simsearch.index.port import Filters
from simsearch.ingestion.pipeline import CHUNK
from simsearch.ingestion.time_budget import MARGIN_S
from tests.image_factories import photo
from tests.integration.conftest import Invoke
from tests.integration.ingest_world import IndexView, Uploads, emitted_metrics

LABELS = ("cats", "dogs", "birds", "fish", "frogs")
PER_LABEL = BATCH_SIZE // len(LABELS) + 2  # a full batch and a partial one


def test_uploads_beyond_a_batch_are_indexed_in_two_batches_with_every_count_right(
    uploads: Uploads, ingest: Invoke, index_view: IndexView, capsys: pytest.CaptureFixture[str]
) -> None:
    uploads.messages()
    keys = [f"{label}/{n:02d}.jpg" for label in LABELS for n in range(PER_LABEL)]
    for seed, key in enumerate(keys):
        uploads.put(key, photo(seed))
    events = list(uploads.events())
    assert [len(event["Records"]) for event in events] == [BATCH_SIZE, len(keys) - BATCH_SIZE]
    capsys.readouterr()

    responses = [ingest(event) for event in events]

    assert responses == [{"batchItemFailures": []}] * 2
    assert index_view.count() == len(keys)
    assert emitted_metrics(capsys.readouterr().out) == {"ImagesIndexed": len(keys)}
    documents = {key: index_view.document(key) for key in keys}
    assert all(document is not None for document in documents.values())
    labels = Counter(document.metadata.label for document in documents.values() if document is not None)
    assert labels == dict.fromkeys(LABELS, PER_LABEL)
    for label in LABELS:
        probe = documents[f"{label}/03.jpg"]
        assert probe is not None
        hits = index_view.index.search(probe.vector, k=len(keys), filters=Filters(label=label))
        assert len(hits) == PER_LABEL
        assert hits[0].image_id == probe.image_id  # every image is its own nearest neighbour
        assert hits[0].similarity == pytest.approx(1.0, abs=1e-3)


def test_a_batch_larger_than_its_time_allows_returns_the_rest_for_redelivery_and_loses_nothing(
    uploads: Uploads, ingest: Invoke, index_view: IndexView
) -> None:
    """The real handler with a context that has little time left: it stops between chunks instead of
    timing out, Powertools lists exactly the unstarted keys' messages, and their redelivery finishes."""
    uploads.messages()
    ingest_handler.service()  # the composition root built (the model loaded) beforehand: a warm start
    keys = [f"late/{n:02d}.jpg" for n in range(BATCH_SIZE)]
    for seed, key in enumerate(keys):
        uploads.put(key, photo(seed))
    [event] = uploads.events()
    key_of = {
        r["messageId"]: unquote_plus(json.loads(r["body"])["Records"][0]["s3"]["object"]["key"])
        for r in event["Records"]
    }
    short = LocalContext(function="ingest", timeout_ms=int((MARGIN_S + 0.3) * 1000))

    response = ingest_handler.handler(event, short)
    discard_unpublished_metrics()

    retried = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
    index_view.refresh()
    indexed = {key for key in keys if index_view.document(key) is not None}
    assert (
        CHUNK <= len(indexed) < len(keys)
    )  # the first chunk always starts; the time ran out before the last
    assert {key_of[message] for message in retried} == set(keys) - indexed
    redelivered = {"Records": [r for r in event["Records"] if r["messageId"] in retried]}
    assert ingest(redelivered) == {"batchItemFailures": []}
    index_view.refresh()
    assert index_view.count() == len(keys)
