"""The local server hands requests to a Lambda handler as API Gateway's REST proxy events, and writes back
what the handler returns; a recording handler stands in for the query handler here."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import requests

from localmode.api_gateway import MAX_BODY_BYTES, ApiGatewayServer, running


class Recorder:
    """Records each event and answers with a fixed response; can be told to raise or to take its time."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.response: Mapping[str, Any] = {"statusCode": 200, "body": "{}", "headers": {}}
        self.fail = False
        self.delay_s = 0.0
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any], context: Any) -> Mapping[str, Any]:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(self.delay_s)
            self.events.append(event | {"context_request_id": context.aws_request_id})
            if self.fail:
                raise RuntimeError("the handler crashed")
            return self.response
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def server(recorder: Recorder) -> Iterator[ApiGatewayServer]:
    with running(recorder) as started:
        yield started


def test_an_image_body_arrives_base64_encoded(server: ApiGatewayServer, recorder: Recorder) -> None:
    data = bytes(range(256))
    requests.post(f"{server.url}/search", data=data, headers={"Content-Type": "image/png"}, timeout=10)
    (event,) = recorder.events
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == data
    assert (event["httpMethod"], event["path"]) == ("POST", "/search")


def test_a_json_body_arrives_as_text(server: ApiGatewayServer, recorder: Recorder) -> None:
    requests.post(f"{server.url}/search", json={"k": 3}, timeout=10)
    (event,) = recorder.events
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == {"k": 3}


def test_no_body_is_null(server: ApiGatewayServer, recorder: Recorder) -> None:
    requests.get(f"{server.url}/health", timeout=10)
    (event,) = recorder.events
    assert (event["body"], event["isBase64Encoded"]) == (None, False)
    assert event["queryStringParameters"] is None


def test_query_strings_and_headers_come_single_and_multi_valued(
    server: ApiGatewayServer, recorder: Recorder
) -> None:
    requests.get(f"{server.url}/images/a%20b?k=1&k=2&label=caf%C3%A9", headers={"X-Trace": "t1"}, timeout=10)
    (event,) = recorder.events
    assert event["path"] == "/images/a%20b"  # as a REST API sends it: still percent-encoded
    assert event["pathParameters"] == {"proxy": "images/a b"}
    assert event["queryStringParameters"] == {"k": "2", "label": "café"}
    assert event["multiValueQueryStringParameters"]["k"] == ["1", "2"]
    assert event["headers"]["X-Trace"] == "t1"
    assert event["multiValueHeaders"]["X-Trace"] == ["t1"]


def test_each_request_has_its_own_request_id(server: ApiGatewayServer, recorder: Recorder) -> None:
    for _ in range(2):
        requests.get(f"{server.url}/health", timeout=10)
    request_ids = {event["requestContext"]["requestId"] for event in recorder.events}
    assert len(request_ids) == 2


def test_the_response_status_headers_and_body_are_written_back(
    server: ApiGatewayServer, recorder: Recorder
) -> None:
    recorder.response = {
        "statusCode": 503,
        "multiValueHeaders": {"Retry-After": ["5"], "Content-Type": ["application/json"]},
        "body": '{"error": {"code": "index_unavailable"}}',
        "isBase64Encoded": False,
    }
    answer = requests.get(f"{server.url}/health", timeout=10)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "5"
    assert answer.json() == {"error": {"code": "index_unavailable"}}


def test_a_base64_response_body_is_decoded(server: ApiGatewayServer, recorder: Recorder) -> None:
    recorder.response = {
        "statusCode": 200,
        "body": base64.b64encode(b"\x89PNG").decode(),
        "isBase64Encoded": True,
    }
    assert requests.get(f"{server.url}/image.png", timeout=10).content == b"\x89PNG"


def test_a_crashing_handler_gets_api_gateways_502(server: ApiGatewayServer, recorder: Recorder) -> None:
    recorder.fail = True
    answer = requests.get(f"{server.url}/health", timeout=10)
    assert answer.status_code == 502
    assert answer.json() == {"message": "Internal server error"}


def test_a_body_over_api_gateways_limit_never_reaches_the_handler(
    server: ApiGatewayServer, recorder: Recorder
) -> None:
    body = b"\0" * (MAX_BODY_BYTES + 1)
    answer = requests.post(
        f"{server.url}/search", data=body, headers={"Content-Type": "image/jpeg"}, timeout=30
    )
    assert answer.status_code == 413
    assert recorder.events == []


def test_requests_reach_the_handler_one_at_a_time_like_one_lambda_container(
    server: ApiGatewayServer, recorder: Recorder
) -> None:
    recorder.delay_s = 0.05
    threads = [threading.Thread(target=requests.get, args=(f"{server.url}/health",)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(recorder.events) == 4
    assert recorder.most_at_once == 1
