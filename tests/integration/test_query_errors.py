"""Every bad request gets its documented status and a JSON error naming the problem; faults reach the
handler through the real OpenSearch client (a proxy answering 503 or 400), never through patches."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from handlers import query
from handlers.api_input import INLINE_IMAGE_MAX_BYTES
from tests import api_events, query_fixtures
from tests.api_events import Answer, b64
from tests.faultproxy import FaultProxy
from tests.image_factories import SVG, png_declaring
from tests.query_fixtures import QueryApi, handler_configured

pytestmark = pytest.mark.integration

# The fixtures this module uses (a `pytest_plugins` line in tests/conftest.py would make this unnecessary).
embedder, corpus, query_api = (
    query_fixtures.embedder,
    query_fixtures.corpus,
    query_fixtures.query_api,
)


def refused(event: dict[str, object], status: int, code: str, *mentions: str) -> Answer:
    """Call the handler and check the status, the error code, and that the message names the problem."""
    answer = api_events.call(query.handler, event)
    assert (answer.status, answer.error_code) == (status, code), answer.json
    assert set(answer.json) == {"error"}
    for mention in mentions:
        assert mention in answer.error_message
    return answer


def search_json(payload: object, **query: object) -> dict[str, object]:
    return api_events.post_json("/search", payload, query=query or None)


@pytest.mark.usefixtures("query_api")
class TestBadRequests:
    def test_a_body_that_is_not_json(self) -> None:
        event = api_events.request(
            "POST", "/search", body=b"{k: 1", headers={"Content-Type": "application/json"}
        )
        refused(event, 400, "invalid_request", "not valid JSON")

    def test_an_empty_json_body(self) -> None:
        event = api_events.request("POST", "/search", headers={"Content-Type": "application/json"})
        refused(event, 400, "invalid_request", "not valid JSON")

    def test_json_that_is_not_an_object(self) -> None:
        refused(search_json([1, 2, 3]), 400, "invalid_request", "JSON object", "list")

    def test_bad_base64(self) -> None:
        refused(search_json({"image": "not base64!"}), 400, "invalid_request", "base64")

    def test_base64_of_something_that_is_not_an_image(self) -> None:
        refused(search_json({"image": b64(b"hello, world")}), 400, "invalid_image", "not a complete image")

    def test_raw_bytes_that_are_not_an_image(self) -> None:
        refused(api_events.post_image("/search", b"\xff\xd8 not really a jpeg"), 400, "invalid_image")

    def test_an_empty_image_body(self) -> None:
        refused(api_events.post_image("/search", b""), 400, "invalid_image", "empty")

    def test_an_svg_sent_as_an_image(self) -> None:
        refused(
            api_events.post_image("/search", SVG, content_type="image/png"), 400, "unsupported_image", "SVG"
        )

    def test_a_vector_of_the_wrong_dimension(self) -> None:
        refused(search_json({"vector": [0.1, 0.2, 0.3]}), 400, "invalid_vector", "3 values", "1280")

    def test_a_vector_with_nan(self) -> None:
        body = b'{"vector": [NaN' + b", 0.5" * 1279 + b"]}"
        event = api_events.request("POST", "/search", body=body, headers={"Content-Type": "application/json"})
        refused(event, 400, "invalid_vector", "NaN")

    def test_a_vector_of_zeros(self) -> None:
        refused(search_json({"vector": [0.0] * 1280}), 400, "invalid_vector", "length 0")

    def test_a_vector_of_strings(self) -> None:
        refused(search_json({"vector": ["a"] * 1280}), 400, "invalid_request", "vector.", "'a'", "number")

    def test_two_query_inputs(self) -> None:
        refused(
            search_json({"id": "0" * 32, "s3_key": "x.jpg"}), 400, "invalid_request", "exactly one", "s3_key"
        )

    def test_no_query_input(self) -> None:
        refused(search_json({"k": 3}), 400, "invalid_request", "exactly one")

    def test_an_unknown_field(self) -> None:
        refused(search_json({"id": "0" * 32, "top_k": 3}), 400, "invalid_request", "top_k")

    @pytest.mark.parametrize("k", [0, 101, -1, 2.5, True, "5"])
    def test_k_out_of_bounds_or_not_an_integer(self, k: object) -> None:
        refused(search_json({"id": "0" * 32, "k": k}), 400, "invalid_request", "k:")

    @pytest.mark.parametrize("k", ["0", "101", "ten", "1.5", ""])
    def test_k_in_the_query_string(self, k: str) -> None:
        event = api_events.post_image("/search", b"unused", query={"k": k})
        refused(event, 400, "invalid_request", "k")

    @pytest.mark.parametrize("value", [1.5, -2])
    def test_min_similarity_out_of_range(self, value: float) -> None:
        refused(
            search_json({"id": "0" * 32, "min_similarity": value}), 400, "invalid_request", "min_similarity"
        )

    @pytest.mark.parametrize("value", ["nan", "inf", "high"])
    def test_min_similarity_in_the_query_string_that_is_not_a_number(self, value: str) -> None:
        event = api_events.post_image("/search", b"unused", query={"min_similarity": value})
        refused(event, 400, "invalid_request", "min_similarity")

    def test_an_unknown_filter_field(self) -> None:
        refused(search_json({"id": "0" * 32, "filter": {"tag": "x"}}), 400, "invalid_request", "tag")

    def test_an_empty_label(self) -> None:
        refused(
            search_json({"id": "0" * 32, "filter": {"label": ""}}), 400, "invalid_request", "filter.label"
        )

    def test_a_key_with_an_unpaired_surrogate(self) -> None:
        body = b'{"s3_key": "_queries/\\ud800.jpg"}'
        event = api_events.request("POST", "/search", body=body, headers={"Content-Type": "application/json"})
        refused(event, 400, "invalid_request", "s3_key", "surrogate")

    @pytest.mark.parametrize("image_id", ["abc", "0" * 31 + "G", "0" * 33])
    def test_an_id_that_cannot_be_an_image_id(self, image_id: str) -> None:
        refused(api_events.get(f"/images/{image_id}"), 400, "invalid_request", "id")
        refused(search_json({"id": image_id}), 400, "invalid_request", "id")


@pytest.mark.usefixtures("query_api")
class TestNotFound:
    def test_an_unknown_id(self) -> None:
        refused(search_json({"id": "f" * 32}), 404, "not_found", "f" * 32)
        refused(api_events.get(f"/images/{'f' * 32}"), 404, "not_found", "f" * 32)

    def test_an_unknown_key(self) -> None:
        refused(
            search_json({"s3_key": "_queries/never-uploaded"}), 404, "not_found", "_queries/never-uploaded"
        )

    @pytest.mark.parametrize(("method", "path"), [("GET", "/nothing"), ("POST", "/images/a/b"), ("GET", "/")])
    def test_an_unknown_route(self, method: str, path: str) -> None:
        refused(api_events.request(method, path), 404, "not_found", method, path, "/openapi.json")


@pytest.mark.usefixtures("query_api")
@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("GET", "/search", "POST"), ("DELETE", "/health", "GET"), ("PUT", f"/images/{'a' * 32}", "GET")],
)
def test_a_known_path_with_another_method_is_405_naming_the_allowed_ones(
    method: str, path: str, allowed: str
) -> None:
    answer = refused(api_events.request(method, path), 405, "method_not_allowed", method, allowed)
    assert answer.headers["allow"] == allowed


@pytest.mark.usefixtures("query_api")
class TestTooLarge:
    def test_a_raw_image_over_the_inline_limit_points_to_uploads(self) -> None:
        event = api_events.post_image("/search", b"\xff" * (INLINE_IMAGE_MAX_BYTES + 1))
        refused(event, 413, "image_too_large", str(INLINE_IMAGE_MAX_BYTES), "/uploads")

    def test_a_base64_image_over_the_inline_limit_points_to_uploads(self) -> None:
        refused(
            search_json({"image": b64(b"\xff" * (INLINE_IMAGE_MAX_BYTES + 1))}),
            413,
            "image_too_large",
            "/uploads",
        )

    def test_a_json_body_far_over_the_limit_is_refused_before_parsing(self) -> None:
        body = b'{"image": "' + b"A" * (6 * 1024 * 1024) + b'"}'
        event = api_events.request("POST", "/search", body=body, headers={"Content-Type": "application/json"})
        refused(event, 413, "image_too_large", "/uploads")

    def test_a_stored_object_over_the_image_limit(self, query_api: QueryApi) -> None:
        limit = query_api.settings.max_image_bytes
        query_api.s3.put_object(
            Bucket=query_fixtures.BUCKET, Key="_queries/huge.jpg", Body=b"\xff" * (limit + 1)
        )
        refused(search_json({"s3_key": "_queries/huge.jpg"}), 413, "image_too_large", str(limit))

    @pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
    def test_a_decompression_bomb(self) -> None:
        refused(
            api_events.post_image("/search", png_declaring(10_000, 10_000), content_type="image/png"),
            413,
            "image_too_large",
            "pixels",
        )


@pytest.mark.usefixtures("query_api")
class TestUnsupportedMediaType:
    @pytest.mark.parametrize(
        "content_type", ["text/plain", "application/x-www-form-urlencoded", "image/heic"]
    )
    def test_a_content_type_we_do_not_take(self, content_type: str) -> None:
        event = api_events.request("POST", "/search", body=b"k=1", headers={"Content-Type": content_type})
        refused(
            event,
            415,
            "unsupported_media_type",
            content_type,
            "application/json",
            "image/jpeg",
            "application/octet-stream",
        )

    def test_no_content_type(self) -> None:
        refused(
            api_events.request("POST", "/search", body=b"{}"),
            415,
            "unsupported_media_type",
            "no Content-Type",
        )

    def test_parameters_of_the_media_type_are_ignored(self, query_api: QueryApi) -> None:
        item = query_api.corpus.indexed["rings"]
        body = json.dumps({"id": item.id}).encode()
        headers = {"Content-Type": "Application/JSON; charset=utf-8"}
        answer = api_events.call(
            query.handler, api_events.request("POST", "/search", body=body, headers=headers)
        )
        assert answer.status == 200


class TestUnavailable:
    """The index unreachable or failing: 503 with Retry-After, after the client's own retries."""

    def test_an_index_answering_503_gives_503_with_retry_after(
        self, query_api: QueryApi, opensearch_url: str
    ) -> None:
        with FaultProxy(opensearch_url) as proxy:
            fault = proxy.fail(status=503, times=1000)
            with handler_configured(query_api, opensearch_url=proxy.url):
                for event in (
                    search_json({"id": query_api.corpus.indexed["china"].id}),
                    api_events.get("/health"),
                ):
                    answer = refused(event, 503, "index_unavailable")
                    assert answer.headers["retry-after"] == "5"
            assert fault.injected >= 6  # the transport retried each request before giving up

    def test_an_unreachable_index_gives_503(self, query_api: QueryApi) -> None:
        nothing_listens = "http://127.0.0.1:1"  # connection refused, at once
        with handler_configured(query_api, opensearch_url=nothing_listens):
            answer = refused(
                api_events.post_image("/search", query_api.corpus.queries["china"]), 503, "index_unavailable"
            )
        assert answer.headers["retry-after"] == "5"

    def test_an_unexpected_failure_is_a_generic_500_with_the_request_id(
        self, query_api: QueryApi, opensearch_url: str
    ) -> None:
        event = search_json({"id": query_api.corpus.indexed["china"].id})
        with FaultProxy(opensearch_url) as proxy:
            proxy.fail(
                status=400, times=1000, path_contains="_search"
            )  # OpenSearch calling our query malformed
            with handler_configured(query_api, opensearch_url=proxy.url):
                answer = refused(event, 500, "internal_error")
        request_id = event["requestContext"]["requestId"]  # type: ignore[index]
        assert answer.json["error"]["request_id"] == request_id
        assert request_id in answer.error_message
        for internal in ("fault", "400", "RequestError", "opensearch", "Traceback", query_api.index.name):
            assert internal not in json.dumps(answer.json)

    def test_an_unexpected_failure_is_logged_with_the_request_id(
        self, query_api: QueryApi, opensearch_url: str
    ) -> None:
        event = search_json({"id": query_api.corpus.indexed["china"].id})
        log = io.StringIO()
        with FaultProxy(opensearch_url) as proxy, logged_to(log):
            proxy.fail(status=400, times=1000, path_contains="_search")
            with handler_configured(query_api, opensearch_url=proxy.url):
                api_events.call(query.handler, event)
        entries = [json.loads(line) for line in log.getvalue().splitlines()]
        errors = [entry for entry in entries if entry["message"] == "unexpected error"]
        assert errors[0]["request_id"] == event["requestContext"]["requestId"]  # type: ignore[index]
        assert errors[0]["correlation_id"] == errors[0]["request_id"]
        assert "RequestError" in errors[0]["exception"]


@contextmanager
def logged_to(stream: io.StringIO) -> Iterator[None]:
    """The query handler's JSON log lines go to ``stream`` inside the block."""
    handler = query.logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    previous = handler.setStream(stream)
    try:
        yield
    finally:
        handler.setStream(previous)
