"""The error table: each error class gets its status and the one JSON error shape, through a real resolver."""

from __future__ import annotations

import io
import json
import logging
import uuid
from http import HTTPStatus
from typing import Any

import pytest
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from handlers import http_errors
from simsearch import errors
from tests import api_events
from tests.api_events import Answer

EXPECTED = [
    (errors.InvalidRequestError, 400),
    (errors.InvalidImageError, 400),
    (errors.UnsupportedImageError, 400),
    (errors.InvalidVectorError, 400),
    (errors.NotFoundError, 404),
    (errors.ImageTooLargeError, 413),
    (errors.UnsupportedMediaTypeError, 415),
    (errors.IndexUnavailableError, 503),
    (errors.StorageUnavailableError, 503),
]


class Raiser:
    """A resolver whose only route raises the exception it is given: the table, and nothing else, decides."""

    def __init__(self) -> None:
        self.log = io.StringIO()  # a fresh Logger name each time: Powertools keeps the first handler per name
        self.app = APIGatewayRestResolver()
        http_errors.register(
            self.app,
            logger=Logger(service=f"test-{uuid.uuid4().hex}", logger_handler=logging.StreamHandler(self.log)),
            allowed_methods=lambda path: ["GET"] if path == "/raise" else [],
        )
        self.error: Exception = RuntimeError("unset")

        @self.app.get("/raise")
        def raise_it() -> dict[str, Any]:
            raise self.error

    def answer(self, error: Exception, *, path: str = "/raise", method: str = "GET") -> Answer:
        self.error = error
        return api_events.call(self.app.resolve, api_events.request(method, path))

    def logged(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]


@pytest.fixture
def raiser() -> Raiser:
    return Raiser()


@pytest.mark.parametrize(("error_class", "status"), EXPECTED)
def test_each_error_class_has_its_status_code_and_message(
    raiser: Raiser, error_class: type[errors.SimsearchError], status: int
) -> None:
    answer = raiser.answer(error_class("what was wrong, and what is allowed"))
    assert answer.status == status
    assert answer.json == {
        "error": {"code": error_class.code, "message": "what was wrong, and what is allowed"}
    }
    assert answer.headers["content-type"] == "application/json"


@pytest.mark.parametrize("error_class", [errors.IndexUnavailableError, errors.StorageUnavailableError])
def test_a_503_tells_the_client_when_to_retry(
    raiser: Raiser, error_class: type[errors.SimsearchError]
) -> None:
    answer = raiser.answer(error_class("the index did not answer"))
    assert answer.headers["retry-after"] == str(http_errors.RETRY_AFTER_SECONDS)


def test_other_statuses_carry_no_retry_after(raiser: Raiser) -> None:
    assert "retry-after" not in raiser.answer(errors.NotFoundError("no such image")).headers


@pytest.mark.parametrize(
    "error",
    [
        KeyError("vector"),
        errors.ConfigError("access to s3://images/x denied (AccessDenied); check the function's role"),
        ZeroDivisionError("division by zero at /var/task/simsearch/search.py"),
    ],
)
def test_anything_unexpected_is_a_generic_500_with_the_request_id_and_no_internals(
    raiser: Raiser, error: Exception
) -> None:
    event = api_events.request("GET", "/raise")
    raiser.error = error
    answer = api_events.call(raiser.app.resolve, event)
    request_id = event["requestContext"]["requestId"]
    assert answer.status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert answer.json["error"]["code"] == "internal_error"
    assert answer.json["error"]["request_id"] == request_id
    assert str(error) not in answer.error_message
    assert type(error).__name__ not in answer.error_message
    (logged,) = [entry for entry in raiser.logged() if entry["message"] == "unexpected error"]
    assert logged["request_id"] == request_id
    assert type(error).__name__ in logged["exception"]


def test_an_unknown_route_is_a_404_in_the_same_shape(raiser: Raiser) -> None:
    answer = raiser.answer(RuntimeError("unused"), path="/nowhere", method="POST")
    assert answer.status == 404
    assert answer.json["error"]["code"] == "not_found"
    assert "POST /nowhere" in answer.error_message


def test_a_known_path_with_another_method_is_a_405_with_allow(raiser: Raiser) -> None:
    answer = raiser.answer(RuntimeError("unused"), method="DELETE")
    assert (answer.status, answer.json["error"]["code"]) == (405, "method_not_allowed")
    assert answer.headers["allow"] == "GET"


def test_a_refused_request_is_logged_with_its_code_but_no_body(raiser: Raiser) -> None:
    raiser.answer(errors.InvalidImageError("the 12 bytes are not a complete image"))
    (logged,) = [entry for entry in raiser.logged() if entry["message"] == "request refused"]
    assert (logged["status"], logged["code"]) == (400, "invalid_image")
