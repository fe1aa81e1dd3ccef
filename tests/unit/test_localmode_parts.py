"""The pieces of local mode that need no server: the page wrapper, Lambda's SQS event shape, image sources."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from localmode.cloud import notification_configuration
from localmode.harness import s3_records_in, sqs_event
from localmode.stack import folder_images, index_path_for
from localmode.static_site import WEB_ROOT, with_static_site
from model.images import sample_photos
from simsearch.delivery import NOTIFIED_EVENTS
from simsearch.labels import label_for


def api(event: dict[str, Any], context: Any) -> Mapping[str, Any]:  # noqa: ARG001 - the handler's signature
    return {"statusCode": 200, "body": json.dumps({"api": event["path"]})}


@pytest.mark.parametrize(
    ("path", "content_type"), [("/", "text/html"), ("/app.js", "javascript"), ("/style.css", "text/css")]
)
def test_the_page_files_are_served_before_the_api(path: str, content_type: str) -> None:
    response = with_static_site(api)({"httpMethod": "GET", "path": path}, None)
    assert content_type in response["headers"]["Content-Type"]
    name = "index.html" if path == "/" else path.lstrip("/")
    assert base64.b64decode(response["body"]) == (WEB_ROOT / name).read_bytes()


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/health"), ("POST", "/"), ("GET", "/../cli.py"), ("GET", "/web/app.js")]
)
def test_everything_else_reaches_the_api(method: str, path: str) -> None:
    response = with_static_site(api)({"httpMethod": method, "path": path}, None)
    assert json.loads(response["body"]) == {"api": path}


def test_received_messages_become_the_event_lambda_sends() -> None:
    message = {
        "MessageId": "m-1",
        "ReceiptHandle": "r-1",
        "Body": '{"Records": [{}]}',
        "MD5OfBody": "abc",
        "Attributes": {"ApproximateReceiveCount": "1"},
        "MessageAttributes": {"origin": {"StringValue": "test", "DataType": "String"}},
    }
    [record] = sqs_event([message], queue_arn="arn:aws:sqs:us-east-1:1:uploads", region="us-east-1")[
        "Records"
    ]
    assert record["messageId"] == "m-1"
    assert record["receiptHandle"] == "r-1"
    assert record["md5OfBody"] == "abc"
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == "arn:aws:sqs:us-east-1:1:uploads"
    assert record["messageAttributes"]["origin"]["stringValue"] == "test"
    assert record["messageAttributes"]["origin"]["dataType"] == "String"


@pytest.mark.parametrize(
    ("body", "records"),
    [('{"Records": [{}, {}]}', 2), ('{"Event": "s3:TestEvent"}', 0), ("not json", 0), ("[1]", 0)],
)
def test_progress_counts_s3_records_not_messages(body: str, records: int) -> None:
    assert s3_records_in(body) == records


def test_the_bucket_notifies_one_queue_configuration_per_event() -> None:
    configurations = notification_configuration("arn:q")["QueueConfigurations"]
    assert [c["Events"] for c in configurations] == [[event] for event in NOTIFIED_EVENTS.values()]
    assert {c["QueueArn"] for c in configurations} == {"arn:q"}


def test_the_sample_photographs_ship_with_installed_packages() -> None:
    images = sample_photos()
    assert "scikit-learn/china.jpg" in images
    assert len(images) >= 20
    assert all(path.is_file() for path in images.values())
    assert {label_for(key, {}) for key in images} == {"scikit-image", "scikit-learn"}


def test_a_folder_per_label_gives_labels_and_skips_other_files(tmp_path: Path) -> None:
    for name in ("cats/a.jpg", "cats/b.PNG", "dogs/c.webp", "notes.txt", "top.gif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    keys = sorted(folder_images(tmp_path))
    assert keys == ["cats/a.jpg", "cats/b.PNG", "dogs/c.webp", "top.gif"]
    assert [label_for(key, {}) for key in keys] == ["cats", "cats", "dogs", None]


def test_each_image_folder_gets_its_own_index(tmp_path: Path) -> None:
    one, other = tmp_path / "one", tmp_path / "other"
    assert index_path_for(one) != index_path_for(other)
    assert index_path_for(one) == index_path_for(tmp_path / "x" / ".." / "one")
    assert index_path_for(None) != index_path_for(one)
