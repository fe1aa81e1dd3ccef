"""More uploads than one batch, end to end: S3 notifications through the queue, in the event source's
batches, into the index."""

from __future__ import annotations

from collections import Counter

import pytest

from localmode.harness import BATCH_SIZE
from simsearch.index.port import Filters
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
