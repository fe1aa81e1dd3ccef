"""What only the embedded index has to get right: durability, crashes, several handles, HNSW upkeep.

The shared behaviour (filters, scores, alias swap, ...) is in tests/integration/test_index_contract.py.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from simsearch.errors import ConfigError, NotFoundError
from simsearch.index import connect_failure_log, connect_index
from simsearch.index.embedded import EmbeddedFailureLog, EmbeddedIndex, HnswParams
from simsearch.index.port import FailureRecord, Filters
from simsearch.settings import Settings
from tests.index_factories import document, unit_vectors

REPO = Path(__file__).resolve().parents[2]
DIM = 16


def open_index(path: Path, *, threshold: int = 50_000) -> EmbeddedIndex:
    return EmbeddedIndex.open(
        path, prefix="images", model_id="m", dim=DIM, hnsw=HnswParams(threshold=threshold)
    )


def test_documents_survive_closing_and_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    first = open_index(path)
    first.ensure()
    docs = [document(f"photos/{i}.jpg", v) for i, v in enumerate(unit_vectors(50, DIM, seed=1))]
    first.upsert(docs)
    first.delete([docs[0].image_id])
    del first

    reopened = open_index(path)
    assert reopened.count() == 49
    assert reopened.search(docs[7].vector, k=1)[0].image_id == docs[7].image_id
    assert docs[0].image_id not in [h.image_id for h in reopened.search(docs[0].vector, k=49)]


def test_a_second_handle_on_the_same_file_sees_the_first_ones_writes(tmp_path: Path) -> None:
    """Local mode may ingest in one process and query in another: each rebuilds when the other writes."""
    path = tmp_path / "index.sqlite"
    reader, writer = open_index(path), open_index(path)
    reader.ensure()
    docs = [document(f"photos/{i}.jpg", v) for i, v in enumerate(unit_vectors(10, DIM, seed=2))]
    writer.upsert(docs[:5])
    assert reader.search(docs[3].vector, k=1)[0].image_id == docs[3].image_id  # builds faiss in reader

    writer.upsert(docs[5:])
    writer.delete([docs[3].image_id])
    assert reader.search(docs[8].vector, k=1)[0].image_id == docs[8].image_id
    assert docs[3].image_id not in [h.image_id for h in reader.search(docs[3].vector, k=10)]


def test_crossing_the_threshold_switches_to_hnsw_without_losing_documents(tmp_path: Path) -> None:
    index = open_index(tmp_path / "index.sqlite", threshold=100)
    index.ensure()
    vectors = unit_vectors(300, DIM, seed=3)
    docs = [document(f"photos/{i}.jpg", v, label="odd" if i % 2 else "even") for i, v in enumerate(vectors)]
    for start in range(0, 300, 60):  # exact below 100, HNSW after
        index.upsert(docs[start : start + 60])
        index.search(vectors[0], k=1)
    assert index.count() == 300
    exact = np.argsort(-(vectors @ vectors[5]))[:10]
    assert [h.image_id for h in index.search(vectors[5], k=10)] == [docs[i].image_id for i in exact]
    assert len(index.search(vectors[5], k=200, filters=Filters(label="odd"))) == 150


def test_hnsw_never_returns_removed_vectors_and_rebuilds_after_many_removals(tmp_path: Path) -> None:
    index = open_index(tmp_path / "index.sqlite", threshold=0)
    index.ensure()
    vectors = unit_vectors(200, DIM, seed=4)
    docs = [document(f"photos/{i}.jpg", v) for i, v in enumerate(vectors)]
    index.upsert(docs)
    removed: set[str] = set()
    for start in range(0, 120, 20):  # past a quarter of the graph removed, it is rebuilt
        batch = [d.image_id for d in docs[start : start + 20]]
        index.delete(batch)
        removed.update(batch)
        hits = index.search(vectors[0], k=200)
        assert {h.image_id for h in hits} == {d.image_id for d in docs} - removed


def test_a_selective_filter_in_hnsw_mode_still_returns_every_match(tmp_path: Path) -> None:
    index = open_index(tmp_path / "index.sqlite", threshold=0)
    index.ensure()
    vectors = unit_vectors(2000, DIM, seed=5)
    rare = {7, 700, 1400}
    docs = [
        document(f"photos/{i}.jpg", v, label="rare" if i in rare else "common") for i, v in enumerate(vectors)
    ]
    index.upsert(docs)
    hits = index.search(-vectors[7], k=10, filters=Filters(label="rare"))  # far from every match
    assert sorted(h.image_id for h in hits) == sorted(docs[i].image_id for i in rare)


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from simsearch.index.embedded import EmbeddedIndex
    from tests.index_factories import document, unit_vectors

    index = EmbeddedIndex.open(Path(sys.argv[1]), prefix="images", model_id="m", dim=64)
    index.ensure()
    batch = 0
    while True:
        vectors = unit_vectors(int(sys.argv[2]), 64, seed=batch)
        index.upsert([document(f"batch{batch}/{i}.jpg", v) for i, v in enumerate(vectors)])
        batch += 1
        print(batch, flush=True)
    """
)


