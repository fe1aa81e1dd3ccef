"""What ``POST /search`` accepts is bounded before it costs anything: nesting, sizes and numbers are
refused by their shape, and validation never walks a value it is about to refuse for its size.

``tests/integration/test_api_abuse.py`` sends the same kinds of request through the deployed handler.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

from handlers import api_input
from handlers.request_schema import BoundedSchema
from model.architectures import ARCHITECTURES
from simsearch.errors import InvalidRequestError
from simsearch.search import ImageQuery
from tests import api_events

SEARCH_REQUEST = api_input.DOCUMENT["components"]["schemas"]["SearchRequest"]
DEEP = 100_000


def read(body: bytes, **query: object) -> object:
    event = api_events.request(
        "POST", "/search", body=body, headers={"Content-Type": "application/json"}, query=query or None
    )
    return api_input.search_request(APIGatewayProxyEvent(event))


def refusal(body: bytes, **query: object) -> str:
    with pytest.raises(InvalidRequestError) as raised:
        read(body, **query)
    return str(raised.value)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    "body",
    [
        nested(DEEP),
        b'{"vector": ' + nested(DEEP) + b"}",
        b'{"id": "' + b"0" * 32 + b'", "filter": {"label": ' + nested(DEEP) + b"}}",
    ],
    ids=["the body", "inside vector", "inside filter"],
)
def test_json_nested_deeper_than_the_parser_allows_is_refused_with_the_reason(body: bytes) -> None:
    assert "nests arrays or objects deeper" in refusal(body)


@pytest.mark.parametrize("depth", [50, 900])
def test_a_nested_value_where_a_number_belongs_is_described_not_quoted(depth: int) -> None:
    message = refusal(b'{"vector": [' + nested(depth) + b"]}")
    assert message == "vector.0: an array of 1 item is not of type 'number'"


def test_a_vector_longer_than_the_widest_model_is_refused_by_its_length() -> None:
    body = b'{"vector": [' + b",".join([b"0"] * 2_700_000) + b"]}"
    assert refusal(body) == "vector: has 2700000 items; at most 2048 are allowed"


class Untouchable(list[Any]):
    """A list whose items may not be looked at: validating it item by item fails the test."""

    def __iter__(self) -> Any:
        raise AssertionError("validation iterated the items of a value refused for its size")

    def __getitem__(self, index: Any) -> Any:
        raise AssertionError("validation read an item of a value refused for its size")


def test_validation_never_iterates_a_value_refused_for_its_size() -> None:
    vector = Untouchable()
    vector.extend([0.0] * 3000)  # list.extend on the subclass fills it without calling __iter__ on it
    error = BoundedSchema("SearchRequest", api_input.DOCUMENT["components"]).first_error({"vector": vector})
    assert error is not None
    assert error.message == "has 3000 items; at most 2048 are allowed"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"id": "0" * 32, **{f"x{n}": 1 for n in range(400)}}, "body: has 401 members; at most 8"),
        ({"id": "0" * 32, "filter": {f"x{n}": 1 for n in range(400)}}, "filter: has 400 members; at most 2"),
        ({"id": "a" * 5_000_000}, "id: has 5000000 characters; at most 32"),
        ({"s3_key": "k" * 5000}, "s3_key: has 5000 characters; at most 1024"),
        ({"id": "0" * 32, "filter": {"label": "x" * 300}}, "filter.label: has 300 characters; at most 256"),
    ],
    ids=["members", "filter members", "id", "s3_key", "label"],
)
def test_oversized_objects_and_strings_are_refused_by_their_size(payload: object, expected: str) -> None:
    assert refusal(json.dumps(payload).encode()).startswith(expected)


def test_a_long_string_in_the_wrong_place_is_cut_in_the_message() -> None:
    message = refusal(json.dumps({"id": "0" * 32, "k": "9" * 100_000}).encode())
    assert message.startswith("k: '99999")
    assert "(100000 characters) is not of type 'integer'" in message
    assert len(message) < 200


@pytest.mark.parametrize(("name", "value"), [("k", "1" * 5000), ("min_similarity", "0." + "1" * 5000)])
def test_a_number_in_the_query_string_with_thousands_of_digits_is_refused_by_its_length(
    name: str, value: str
) -> None:
    assert refusal(b'{"id": "' + b"0" * 32 + b'"}', **{name: value}).startswith(f"{name} has ")


def test_every_closed_object_bounds_its_members_by_the_properties_it_lists() -> None:
    schemas = api_input.DOCUMENT["components"]["schemas"]
    for name in ("SearchRequest", "SearchOptions", "Filter"):
        assert schemas[name]["maxProperties"] == len(schemas[name]["properties"]), name


def test_the_vector_bound_is_the_widest_embedding_the_project_builds() -> None:
    """Whitening only narrows a model, so the widest architecture bounds every model we deploy."""
    widest = max(architecture.embedding_dim for architecture in ARCHITECTURES.values())
    assert SEARCH_REQUEST["properties"]["vector"]["maxItems"] == widest


@pytest.mark.parametrize(
    ("body", "query", "expected"),
    [
        (b'{"id": "' + b"0" * 32 + b'"}', {}, False),
        (b'{"id": "' + b"0" * 32 + b'", "collapse_duplicates": true}', {}, True),
        (b'{"id": "' + b"0" * 32 + b'"}', {"collapse_duplicates": "true"}, True),
        (
            b'{"id": "' + b"0" * 32 + b'", "collapse_duplicates": false}',
            {"collapse_duplicates": "true"},
            False,
        ),
    ],
    ids=["default", "body", "query string", "the body wins"],
)
def test_collapse_duplicates_is_read_from_the_body_or_the_query_string(
    body: bytes, query: dict[str, str], expected: bool
) -> None:
    _, options = read(body, **query)  # type: ignore[misc]
    assert options.collapse_duplicates is expected


@pytest.mark.parametrize(
    ("body", "query", "expected"),
    [
        (
            b'{"id": "' + b"0" * 32 + b'"}',
            {"collapse_duplicates": "1"},
            "collapse_duplicates is '1'; it must be true or false",
        ),
        (
            b'{"id": "' + b"0" * 32 + b'", "collapse_duplicates": "true"}',
            {},
            "collapse_duplicates: 'true' is not of type 'boolean'",
        ),
    ],
    ids=["query string", "body"],
)
def test_collapse_duplicates_is_a_boolean(body: bytes, query: dict[str, str], expected: str) -> None:
    assert refusal(body, **query) == expected


def duplicates_threshold(**query: object) -> float | None:
    event = api_events.request("GET", f"/images/{'0' * 32}/duplicates", query=query or None)
    return api_input.duplicates_threshold(APIGatewayProxyEvent(event))


def test_the_duplicates_threshold_is_optional_and_between_0_and_1() -> None:
    assert duplicates_threshold() is None
    assert duplicates_threshold(threshold="0.9") == 0.9
    for raw, message in (
        ("1.01", "threshold: 1.01 is greater than the maximum of 1"),
        ("-0.5", "threshold: -0.5 is less than the minimum of 0"),
        ("nan", "threshold is 'nan'; it must be a number"),
    ):
        with pytest.raises(InvalidRequestError) as raised:
            duplicates_threshold(threshold=raw)
        assert str(raised.value) == message


BASE64_CASES = [
    "aGVsbG8=",  # valid
    "aGVsbG8",  # unpadded
    "aGVs\nbG8=",  # wrapped at a line, as `base64` prints
    "aGVs bG8=",
    "aGVsbG8-",  # the URL-safe alphabet
    "====",
    "ab==",
    "é",
]


@pytest.mark.parametrize("text", BASE64_CASES)
def test_a_json_image_is_decoded_as_the_standard_librarys_strict_base64_would(text: str) -> None:
    try:
        expected: bytes | None = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        expected = None
    body = json.dumps({"image": text}).encode()
    if expected is None:
        assert "image is not valid base64" in refusal(body)
    else:
        query, _ = read(body)  # type: ignore[misc]
        assert query == ImageQuery(data=expected)


@pytest.mark.parametrize("text", ["aGVsbG8=", "aGVs\nbG8=", "ab==", "===="])
def test_a_binary_body_is_decoded_as_the_standard_library_decodes_what_api_gateway_sends(text: str) -> None:
    event = api_events.post_image("/search", b"")
    event.update(body=text, isBase64Encoded=True)
    query, _ = api_input.search_request(APIGatewayProxyEvent(event))
    assert query == ImageQuery(data=base64.b64decode(text))
