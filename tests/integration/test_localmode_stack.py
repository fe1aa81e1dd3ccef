"""The local stack runs the cloud flow: uploads notify the queue, the worker feeds the real ingest handler,
and the real query handler answers over HTTP; the CLI talks to it as a user would."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from localmode import cli
from localmode.stack import LocalStack, upload
from simsearch.ids import image_id_for
from simsearch.index import connect_failure_log
from tests.localmode_world import query_image, stack_with

TIMEOUT_S = 30


@pytest.fixture(scope="module")
def index_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("index") / "index.sqlite"


@pytest.fixture(scope="module")
def stack(corpus_dir: Path, model_dir: Path, index_path: Path) -> Iterator[LocalStack]:
    with stack_with(corpus_dir, model_dir=model_dir, index_path=index_path) as running:
        yield running


def search(stack: LocalStack, data: bytes, **params: str | int) -> list[dict[str, object]]:
    response = requests.post(
        f"{stack.url}/search",
        params=params,
        data=data,
        headers={"Content-Type": "image/jpeg"},
        timeout=TIMEOUT_S,
    )
    assert response.status_code == 200, response.text
    results: list[dict[str, object]] = response.json()["results"]
    return results


def test_uploaded_images_become_searchable_with_folder_labels(stack: LocalStack, corpus_dir: Path) -> None:
    assert requests.get(f"{stack.url}/health", timeout=TIMEOUT_S).json()["documents"] == 6
    results = search(stack, query_image(corpus_dir, "flower"), k=3)
    assert (results[0]["key"], results[0]["label"]) == ("photos/flower.jpg", "photos")
    thumbnail = requests.get(str(results[0]["url"]), timeout=TIMEOUT_S)  # presigned GET on the moto bucket
    assert thumbnail.status_code == 200
    assert thumbnail.content == (corpus_dir / "photos/flower.jpg").read_bytes()


def test_the_page_and_the_api_share_one_server(stack: LocalStack) -> None:
    page = requests.get(stack.url, timeout=TIMEOUT_S)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert '<script src="app.js"' in page.text
    assert requests.get(f"{stack.url}/app.js", timeout=TIMEOUT_S).status_code == 200
    assert requests.get(f"{stack.url}/openapi.json", timeout=TIMEOUT_S).json()["paths"]


def test_an_image_deleted_from_the_bucket_leaves_the_index(stack: LocalStack, corpus_dir: Path) -> None:
    s3 = stack.cloud.client("s3")
    key = "extra/stripes-again.png"
    s3.put_object(Bucket=stack.cloud.bucket, Key=key, Body=(corpus_dir / "patterns/stripes.png").read_bytes())
    image_url = f"{stack.url}/images/{image_id_for(stack.cloud.bucket, key)}"
    _eventually(lambda: requests.get(image_url, timeout=TIMEOUT_S).status_code == 200)

    s3.delete_object(Bucket=stack.cloud.bucket, Key=key)  # ObjectRemoved:Delete reaches the worker too

    _eventually(lambda: requests.get(image_url, timeout=TIMEOUT_S).status_code == 404)


def test_a_broken_upload_is_recorded_as_a_failure_and_acknowledged(stack: LocalStack, tmp_path: Path) -> None:
    settled_before = stack.progress.settled
    upload(stack.cloud, {"broken/half.jpg": _write(tmp_path / "half.jpg", b"\xff\xd8\xff\xe0 cut short")})
    assert stack.progress.wait_for(settled_before + 1, timeout=TIMEOUT_S)
    assert _queue_is_empty(stack)

    [failure] = [f for f in connect_failure_log(stack.settings).recent(10) if f.key == "broken/half.jpg"]
    assert failure.reason_code == "invalid_image"


def test_cli_search_prints_results_as_json(
    stack: LocalStack, corpus_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = _write(tmp_path / "q.jpg", query_image(corpus_dir, "checker"))
    status = cli.main(["search", str(query), "-k", "2", "--label", "patterns", "--api", stack.url, "--json"])
    body = json.loads(capsys.readouterr().out)
    assert status == 0
    assert body["results"][0]["key"] == "patterns/checker.png"
    assert {r["label"] for r in body["results"]} == {"patterns"}


def test_cli_search_reports_the_api_error_and_exits_1(
    stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = cli.main(["search", str(_write(tmp_path / "x.png", b"not a png")), "--api", stack.url])
    assert status == 1
    assert "the API answered 400" in capsys.readouterr().err


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _queue_is_empty(stack: LocalStack) -> bool:
    attributes = stack.cloud.client("sqs").get_queue_attributes(
        QueueUrl=stack.cloud.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(value) == 0 for value in attributes.values())


def _eventually(condition: Callable[[], bool], timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)