def test_a_writer_killed_mid_batch_leaves_whole_batches_only(tmp_path: Path) -> None:
    """SIGKILL a real writer process while it writes; the file must hold complete batches and work."""
    path, batch_size = tmp_path / "index.sqlite", 1500
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "lambdas"), str(REPO)])}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(batch_size)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    assert writer.stdout.readline(), "the writer died before its first batch"
    started = time.monotonic()
    assert writer.stdout.readline(), "the writer died before its second batch"
    time.sleep((time.monotonic() - started) / 2)  # half a batch in: inside the third batch's writes
    writer.send_signal(signal.SIGKILL)
    writer.wait()

    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    index = EmbeddedIndex.open(path, prefix="images", model_id="m", dim=64)
    keys_per_batch = Counter(
        hit.metadata.key.split("/")[0] for hit in index.search(unit_vectors(1, 64)[0], k=10_000)
    )
    assert index.count() == sum(keys_per_batch.values()) >= 2 * batch_size
    assert set(keys_per_batch.values()) == {batch_size}


def test_ensure_refuses_an_index_of_another_dimension(tmp_path: Path) -> None:
    path = tmp_path / "index.sqlite"
    open_index(path).ensure()
    other = EmbeddedIndex.open(path, prefix="images", model_id="m", dim=DIM * 2)
    with pytest.raises(ConfigError, match=f"{DIM}-dimensional"):
        other.ensure()


def test_connect_index_without_an_opensearch_url_opens_the_embedded_file(tmp_path: Path) -> None:
    path = tmp_path / "local" / "simsearch.sqlite"
    settings = Settings(
        model_dir=tmp_path, images_bucket="images", embedded_index_path=path, index_prefix="img"
    )
    index = connect_index(settings, model_id="m", dim=DIM)
    assert index.ensure() == "img-m-v1"
    index.upsert([document("photos/a.jpg", unit_vectors(1, DIM)[0])])
    assert path.is_file()
    with pytest.raises(NotFoundError):  # another prefix: another index in the same file
        open_index(path).count()
    assert EmbeddedIndex.open(path, prefix="img", model_id="m", dim=DIM).count() == 1


def test_the_failure_log_keeps_one_record_per_object_version_newest_first(tmp_path: Path) -> None:
    settings = Settings(model_dir=tmp_path, images_bucket="images", embedded_index_path=tmp_path / "f.sqlite")
    log = connect_failure_log(settings)
    log.ensure()
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for minutes, key, etag, code in [
        (0, "a.jpg", "e1", "invalid_image"),
        (1, "b.svg", None, "unsupported_image"),
        (2, "a.jpg", "e1", "image_too_large"),  # the same object again: replaces the first record
        (3, "a.jpg", "e2", "invalid_image"),
    ]:
        at = start + timedelta(minutes=minutes)
        log.record(FailureRecord(key=key, etag=etag, reason_code=code, message=f"{code} {key}", at=at))

    recent = log.recent(10)
    assert [(r.key, r.etag, r.reason_code) for r in recent] == [
        ("a.jpg", "e2", "invalid_image"),
        ("a.jpg", "e1", "image_too_large"),
        ("b.svg", None, "unsupported_image"),
    ]
    assert recent[0].at == start + timedelta(minutes=3)
    assert len(log.recent(2)) == 2
    assert isinstance(log, EmbeddedFailureLog)


def test_an_index_whose_folder_cannot_be_created_names_the_path_the_cause_and_the_fix(
    tmp_path: Path,
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    path = tmp_path / "a-file" / "index" / "index.sqlite"
    with pytest.raises(ConfigError) as raised:
        EmbeddedIndex.open(path, prefix="images", model_id="m", dim=DIM)
    message = str(raised.value)
    assert f"the embedded index {path} cannot be written" in message
    assert f"cannot create {tmp_path / 'a-file' / 'index'}: Not a directory" in message
    assert f"make {tmp_path} and the files in it writable" in message
    assert raised.value.code == "config_error"  # to fix, not to retry
