"""A model change re-indexes beside the serving index: queries keep their model, writes reach both.

Two stub "models" of different widths (13 and 26 dimensions) make any mix-up loud: a query embedded
with one and searched in the other's index fails on the dimension. The collection is the embedded one
in ``tmp_path``; tests/integration/test_reindex_opensearch.py runs these same tests on the OpenSearch
node by replacing the ``settings`` fixture.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from localmode.harness import local_settings
from simsearch import reindex
from simsearch.errors import ConfigError, NotFoundError
from simsearch.ids import image_id_for
from simsearch.index import FailureLog, connect_collection, connect_failure_log
from simsearch.index.opensearch_collection import OpenSearchCollection
from simsearch.ingestion import Change
from simsearch.ingestion.collection import CollectionIngestion
from simsearch.models import ModelStore
from simsearch.preprocess import ImageLimits
from simsearch.search import ImageQuery, QueryConfig, SearchOptions, SearchService
from simsearch.settings import Settings
from simsearch.targets import CollectionTargets
from tests.fakes import MemoryImageStore, StubEmbedder
from tests.image_factories import photo

BUCKET = "images"
OLD_DIR, NEW_DIR = "models/old", "models/new"


class World:
    """A deployment: the collection, a store of two stub models, ingestion and search over the pointers."""

    def __init__(self, settings: Settings, *, carried: StubEmbedder) -> None:
        self.old, self.new = StubEmbedder(model_id="old-c1"), StubEmbedder(model_id="new-c1", repeat=2)
        self.images = MemoryImageStore()
        self.collection = (
            OpenSearchCollection.connect(settings, refresh=True)  # counts see every write at once
            if settings.opensearch_url
            else connect_collection(settings)
        )
        by_dir = {OLD_DIR: self.old, NEW_DIR: self.new}
        models = ModelStore(
            carried=carried, load=lambda path: by_dir[str(path)], cache_dir=settings.model_cache_dir
        )
        self.targets = CollectionTargets(self.collection, models, ttl_s=0)
        limits = ImageLimits.of(settings)
        self.ingestion = CollectionIngestion(
            self.targets,
            images=self.images,
            failures=_failures(settings),
            limits=limits,
            query_upload_prefix="_queries/",
        )
        config = QueryConfig(bucket=BUCKET, upload_prefix="_queries/", presign_ttl_seconds=60, limits=limits)
        self.search = SearchService(serving=self.targets, images=self.images, config=config)

    def attach(self, embedder: StubEmbedder, model_dir: str) -> reindex.Attached:
        return reindex.attach(
            self.collection, model_id=embedder.model_id, model_uri=model_dir, dim=embedder.dim
        )

    def upload(self, key: str, seed: int) -> None:
        self.images.put(BUCKET, key, photo(seed))
        self.ingestion.sync([Change(bucket=BUCKET, key=key)])

    def delete(self, key: str) -> None:
        self.images.delete(BUCKET, key)
        self.ingestion.sync([Change(bucket=BUCKET, key=key)])

    def backfill_into(self, name: str) -> None:
        changes = [Change(bucket=BUCKET, key=found.key) for found in self.images.list(BUCKET, "")]
        self.ingestion.into(name).sync(changes)

    def count(self, name: str) -> int:
        pointers = self.collection.pointers()
        [info] = [i for i in (*pointers.writing, pointers.previous) if i is not None and i.name == name]
        return self.collection.index(info).count()

    def top(self, seed: int) -> tuple[str, str]:
        """(model, first hit's key) of a query with picture ``seed``."""
        answer = self.search.search(ImageQuery(data=photo(seed)), SearchOptions(k=1))
        return answer.model_id, answer.results[0].key


def _failures(settings: Settings) -> FailureLog:
    log = connect_failure_log(settings)
    log.ensure()
    return log


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return local_settings(model_dir=tmp_path, index_path=tmp_path / "index.sqlite")


@pytest.fixture
def world(settings: Settings) -> Iterator[World]:
    made = World(settings, carried=StubEmbedder(model_id="old-c1"))
    made.attach(made.old, OLD_DIR)
    for seed, key in enumerate(["cats/a.jpg", "cats/b.jpg", "dogs/c.jpg"]):
        made.upload(key, seed)
    yield made
    made.collection.close()


def test_the_first_model_attached_serves_and_takes_writes(world: World) -> None:
    pointers = world.collection.pointers()
    assert pointers.serving is not None and pointers.serving.model_id == "old-c1"
    assert [info.model_id for info in pointers.writing] == ["old-c1"]
    assert pointers.building is None and pointers.previous is None
    assert world.top(1) == ("old-c1", "cats/b.jpg")


def test_a_new_model_builds_beside_the_serving_one_and_queries_keep_their_model(world: World) -> None:
    attached = world.attach(world.new, NEW_DIR)
    assert attached.building and attached.serving.model_id == "old-c1"
    assert world.collection.pointers().building == attached.info
    assert world.top(2) == ("old-c1", "dogs/c.jpg")  # the old model, on the old index, meanwhile
    world.upload("birds/d.jpg", 7)
    world.delete("cats/a.jpg")
    assert world.count(attached.info.name) == 1  # only the upload made during the re-index so far
    assert world.top(7) == ("old-c1", "birds/d.jpg")


def test_the_gate_holds_the_switch_until_the_backfill_has_filled_the_new_index(world: World) -> None:
    building = world.attach(world.new, NEW_DIR).info
    with pytest.raises(ConfigError, match="may not serve yet"):
        reindex.switch(world.collection)
    world.backfill_into(building.name)
    result = reindex.gate(world.collection)
    assert result.passed and (result.documents, result.expected) == (3, 2)  # 3 held, 0.5 % of 3 tolerated
    pointers = reindex.switch(world.collection, check=result)
    assert pointers.serving == building and pointers.previous is not None
    assert world.top(1) == ("new-c1", "cats/b.jpg")  # the new model, on the new index, from now on


def test_writes_reach_both_indexes_until_cleanup_so_a_rollback_loses_nothing(world: World) -> None:
    building = world.attach(world.new, NEW_DIR).info
    world.backfill_into(building.name)
    reindex.switch(world.collection)
    world.upload("birds/e.jpg", 9)  # after the switch, still written to both
    pointers = reindex.rollback(world.collection)
    assert pointers.serving is not None and pointers.serving.model_id == "old-c1"
    assert world.top(9) == ("old-c1", "birds/e.jpg")
    reindex.switch(world.collection)
    dropped = reindex.cleanup(world.collection)
    after = world.collection.pointers()
    assert [info.model_id for info in after.writing] == ["new-c1"] and after.previous is None
    assert len(dropped) == 1 and dropped[0] != building.name
    assert world.top(9) == ("new-c1", "birds/e.jpg")


def test_the_serving_index_cannot_be_dropped_and_nothing_rolls_back_before_a_switch(world: World) -> None:
    serving = world.collection.pointers().serving
    assert serving is not None
    with pytest.raises(ConfigError, match="still serves or takes writes"):
        world.collection.drop(serving.name)
    with pytest.raises(NotFoundError, match="nothing served before"):
        reindex.rollback(world.collection)
    with pytest.raises(NotFoundError, match="no index is being built"):
        reindex.gate(world.collection)


def test_a_backfill_into_an_index_that_takes_no_writes_is_refused(world: World) -> None:
    with pytest.raises(NotFoundError, match="takes no writes"):
        world.ingestion.into("images-nowhere-v1")


def test_the_overlap_check_compares_neighbours_across_the_two_models(world: World) -> None:
    building = world.attach(world.new, NEW_DIR).info
    world.backfill_into(building.name)
    result = reindex.gate(world.collection, sample=5, min_overlap=0.99)
    assert result.overlap == 1.0 and result.passed  # one model is the other repeated: same neighbours


def test_status_names_every_index_with_its_roles_and_documents(world: World) -> None:
    world.attach(world.new, NEW_DIR)
    status = reindex.status(world.collection).to_json()
    roles = {index["model_id"]: (index["roles"], index["documents"]) for index in status["indexes"]}
    assert roles == {"old-c1": (["serving", "writing"], 3), "new-c1": (["writing"], 0)}
    assert status["building"] is not None


def test_a_model_not_carried_is_loaded_from_where_its_index_says(settings: Settings) -> None:
    """The query function of a new deployment still serves the old index, with the old model."""
    world = World(settings, carried=StubEmbedder(model_id="new-c1", repeat=2))
    world.attach(world.old, OLD_DIR)
    world.upload("cats/a.jpg", 1)
    assert world.top(1) == ("old-c1", "cats/a.jpg")
    assert world.old.calls and not world.new.calls


def test_an_index_that_does_not_say_where_its_model_lives_is_refused_with_the_way_out(
    settings: Settings,
) -> None:
    world = World(settings, carried=StubEmbedder(model_id="new-c1", repeat=2))
    reindex.attach(world.collection, model_id="old-c1", model_uri="", dim=13)
    with pytest.raises(ConfigError, match="deploy that model again, or re-index"):
        world.search.health()


def test_uploads_and_deletes_during_a_backfill_leave_both_indexes_holding_exactly_the_bucket(
    world: World,
) -> None:
    building = world.attach(world.new, NEW_DIR).info
    keys = [found.key for found in world.images.list(BUCKET, "")]
    world.ingestion.into(building.name).sync([Change(bucket=BUCKET, key=keys[0])])  # the first batch
    world.delete(keys[0])  # already backfilled
    world.delete(keys[1])  # not yet
    world.upload("birds/new.jpg", 11)  # listed by no batch of this run
    world.ingestion.into(building.name).sync([Change(bucket=BUCKET, key=key) for key in keys[1:]])
    bucket = [image_id_for(BUCKET, found.key) for found in world.images.list(BUCKET, "")]
    for info in world.collection.pointers().writing:
        index = world.collection.index(info)
        assert index.count() == len(bucket) == 2, info.model_id
        assert [index.get(image_id).metadata.model_id for image_id in bucket] == [info.model_id] * 2


def test_switching_back_and_forth_under_concurrent_queries_fails_no_query(world: World) -> None:
    """Every query reads the pointer once and searches that index with that index's model."""
    building = world.attach(world.new, NEW_DIR).info
    world.backfill_into(building.name)
    reindex.switch(world.collection)
    stop, answered, failures = threading.Event(), Counter[str](), list[BaseException]()

    def ask() -> None:
        while not stop.is_set():
            try:
                model, key = world.top(1)
                answered[model] += 1
                assert key == "cats/b.jpg", key
            except BaseException as error:
                failures.append(error)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(10):
        reindex.rollback(world.collection)
        reindex.switch(world.collection)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert answered["old-c1"] and answered["new-c1"], answered


def test_prepare_fills_the_index_being_built_else_the_serving_one(world: World) -> None:
    serving = world.collection.pointers().serving
    assert serving is not None
    plain = reindex.step(world.collection, {"action": "prepare", "input": {"prefix": "cats/"}})
    assert plain == {"target": serving.name, "prefix": "cats/", "manifest": "", "building": False}
    building = world.attach(world.new, NEW_DIR).info
    inventory = {"manifest": "inventory/images/backfill/2026-12-06T01-00Z/manifest.json"}
    assert reindex.step(world.collection, {"action": "prepare", "input": inventory}) == {
        "target": building.name,
        "prefix": "",
        "manifest": inventory["manifest"],
        "building": True,
    }


def test_steps_refuse_an_index_that_takes_no_writes_and_unknown_actions(world: World) -> None:
    with pytest.raises(ConfigError, match="images-elsewhere-v1 takes no writes"):
        reindex.step(world.collection, {"action": "prepare", "input": {"target": "images-elsewhere-v1"}})
    with pytest.raises(ConfigError, match="unknown action 'swap'"):
        reindex.step(world.collection, {"action": "swap"})


def test_a_forced_switch_skips_the_gate_and_the_answers_name_the_pointers(world: World) -> None:
    building = world.attach(world.new, NEW_DIR).info
    refused = reindex.step(world.collection, {"action": "gate"})
    assert not refused["passed"] and "holds 0 images" in refused["problems"][0]
    switched = reindex.step(world.collection, {"action": "switch", "force": True})
    assert switched["serving"] == building.name and building.name in switched["writing"]
    assert reindex.step(world.collection, {"action": "cleanup"})["dropped"] == [switched["previous"]]


def test_after_a_switch_a_plain_backfill_fills_the_serving_index_and_never_switches_back(
    world: World,
) -> None:
    building = world.attach(world.new, NEW_DIR).info
    world.backfill_into(building.name)
    reindex.switch(world.collection)
    pointers = world.collection.pointers()
    assert pointers.building is None  # the previous index takes writes, for a rollback: it is not built
    prepared = reindex.step(world.collection, {"action": "prepare", "input": {}})
    assert prepared["target"] == building.name and not prepared["building"]
    rolled_back = reindex.rollback(world.collection)
    assert rolled_back.building == building and rolled_back.previous is None  # forward again, not back
    with pytest.raises(NotFoundError, match="nothing served before"):
        reindex.rollback(world.collection)
    with pytest.raises(NotFoundError, match="images-elsewhere-v1 takes no writes"):
        reindex.gate(world.collection, target="images-elsewhere-v1")
