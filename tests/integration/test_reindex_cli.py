"""``imgsearch backfill`` and ``imgsearch reindex`` on this machine: a model change while queries run.

The settings come from ``SIMSEARCH_*`` variables, as for an operator pointing the CLI at an index:
the embedded index in ``tmp_path``, the bucket in moto (in process), the real MobileNetV2 and the same
network under another model id (``tests.model_variants``). A "deployment" of the second model is the
variables naming it; its first ``imgsearch backfill`` attaches it, fills it beside the serving index,
gates and switches, while a thread keeps querying through the query service: every query is answered,
first by the old model, then by the new one.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from localmode import discovery
from localmode.harness import local_settings
from simsearch import bootstrap
from simsearch.search import ImageQuery, SearchOptions
from simsearch.settings import Settings
from tests.cli_run import imgsearch
from tests.image_factories import photo
from tests.model_variants import renamed_model

pytestmark = pytest.mark.integration

BUCKET = "images"
KEYS = [f"{label}/{n}.jpg" for n, label in enumerate(["cats", "cats", "dogs", "dogs", "birds", "birds"])]


@pytest.fixture
def world(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Settings, Settings]]:
    """(first deployment, second deployment): the settings of each, the bucket filled, nothing indexed."""
    monkeypatch.setattr(discovery, "NOTE", tmp_path / "no-stack.json")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        for n, key in enumerate(KEYS):
            s3.put_object(Bucket=BUCKET, Key=key, Body=photo(n))
        s3.put_object(Bucket=BUCKET, Key="cats/broken.jpg", Body=b"not an image")
        first = local_settings(model_dir=model_dir, index_path=tmp_path / "index.sqlite", ort_threads=2)
        first = Settings.from_env({**first.to_env(), "SIMSEARCH_IMAGES_BUCKET": BUCKET})
        second = Settings.from_env(
            {**first.to_env(), "SIMSEARCH_MODEL_DIR": str(renamed_model(model_dir, tmp_path / "second"))}
        )
        yield first, second


def run(monkeypatch: pytest.MonkeyPatch, settings: Settings, *argv: str) -> tuple[int, dict[str, Any]]:
    """``imgsearch <argv> --json`` with ``settings`` in the environment: (exit status, its JSON)."""
    status, out = imgsearch(monkeypatch, settings, *argv, "--json")
    return status, json.loads(out or "{}")


def test_a_model_change_reindexes_gates_and_switches_while_every_query_is_answered(
    world: tuple[Settings, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = world
    status, filled = run(monkeypatch, first, "backfill")
    assert status == 0 and filled["counts"] == {"indexed": 6, "failed": 1} and "gate" not in filled

    stop, answered, failures = threading.Event(), Counter[str](), list[BaseException]()
    service = bootstrap.search(second)  # the new deployment's query function: it carries the new model

    def ask() -> None:
        while not stop.is_set():
            try:
                answer = service.search(ImageQuery(data=photo(2)), SearchOptions(k=1))
                assert answer.results[0].key == "dogs/2.jpg"
                answered[answer.model_id] += 1
            except BaseException as error:  # every failure is the finding
                failures.append(error)

    asking = threading.Thread(target=ask)
    asking.start()
    try:
        status, reindexed = run(monkeypatch, second, "backfill")
    finally:
        stop.set()
        asking.join(timeout=60)
        service.close()
    assert status == 0, reindexed
    assert reindexed["counts"] == {"indexed": 6, "failed": 1}
    assert reindexed["gate"]["passed"] and reindexed["gate"]["documents"] == 6
    assert reindexed["switched"]["serving"] == reindexed["target"]
    assert failures == []
    old_id, new_id = (json.loads((s.model_dir / "manifest.json").read_text())["model_id"] for s in world)
    assert answered[old_id] > 0, answered  # the old model served while the new index filled

    status, after = run(monkeypatch, second, "reindex", "status")
    roles = {index["model_id"]: (index["roles"], index["documents"]) for index in after["indexes"]}
    assert roles == {old_id: (["writing", "previous"], 6), new_id: (["serving", "writing"], 6)}


def test_rollback_switch_and_cleanup_from_the_command_line(
    world: tuple[Settings, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = world
    old = run(monkeypatch, first, "backfill")[1]["target"]
    new = run(monkeypatch, second, "backfill")[1]["target"]
    status, rolled_back = run(monkeypatch, second, "reindex", "rollback")
    assert status == 0 and (rolled_back["serving"], rolled_back["previous"]) == (old, "")
    status, switched = run(monkeypatch, second, "reindex", "switch")
    assert status == 0 and (switched["serving"], switched["previous"]) == (new, old)
    status, cleaned = run(monkeypatch, second, "reindex", "cleanup")
    assert status == 0 and cleaned["dropped"] == [old]
    status, after = run(monkeypatch, second, "reindex", "status")
    assert [index["roles"] for index in after["indexes"]] == [["serving", "writing"]]


def test_a_second_backfill_finds_everything_indexed_and_a_gate_with_nothing_to_build_fails(
    world: tuple[Settings, Settings], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _ = world
    run(monkeypatch, first, "backfill")
    status, again = run(monkeypatch, first, "backfill")
    assert status == 0 and again["counts"] == {"unchanged": 6, "failed": 1}
    status, _ = run(monkeypatch, first, "reindex", "gate")
    assert status == 1
    assert "no index is being built" in capsys.readouterr().err
