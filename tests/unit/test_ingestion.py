"""The ingestion service on fakes: races with other writers, out-of-order changes, failures, one inference.

The bucket is ``tests.fakes.MemoryImageStore`` and the model ``StubEmbedder``; the index and the
failure log are the real embedded ones in ``tmp_path``. A race is staged by letting "someone else"
change the object at the worst moment (``store.then``). The handler-level versions of these stories,
on moto and the real model, are in ``tests/integration/test_ingest_*.py``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from localmode.harness import local_settings
from simsearch import bootstrap
from simsearch.errors import (
    ConfigError,
    IndexUnavailableError,
    NotFoundError,
    SimsearchError,
    StorageUnavailableError,
)
from simsearch.ids import image_id_for
from simsearch.index import connect_failure_log, connect_index
from simsearch.index.port import Document, FailureLog, VectorIndex, WriteResult
from simsearch.ingestion import (
    CHANGED_DURING_INGESTION,
    EMBEDDING_REUSED,
    INDEX_WRITE_FAILED,
    QUERY_UPLOAD,
    Change,
    IngestionService,
    KeyOutcome,
)
from simsearch.settings import Settings
from tests.fakes import MemoryImageStore, StubEmbedder
from tests.image_factories import encode, photo

BUCKET = "images"
KEY = "cats/tabby.jpg"


@dataclass
class World:
    """A service over fakes, and views of the index and failure log it writes."""

    store: MemoryImageStore
    embedder: StubEmbedder
    service: IngestionService
    index: VectorIndex
    failures: FailureLog

    def put(self, key: str, data: bytes, **extra: Any) -> str:
        return self.store.put(BUCKET, key, data, **extra)

    def sync(self, *keys: str, changes: Sequence[Change] = ()) -> list[KeyOutcome]:
        return self.service.sync([*changes, *(Change(bucket=BUCKET, key=key) for key in keys)])

    def kinds(self, *keys: str) -> list[tuple[str, str]]:
        return [(outcome.kind, outcome.reason) for outcome in self.sync(*keys)]

    def document(self, key: str) -> Document | None:
        try:
            return self.index.get(image_id_for(BUCKET, key))
        except NotFoundError:
            return None


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return local_settings(model_dir=tmp_path, index_path=tmp_path / "index.sqlite")


def world_of(
    settings: Settings, *, embedder: StubEmbedder | None = None, index: VectorIndex | None = None
) -> World:
    store, stub = MemoryImageStore(), embedder or StubEmbedder()
    view = connect_index(settings, model_id=stub.model_id, dim=stub.dim)
    service = bootstrap.ingestion(settings, images=store, embedder=stub, index=index or view)
    return World(store, stub, service, view, connect_failure_log(settings))


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    made = world_of(settings)
    yield made
    made.index.close()
    made.failures.close()


# races with other writers ---------------------------------------------------------------------------


def test_an_upload_during_indexing_is_retried_and_then_indexed(world: World) -> None:
    world.put(KEY, photo(1))
    newer: list[str] = []
    world.store.then("read", lambda: newer.append(world.put(KEY, photo(2))))

    assert world.kinds(KEY) == [("retry", CHANGED_DURING_INGESTION)]
    assert world.kinds(KEY) == [("indexed", "")]  # SQS redelivers the message
    document = world.document(KEY)
    assert document is not None and document.metadata.etag == newer[0]


def test_a_delete_during_indexing_is_retried_and_then_removed(world: World) -> None:
    world.put(KEY, photo(1))
    world.store.then("read", lambda: world.store.delete(BUCKET, KEY))

    assert world.kinds(KEY) == [("retry", CHANGED_DURING_INGESTION)]
    assert world.kinds(KEY) == [("removed", "")]
    assert world.document(KEY) is None


def test_an_upload_during_a_removal_is_retried_and_then_indexed(world: World) -> None:
    world.store.then("missing", lambda: world.put(KEY, photo(3)))

    assert world.kinds(KEY) == [("retry", CHANGED_DURING_INGESTION)]
    assert world.kinds(KEY) == [("indexed", "")]
    assert world.document(KEY) is not None


# at-least-once, out-of-order changes ----------------------------------------------------------------


def test_a_duplicate_changes_nothing(world: World) -> None:
    etag = world.put(KEY, photo(1))
    world.sync(KEY)
    first = world.document(KEY)

    assert world.kinds(KEY) == [("unchanged", "")]

    again = world.document(KEY)
    assert first is not None and again is not None
    assert again.metadata == first.metadata  # indexed_at included: nothing was rewritten
    assert again.metadata.etag == etag
    assert world.embedder.calls == [1]


def test_a_stale_create_after_the_delete_does_not_resurrect_the_image(world: World) -> None:
    world.put(KEY, photo(1))
    world.sync(KEY)
    world.store.delete(BUCKET, KEY)

    assert world.kinds(KEY) == [("removed", "")]
    assert world.kinds(KEY) == [("removed", "")]  # the create, redelivered late
    assert world.document(KEY) is None


def test_a_reupload_replaces_the_vector_and_a_stale_delete_keeps_it(world: World) -> None:
    world.put(KEY, photo(1))
    world.sync(KEY)
    before = world.document(KEY)
    etag = world.put(KEY, photo(2))

    assert world.kinds(KEY) == [("indexed", "")]
    assert world.kinds(KEY) == [("unchanged", "")]  # the delete between them, delivered late

    after = world.document(KEY)
    assert before is not None and after is not None
    assert after.metadata.etag == etag != before.metadata.etag
    assert float(np.dot(before.vector, after.vector)) < 0.999
    assert world.index.count() == 1


def test_a_key_named_twice_in_a_batch_gets_one_outcome_with_the_newest_sequencer(world: World) -> None:
    etag = world.put(KEY, photo(7))
    announced = [
        Change(bucket=BUCKET, key=KEY, etag=etag, sequencer=sequencer)
        for sequencer in ("0055AED6DCD90281E4", "6AED6DCD90281E", "0055AED6DCD90281E6")
    ]
    stale = Change(bucket=BUCKET, key=KEY, etag="0" * 32, sequencer="0155AED6DCD90281E7")

    assert [o.kind for o in world.sync(changes=[*announced, stale])] == ["indexed"]

    document = world.document(KEY)
    assert document is not None
    assert document.metadata.sequencer == "0055AED6DCD90281E6"  # the stale ETag's newer one does not count


def test_a_new_label_alone_reindexes_the_object(world: World) -> None:
    world.put(KEY, photo(8))
    world.sync(KEY)
    world.put(KEY, photo(8), metadata={"label": "dogs"})  # same bytes, same ETag

    assert world.kinds(KEY) == [("indexed", EMBEDDING_REUSED)]  # its vector is the one indexed already
    assert world.embedder.calls == [1]

    document = world.document(KEY)
    assert document is not None and document.metadata.label == "dogs"


def test_query_uploads_are_skipped_without_a_look(world: World, settings: Settings) -> None:
    query_key = f"{settings.query_upload_prefix}q.jpg"
    world.put(query_key, photo(5))

    assert world.kinds(query_key) == [("skipped", QUERY_UPLOAD)]
    assert world.store.heads == []


# one batch, one inference ---------------------------------------------------------------------------


def test_a_batch_of_ten_images_is_embedded_in_one_inference_call(world: World) -> None:
    keys = [f"cats/{n}.jpg" for n in range(10)]
    for n, key in enumerate(keys):
        world.put(key, photo(n))

    assert world.kinds(*keys) == [("indexed", "")] * 10
    assert world.embedder.calls == [10]
    assert world.index.count() == 10


def test_an_image_the_model_cannot_embed_fails_alone(settings: Settings) -> None:
    def dark(image: Image.Image) -> bool:
        return max(image.convert("L").getextrema()) < 50

    world = world_of(settings, embedder=StubEmbedder(refuses=dark))
    world.put("shades/bright.png", encode(Image.new("RGB", (40, 40), (250, 250, 250)), "PNG"))
    world.put("shades/dark.png", encode(Image.new("RGB", (40, 40), (5, 5, 5)), "PNG"))

    outcomes = world.sync("shades/bright.png", "shades/dark.png")

    assert {(o.key, o.kind, o.reason) for o in outcomes} == {
        ("shades/bright.png", "indexed", ""),
        ("shades/dark.png", "failed", "invalid_vector"),
    }
    assert world.embedder.calls == [2, 1, 1]  # the batch, then each image to find the bad one
    assert [f.reason_code for f in world.failures.recent(10)] == ["invalid_vector"]


# failures -------------------------------------------------------------------------------------------


def test_a_corrupt_upload_is_recorded_and_its_good_replacement_indexed(world: World) -> None:
    etag = world.put(KEY, b"\xff\xd8\xff\xe0 half a header")

    assert world.kinds(KEY) == [("failed", "invalid_image")]
    [failure] = world.failures.recent(10)
    assert (failure.key, failure.etag, failure.reason_code) == (KEY, etag, "invalid_image")

    world.put(KEY, photo(2))
    assert world.kinds(KEY) == [("indexed", "")]


def test_an_object_over_the_byte_limit_is_refused_from_its_head_and_its_old_vector_removed(
    settings: Settings,
) -> None:
    world = world_of(replace(settings, max_image_bytes=4_000))
    world.put(KEY, photo(1))
    world.sync(KEY)
    large = photo(2, size=(640, 480))
    etag = world.put(KEY, large)

    assert world.kinds(KEY) == [("failed", "image_too_large")]

    assert world.document(KEY) is None  # the old picture's vector no longer describes the object
    [failure] = world.failures.recent(10)
    assert failure.etag == etag
    assert failure.message == f"the object is {len(large)} bytes; the limit is 4000 bytes"
    assert world.embedder.calls == [1]  # the large one was never read nor embedded


@pytest.mark.parametrize(
    ("failing", "outcome"),
    [(StorageUnavailableError("S3 throttled us"), "retry"), (ConfigError("access denied"), "failed")],
)
def test_a_transient_storage_failure_is_retried_and_a_permanent_one_recorded(
    settings: Settings, failing: SimsearchError, outcome: str
) -> None:
    stub = StubEmbedder()
    index = connect_index(settings, model_id=stub.model_id, dim=stub.dim)
    service = bootstrap.ingestion(
        settings, images=MemoryImageStore(failing=failing), embedder=stub, index=index
    )

    assert [(o.kind, o.reason) for o in service.sync([Change(bucket=BUCKET, key=KEY)])] == [
        (outcome, failing.code)
    ]
    recorded = [f.reason_code for f in connect_failure_log(settings).recent(10)]
    assert recorded == ([] if failing.retryable else [failing.code])


class _Refusing:
    """The embedded index, except that it refuses to write the ids in ``refused`` (or is down)."""

    def __init__(self, inner: VectorIndex, *, refused: set[str] | None = None, down: bool = False) -> None:
        self._inner, self._refused, self._down = inner, refused or set(), down

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def upsert(self, docs: Sequence[Document]) -> WriteResult:
        if self._down:
            raise IndexUnavailableError("429 Too Many Requests")
        written = self._inner.upsert([doc for doc in docs if doc.image_id not in self._refused])
        return WriteResult(
            succeeded=written.succeeded, failed=dict.fromkeys(self._refused, "mapper_parsing_exception")
        )


def test_a_document_the_index_refuses_is_retried_alone(settings: Settings) -> None:
    stub = StubEmbedder()
    index = connect_index(settings, model_id=stub.model_id, dim=stub.dim)
    refusing = _Refusing(index, refused={image_id_for(BUCKET, "cats/b.jpg")})
    world = world_of(settings, embedder=stub, index=refusing)  # type: ignore[arg-type]
    world.put("cats/a.jpg", photo(1))
    world.put("cats/b.jpg", photo(2))

    outcomes = world.sync("cats/a.jpg", "cats/b.jpg")

    assert {(o.key, o.kind, o.reason) for o in outcomes} == {
        ("cats/a.jpg", "indexed", ""),
        ("cats/b.jpg", "retry", INDEX_WRITE_FAILED),
    }
    assert [o.detail for o in outcomes if o.kind == "retry"] == ["mapper_parsing_exception"]


def test_an_index_that_is_down_returns_every_write_for_a_retry(settings: Settings) -> None:
    stub = StubEmbedder()
    index = connect_index(settings, model_id=stub.model_id, dim=stub.dim)
    world = world_of(settings, embedder=stub, index=_Refusing(index, down=True))  # type: ignore[arg-type]
    world.put("cats/a.jpg", photo(1))
    world.put("cats/poison.jpg", b"GIF89a and nothing else")

    outcomes = world.sync("cats/a.jpg", "cats/poison.jpg")

    assert {(o.key, o.kind, o.reason) for o in outcomes} == {
        ("cats/a.jpg", "retry", "index_unavailable"),
        ("cats/poison.jpg", "failed", "invalid_image"),
    }


def test_closing_the_service_closes_every_part(world: World) -> None:
    world.service.close()

    assert world.store.closed and world.embedder.closed
