"""Ingestion at the speed of inference: chunks that overlap, and the round trips a key costs.

The service on fakes (``StubEmbedder``) and on the zero-latency stand-ins of S3 and the index from
``devtools.remote_latency``, which count their round trips. No test here measures time: overlap is
shown by one stage waiting for another to have started.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from devtools.remote_latency import Latency, RemoteImageStore, RemoteIndex, RemoteLatencies
from localmode.harness import local_settings
from simsearch import bootstrap
from simsearch.ingestion import OUT_OF_TIME, Change, IngestionService
from simsearch.ingestion.pipeline import CHUNK, Pipeline, chunked
from simsearch.ingestion.time_budget import MARGIN_S
from tests.fakes import StubEmbedder
from tests.image_factories import photo

BUCKET = "images"
NOW = Latency(0, 0)
INSTANT = RemoteLatencies(s3_head=NOW, s3_get=NOW, s3_mb_per_s=0, index_read=NOW, index_bulk=NOW)
WAIT = 10.0  # seconds a stage waits for its neighbour before the test fails (it never should)


def service_on(
    tmp_path: Path, store: RemoteImageStore, index: RemoteIndex, stub: StubEmbedder
) -> IngestionService:
    settings = local_settings(model_dir=tmp_path, index_path=tmp_path / "failures.sqlite")
    built = bootstrap.ingestion(settings, images=store, embedder=stub, index=index)
    assert isinstance(built, IngestionService)
    return built


def changes(*keys: str) -> list[Change]:
    return [Change(bucket=BUCKET, key=key) for key in keys]


def test_a_large_batch_is_embedded_in_chunks_and_every_key_answered_in_order(tmp_path: Path) -> None:
    store, stub = RemoteImageStore(INSTANT), StubEmbedder()
    index = RemoteIndex(dim=stub.dim, latencies=INSTANT)
    keys = [f"cats/{n:02d}.jpg" for n in range(25)]
    for n, key in enumerate(keys):
        store.put(BUCKET, key, photo(n))

    outcomes = service_on(tmp_path, store, index, stub).sync(changes(*keys))

    assert [(o.key, o.kind) for o in outcomes] == [(key, "indexed") for key in keys]
    assert stub.calls == [CHUNK, CHUNK, 5]
    assert index.count() == 25


def test_a_new_upload_costs_one_get_and_the_check_and_a_batch_one_lookup(tmp_path: Path) -> None:
    store, stub = RemoteImageStore(INSTANT), StubEmbedder()
    index = RemoteIndex(dim=stub.dim, latencies=INSTANT)
    keys = [f"cats/{n}.jpg" for n in range(10)]
    for n, key in enumerate(keys):
        store.put(BUCKET, key, photo(n))
    service = service_on(tmp_path, store, index, stub)

    assert {o.kind for o in service.sync(changes(*keys))} == {"indexed"}
    assert store.round_trips == {"get": 10, "head": 10}  # the GET brings the headers; the HEAD checks
    assert index.round_trips == {"mget": 1, "search": 1, "bulk": 1}  # the search: the embedding cache

    store.round_trips.clear()
    index.round_trips.clear()
    assert {o.kind for o in service.sync(changes(*keys))} == {"unchanged"}
    assert store.round_trips == {"head": 10}  # a duplicate downloads nothing
    assert index.round_trips == {"mget": 1}


def test_the_next_chunk_is_read_while_one_is_embedded_and_written_while_the_next_is() -> None:
    read_started = {n: threading.Event() for n in range(3)}
    write_started = {n: threading.Event() for n in range(3)}
    overlaps: list[str] = []

    def read(chunk: list[int]) -> int:
        read_started[chunk[0]].set()
        return chunk[0]

    def embed(plan: int) -> None:
        if plan + 1 in read_started and read_started[plan + 1].wait(WAIT):
            overlaps.append(f"read {plan + 1} during embed {plan}")
        if plan > 0 and write_started[plan - 1].wait(WAIT):
            overlaps.append(f"write {plan - 1} during embed {plan}")

    def write(plan: int) -> list[int]:
        write_started[plan].set()
        return [plan]

    pipeline = Pipeline()
    try:
        assert pipeline.run([[0], [1], [2]], read=read, embed=embed, write=write) == [0, 1, 2]
    finally:
        pipeline.close()
    assert overlaps == [
        "read 1 during embed 0",
        "read 2 during embed 1",
        "write 0 during embed 1",
        "write 1 during embed 2",
    ]


def test_a_failing_stage_is_raised_once_the_writes_in_flight_are_done() -> None:
    written: list[int] = []
    release = threading.Event()

    def read(chunk: list[int]) -> int:
        if chunk[0] == 2:
            raise RuntimeError("the failure log is down")
        return chunk[0]

    def write(plan: int) -> list[int]:
        release.wait(WAIT)
        written.append(plan)
        return [plan]

    def embed(plan: int) -> None:
        if plan == 1:
            release.set()

    pipeline = Pipeline()
    try:
        with pytest.raises(RuntimeError, match="failure log"):
            pipeline.run([[0], [1], [2]], read=read, embed=embed, write=write)
    finally:
        pipeline.close()
    assert written == [0, 1]  # nothing still writing when the error came out


def test_chunks_are_consecutive_and_a_full_sqs_batch_is_one() -> None:
    assert chunked(list(range(10))) == [list(range(10))]
    assert chunked(list(range(23)), 10) == [list(range(10)), list(range(10, 20)), [20, 21, 22]]
    assert chunked([]) == []


def test_a_batch_cut_short_reads_no_further_chunk_and_answers_each_one_not_started() -> None:
    read: list[int] = []

    def read_chunk(chunk: list[int]) -> int:
        read.append(chunk[0])
        return chunk[0]

    pipeline = Pipeline()
    try:
        outcomes = pipeline.run(
            [[0], [1], [2], [3]],
            read=read_chunk,
            embed=lambda _plan: None,
            write=lambda plan: [f"written {plan}"],
            may_start=lambda started: started < 2,
            skip=lambda chunk: [f"skipped {chunk[0]}"],
        )
        refused_at_once = pipeline.run(
            [[4]],
            read=read_chunk,
            embed=lambda _plan: None,
            write=lambda plan: [f"written {plan}"],
            may_start=lambda _started: False,
            skip=lambda chunk: [f"skipped {chunk[0]}"],
        )
    finally:
        pipeline.close()
    assert outcomes == ["written 0", "written 1", "skipped 2", "skipped 3"]
    assert refused_at_once == ["skipped 4"]
    assert read == [0, 1]


def test_a_pipeline_that_may_stop_must_say_what_the_chunks_not_started_answer() -> None:
    pipeline = Pipeline()
    try:
        with pytest.raises(TypeError, match="go together"):
            pipeline.run([[0]], read=lambda c: c, embed=lambda _p: None, write=lambda p: p, may_start=bool)
    finally:
        pipeline.close()


def test_out_of_time_every_key_comes_back_to_retry_and_nothing_is_read(tmp_path: Path) -> None:
    store, stub = RemoteImageStore(INSTANT), StubEmbedder()
    index = RemoteIndex(dim=stub.dim, latencies=INSTANT)
    keys = [f"photos/{n:02d}.jpg" for n in range(2 * CHUNK + 3)]
    for seed, key in enumerate(keys):
        store.put(BUCKET, key, photo(seed))
    service = service_on(tmp_path, store, index, stub)
    before = dict(store.round_trips)

    outcomes = service.sync(changes(*keys), deadline=time.monotonic() + MARGIN_S / 2)

    assert [(o.key, o.kind, o.reason) for o in outcomes] == [(key, "retry", OUT_OF_TIME) for key in keys]
    assert (store.round_trips, stub.calls, index.count()) == (before, [], 0)
