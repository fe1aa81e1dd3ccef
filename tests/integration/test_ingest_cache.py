"""The embedding cache through the real ingest handler: copies of indexed bytes are indexed without inference.

Both backends (embedded, and the OpenSearch node), moto's notifications, the real model. Inference is
seen from outside, as an operator sees it: the ``EmbeddingsReused`` metric and each key's outcome reason;
``tests/unit/test_embedding_cache.py`` counts the model's calls on fakes.
"""

from __future__ import annotations

import numpy as np
import pytest

from simsearch.ids import content_id
from tests.image_factories import photo
from tests.integration.conftest import Invoke
from tests.integration.ingest_world import IndexView, Uploads, emitted_metrics

ORIGINALS = {f"cats/{n:02d}.jpg": photo(100 + n) for n in range(10)}


def test_copies_under_new_keys_reuse_the_indexed_vectors(
    uploads: Uploads, ingest: Invoke, index_view: IndexView, capsys: pytest.CaptureFixture[str]
) -> None:
    uploads.messages()
    for key, data in ORIGINALS.items():
        uploads.put(key, data)
    assert ingest(uploads.event()) == {"batchItemFailures": []}
    index_view.refresh()  # searchable: OpenSearch shows writes to searches after its refresh interval
    capsys.readouterr()

    copies = {key.replace("cats/", "archive/2024/"): data for key, data in ORIGINALS.items()}
    for key, data in copies.items():
        uploads.put(key, data)
    assert ingest(uploads.event()) == {"batchItemFailures": []}

    assert emitted_metrics(capsys.readouterr().out) == {"ImagesIndexed": 10, "EmbeddingsReused": 10}
    assert index_view.count() == 20
    for key, data in ORIGINALS.items():
        original, copy = index_view.document(key), index_view.document(key.replace("cats/", "archive/2024/"))
        assert original is not None and copy is not None
        assert copy.metadata.content_sha256 == original.metadata.content_sha256 == content_id(data)
        np.testing.assert_array_equal(copy.vector, original.vector)


def test_new_images_are_embedded_and_say_nothing_of_reuse(
    uploads: Uploads, ingest: Invoke, index_view: IndexView, capsys: pytest.CaptureFixture[str]
) -> None:
    uploads.messages()
    for key, data in ORIGINALS.items():
        uploads.put(key, data)
    capsys.readouterr()

    assert ingest(uploads.event()) == {"batchItemFailures": []}

    assert emitted_metrics(capsys.readouterr().out) == {"ImagesIndexed": 10}
    assert index_view.count() == 10
