"""The embedding cache on fakes: the same bytes cost one inference, whatever their keys or uploads.

The bucket is ``tests.fakes.MemoryImageStore`` and the model ``StubEmbedder`` (which records each call's
batch size); the index is the real embedded one in ``tmp_path``, which is where the cache lives. The
handler-level story on moto, the real model and both backends is ``tests/integration/test_ingest_cache.py``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from localmode.harness import local_settings
from simsearch import bootstrap
from simsearch.errors import ConfigError, IndexUnavailableError, SimsearchError
from simsearch.ids import content_id, image_id_for
from simsearch.index import connect_index
from simsearch.index.port import Vector, VectorIndex
from simsearch.ingestion import EMBEDDING_REUSED, Change, IngestionService, KeyOutcome
from simsearch.settings import Settings
from tests.fakes import MemoryImageStore, StubEmbedder
from tests.image_factories import photo

BUCKET = "images"


class World:
    """An ingestion service over fakes, and the index it writes (the cache)."""

    def __init__(self, settings: Settings, *, embedder: StubEmbedder | None = None, index: Any = None):
        self.store, self.embedder = MemoryImageStore(), embedder or StubEmbedder()
        self.index = connect_index(settings, model_id=self.embedder.model_id, dim=self.embedder.dim)
        self.service: IngestionService = bootstrap.ingestion(  # type: ignore[assignment]
            settings, images=self.store, embedder=self.embedder, index=index or self.index
        )

    def put(self, key: str, data: bytes) -> None:
        self.store.put(BUCKET, key, data)

    def sync(self, *keys: str) -> list[tuple[str, str, str]]:
        outcomes: list[KeyOutcome] = self.service.sync([Change(bucket=BUCKET, key=key) for key in keys])
        return [(o.key, o.kind, o.reason) for o in outcomes]

    def vector(self, key: str) -> Vector:
        return self.index.get(image_id_for(BUCKET, key)).vector


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return local_settings(model_dir=tmp_path, index_path=tmp_path / "index.sqlite")


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    made = World(settings)
    yield made
    made.index.close()


def test_a_copy_under_a_new_key_is_indexed_without_inference(world: World) -> None:
    world.put("cats/tabby.jpg", photo(1))
    assert world.sync("cats/tabby.jpg") == [("cats/tabby.jpg", "indexed", "")]

    world.put("archive/2024/tabby-copy.jpg", photo(1))
    assert world.sync("archive/2024/tabby-copy.jpg") == [
        ("archive/2024/tabby-copy.jpg", "indexed", EMBEDDING_REUSED)
    ]

    assert world.embedder.calls == [1]  # the original only
    assert np.array_equal(world.vector("archive/2024/tabby-copy.jpg"), world.vector("cats/tabby.jpg"))
    copy = world.index.get(image_id_for(BUCKET, "archive/2024/tabby-copy.jpg")).metadata
    assert (copy.key, copy.content_sha256) == ("archive/2024/tabby-copy.jpg", content_id(photo(1)))


def test_a_rename_and_a_reupload_after_a_delete_cost_no_inference(world: World) -> None:
    world.put("a.jpg", photo(2))
    world.sync("a.jpg")
    world.put("b.jpg", photo(2))  # a rename: copy, then delete the old key
    world.store.delete(BUCKET, "a.jpg")

    assert sorted(world.sync("a.jpg", "b.jpg")) == [
        ("a.jpg", "removed", ""),
        ("b.jpg", "indexed", EMBEDDING_REUSED),
    ]

    world.put("a.jpg", photo(2))  # uploaded again where it was
    assert world.sync("a.jpg") == [("a.jpg", "indexed", EMBEDDING_REUSED)]
    assert world.embedder.calls == [1]


def test_the_same_bytes_twice_in_one_batch_are_embedded_once(world: World) -> None:
    for key, seed in (("x/1.jpg", 3), ("y/1.jpg", 3), ("z/2.jpg", 4)):
        world.put(key, photo(seed))

    outcomes = world.sync("x/1.jpg", "y/1.jpg", "z/2.jpg")

    assert {kind for _, kind, _ in outcomes} == {"indexed"}
    assert world.embedder.calls == [2]  # two distinct contents, one call
    assert np.array_equal(world.vector("x/1.jpg"), world.vector("y/1.jpg"))


def test_new_content_in_a_batch_of_copies_is_embedded_alone(world: World) -> None:
    world.put("old.jpg", photo(5))
    world.sync("old.jpg")
    world.put("old-copy.jpg", photo(5))
    world.put("new.jpg", photo(6))

    assert sorted(world.sync("old-copy.jpg", "new.jpg")) == [
        ("new.jpg", "indexed", ""),
        ("old-copy.jpg", "indexed", EMBEDDING_REUSED),
    ]
    assert world.embedder.calls == [1, 1]


def test_another_models_vectors_are_not_reused(settings: Settings) -> None:
    """The cache is keyed by (content, model): an index holding other models' documents reuses none."""
    first = World(settings)
    first.put("a.jpg", photo(7))
    first.sync("a.jpg")
    other = World(settings, embedder=StubEmbedder(model_id="stub-c2"))  # same width, another model
    other_index = connect_index(settings, model_id="stub-c1", dim=13)  # writing into the first one's index
    other.service = bootstrap.ingestion(  # type: ignore[assignment]
        settings, images=first.store, embedder=other.embedder, index=other_index
    )

    assert other.service.sync([Change(bucket=BUCKET, key="a.jpg")])[0].kind == "indexed"
    assert other.embedder.calls == [1]


class _CacheFailing:
    """The embedded index, except that its content lookup fails with ``error``."""

    def __init__(self, inner: VectorIndex, error: SimsearchError) -> None:
        self._inner, self._error = inner, error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def vectors_by_content(self, content_ids: Collection[str], *, model_id: str) -> dict[str, Vector]:  # noqa: ARG002
        raise self._error


def test_a_lookup_the_index_cannot_answer_now_costs_the_saving_not_the_batch(settings: Settings) -> None:
    seeded = World(settings)
    seeded.put("a.jpg", photo(8))
    seeded.sync("a.jpg")
    failing = _CacheFailing(seeded.index, IndexUnavailableError("429 Too Many Requests"))
    world = World(settings, index=failing)
    world.put("a-copy.jpg", photo(8))

    assert world.sync("a-copy.jpg") == [("a-copy.jpg", "indexed", "")]
    assert world.embedder.calls == [1]


def test_a_lookup_that_is_refused_for_good_is_raised(settings: Settings) -> None:
    probe = World(settings)
    world = World(settings, index=_CacheFailing(probe.index, ConfigError("403 on the index")))
    world.put("a.jpg", photo(9))

    with pytest.raises(ConfigError):
        world.sync("a.jpg")
