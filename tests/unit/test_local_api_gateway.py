"""The local server hands requests to a Lambda handler as API Gateway's REST proxy events, and writes back
what the handler returns; a recording handler stands in for the query handler here. Requests that are not
valid HTTP, or that outgrow API Gateway's quotas, are answered by the gateway itself in the API's JSON
error shape, and no read waits longer than the read timeout."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from handlers.gateway import HEAD_MAX_BYTES
from localmode.api_gateway import MAX_BODY_BYTES, ApiGatewayServer, running
from localmode.ports import PortInUseError


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


# HTTP framing and limits: what the gateway answers itself, always in the API's JSON error shape ------

SHORT_TIMEOUT_S = 0.5


@pytest.fixture
def strict(recorder: Recorder) -> Iterator[ApiGatewayServer]:
    """The server with a short read timeout, so a test of it does not wait ten seconds."""
    with running(recorder, read_timeout_s=SHORT_TIMEOUT_S) as started:
        yield started


@dataclass(frozen=True)
class Raw:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    seconds: float

    @property
    def error(self) -> dict[str, str]:
        assert self.headers["Content-Type"] == "application/json"
        error: dict[str, str] = json.loads(self.body)["error"]
        return error


def raw(server: ApiGatewayServer, request: bytes, *, method: str = "GET") -> Raw:
    """Send ``request`` byte for byte and read the one answer (bounded: the test fails, never hangs)."""
    started = time.monotonic()
    with socket.create_connection(server.server_address[:2], timeout=10) as connection:
        connection.sendall(request)
        response = http.client.HTTPResponse(connection, method=method)
        response.begin()
        body = response.read()
    return Raw(response.status, response.headers, body, time.monotonic() - started)


def post(content_length: str, body: bytes = b"{}", *, extra: str = "") -> bytes:
    head = f"POST /search HTTP/1.1\r\nHost: x\r\nContent-Length: {content_length}\r\n{extra}\r\n"
    return head.encode() + body


@pytest.mark.parametrize("content_length", ["abc", "1e3", "-1", "2, 3", " "])
def test_a_malformed_content_length_is_a_400_in_the_api_shape(
    strict: ApiGatewayServer, recorder: Recorder, content_length: str
) -> None:
    answer = raw(strict, post(content_length))
    assert answer.status == 400
    assert answer.error["code"] == "invalid_request"
    assert "Content-Length" in answer.error["message"]
    assert recorder.events == []


def test_two_content_lengths_that_disagree_are_a_400(strict: ApiGatewayServer, recorder: Recorder) -> None:
    answer = raw(strict, post("2", extra="Content-Length: 5\r\n"))
    assert (answer.status, answer.error["code"]) == (400, "invalid_request")
    assert recorder.events == []


def test_a_body_shorter_than_announced_gets_408_after_the_read_timeout_and_blocks_no_one(
    strict: ApiGatewayServer, recorder: Recorder
) -> None:
    with socket.create_connection(strict.server_address[:2], timeout=10) as stalled:
        stalled.sendall(post("1000", b"{}"))
        assert requests.get(f"{strict.url}/health", timeout=5).status_code == 200  # others are served
        response = http.client.HTTPResponse(stalled)
        response.begin()
        assert response.status == 408
        assert json.loads(response.read())["error"]["code"] == "request_timeout"
    assert [event["httpMethod"] for event in recorder.events] == ["GET"]


def test_a_request_line_over_api_gateways_quota_is_a_414(strict: ApiGatewayServer) -> None:
    answer = raw(strict, f"GET /{'a' * HEAD_MAX_BYTES} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert (answer.status, answer.error["code"]) == (414, "request_line_too_long")


@pytest.mark.parametrize("size", [HEAD_MAX_BYTES, 100 * HEAD_MAX_BYTES], ids=["over the quota", "huge"])
def test_headers_over_api_gateways_quota_are_a_431(strict: ApiGatewayServer, size: int) -> None:
    answer = raw(strict, f"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * size}\r\n\r\n".encode())
    assert (answer.status, answer.error["code"]) == (431, "headers_too_large")


def test_a_declared_body_over_the_quota_is_a_413_before_it_is_sent(strict: ApiGatewayServer) -> None:
    answer = raw(strict, post(str(MAX_BODY_BYTES + 1), b""))
    assert (answer.status, answer.error["code"]) == (413, "request_too_large")
    assert answer.seconds < SHORT_TIMEOUT_S  # refused from the header, not after waiting for the body


def test_a_chunked_body_over_the_quota_is_a_413(strict: ApiGatewayServer, recorder: Recorder) -> None:
    chunk = b"\0" * (1024 * 1024)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(11))
    answer = raw(strict, b"POST /search HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks)
    assert (answer.status, answer.error["code"]) == (413, "request_too_large")
    assert recorder.events == []


def test_a_chunked_body_within_the_quota_reaches_the_handler(
    strict: ApiGatewayServer, recorder: Recorder
) -> None:
    body = b"5\r\nhello\r\n0\r\n\r\n"
    raw(
        strict,
        b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        + body,
    )
    (event,) = recorder.events
    assert event["body"] == "hello"


def test_head_is_answered_like_get_without_a_body(strict: ApiGatewayServer, recorder: Recorder) -> None:
    recorder.response = {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": '{"a": 1}',
    }
    answer = raw(strict, b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n", method="HEAD")
    assert answer.status == 200
    assert answer.headers["Content-Length"] == "8"
    assert answer.body == b""
    assert recorder.events[0]["httpMethod"] == "GET"


def test_no_answer_names_the_server_or_its_python(strict: ApiGatewayServer) -> None:
    for request in (b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", post("abc")):
        assert "Server" not in raw(strict, request).headers


def test_a_port_in_use_is_refused_at_once_with_the_port(strict: ApiGatewayServer, recorder: Recorder) -> None:
    host, port = strict.server_address[:2]
    with pytest.raises(PortInUseError, match=f"{host}:{port}"):
        ApiGatewayServer((str(host), int(port)), recorder)


def test_the_server_keeps_serving_after_every_refusal(strict: ApiGatewayServer) -> None:
    for request in (post("abc"), post("9", b"{}"), b"\x16\x03\x01 not http\r\n\r\n"):
        raw(strict, request)
    assert requests.get(f"{strict.url}/health", timeout=5).status_code == 200
