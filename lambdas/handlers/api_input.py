"""What the query API accepts: API Gateway requests read into the service's typed queries.

``openapi.json`` (served at ``GET /openapi.json``) is the one description of the request shapes: JSON
bodies and parameters are validated with its schemas, so the API accepts exactly what the document
says. Checks the schemas cannot express get their own messages here: exactly one query input, the
inline size limit, base64, and the content type.
"""

from __future__ import annotations

import binascii
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pybase64

from handlers.request_schema import BoundedSchema
from simsearch.errors import (
    ImageTooLargeError,
    InvalidRequestError,
    UnsupportedMediaTypeError,
)
from simsearch.index import Filters
from simsearch.search import (
    ImageQuery,
    IndexedImageQuery,
    Query,
    SearchOptions,
    StoredImageQuery,
    VectorQuery,
)

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent

DOCUMENT: Final[dict[str, Any]] = json.loads((Path(__file__).parent / "openapi.json").read_text("utf-8"))

JSON_MEDIA_TYPE: Final = "application/json"
RAW_IMAGE_MEDIA_TYPES: Final = tuple(
    media_type
    for media_type in DOCUMENT["paths"]["/search"]["post"]["requestBody"]["content"]
    if media_type != JSON_MEDIA_TYPE
)
"""The body types ``POST /search`` reads as the image itself, as the document lists them. The decoder
tells formats apart by their bytes, so ``application/octet-stream`` (what clients send for a file whose
type they cannot name, e.g. a ``.heic``) is one of them."""

INLINE_IMAGE_MAX_BYTES: Final = 4 * 1024 * 1024
"""Lambda takes at most 6 MB per synchronous request and binary bodies arrive base64-encoded (4/3 of
their size): 4 MiB becomes 5.6 MB, which leaves room for the headers. Larger images go through /uploads."""

_INLINE_BODY_MAX_CHARS: Final = 4 * math.ceil(INLINE_IMAGE_MAX_BYTES / 3) + 64 * 1024  # base64 + JSON
_QUERY_FIELDS: Final = ("image", "s3_key", "id", "vector")
_OPTION_FIELDS: Final = ("k", "filter", "min_similarity", "collapse_duplicates")
_NUMBER_MAX_CHARS: Final = 32  # k has 3 digits at most; min_similarity needs no more than float64 gives
_INTEGER: Final = re.compile(r"-?[0-9]+")
_NUMBER: Final = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_BOOLEANS: Final = {"true": True, "false": False}
_MAX_MESSAGE_CHARS: Final = 300


_VALIDATORS: Final = {
    name: BoundedSchema(name, DOCUMENT["components"])
    for name in ("SearchRequest", "SearchOptions", "ImageId", "DuplicatesOptions")
}


def search_request(event: APIGatewayProxyEvent) -> tuple[Query, SearchOptions]:
    """The query and options of ``POST /search``: a raw image body, or a JSON body.

    Raises:
        UnsupportedMediaTypeError: the body is neither JSON nor an accepted image type.
        ImageTooLargeError: the inline image is over ``INLINE_IMAGE_MAX_BYTES``.
        InvalidRequestError: invalid JSON or base64, a bad parameter, not exactly one query input.
    """
    media_type = _media_type(event)
    parameters = _query_parameters(event)
    if media_type in RAW_IMAGE_MEDIA_TYPES:
        return ImageQuery(data=_inline_image(_body(event))), _options(parameters)
    if media_type != JSON_MEDIA_TYPE:
        accepted = ", ".join((JSON_MEDIA_TYPE, *RAW_IMAGE_MEDIA_TYPES))
        received = f"Content-Type {media_type!r}" if media_type else "no Content-Type"
        raise UnsupportedMediaTypeError(f"POST /search received {received}; send one of {accepted}")
    payload = _json_object(event)
    merged: dict[str, Any] = {
        **parameters,
        **{name: payload[name] for name in _OPTION_FIELDS if name in payload},
    }
    if "filter" in parameters and "filter" in payload:
        merged["filter"] = {**parameters["filter"], **payload["filter"]}
    return _query(payload), _options(merged)  # where both give a parameter, the body's value wins


def allowed_methods(path: str) -> list[str]:
    """The methods the document lists for ``path`` (empty when no route has that path)."""
    for template, operations in DOCUMENT["paths"].items():
        pattern = re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            return sorted(method.upper() for method in operations)
    return []


def image_id(raw: str) -> str:
    """A path parameter that must look like an image id (an unknown one is a 404 later)."""
    _validate("ImageId", raw, where="id")
    return raw


def duplicates_threshold(event: APIGatewayProxyEvent) -> float | None:
    """``threshold`` from the query string of ``GET /images/{id}/duplicates`` (None: the default)."""
    raw = event.query_string_parameters
    parameters: dict[str, Any] = {}
    if "threshold" in raw:
        parameters["threshold"] = _parsed("threshold", raw["threshold"], _NUMBER, float)
    _validate("DuplicatesOptions", parameters, where="query string")
    return parameters.get("threshold")


def _media_type(event: APIGatewayProxyEvent) -> str:
    """``image/jpeg`` from ``Image/JPEG; charset=...``; empty when the header is missing."""
    header = event.headers.get("content-type") or ""
    return header.split(";", 1)[0].strip().lower()


def _body(event: APIGatewayProxyEvent) -> bytes:
    """The body's bytes: API Gateway base64-encodes the binary media types it is configured with.

    ``pybase64`` decodes by the standard library's rules (and raises its errors) with SIMD. What API
    Gateway sends is strict base64, which its validating decoder reads fastest: a 100 KB image in
    ~0.01 ms, 4 MB in ~0.4 ms, where the standard library takes ~0.5 and ~20 ms. Anything else is read
    leniently, as ``base64.b64decode`` would.
    """
    body = event.body or ""
    if event.is_base64_encoded:
        try:
            return pybase64.b64decode(body, validate=True)
        except binascii.Error:
            return pybase64.b64decode(body)
    return body.encode("utf-8", "surrogatepass")  # json.loads then names bad UTF-8


def _inline_image(data: bytes) -> bytes:
    if len(data) > INLINE_IMAGE_MAX_BYTES:
        raise ImageTooLargeError(
            f"the inline image is {len(data)} bytes; at most {INLINE_IMAGE_MAX_BYTES} bytes can be sent "
            "inline. Upload larger images with POST /uploads and search with their s3_key"
        )
    return data


def _json_object(event: APIGatewayProxyEvent) -> dict[str, Any]:
    body = _body(event)
    if len(body) > _INLINE_BODY_MAX_CHARS:
        raise ImageTooLargeError(
            f"the JSON body is {len(body)} bytes; at most {_INLINE_BODY_MAX_CHARS} are accepted. "
            "Upload large images with POST /uploads and search with their s3_key"
        )
    try:
        payload = json.loads(body)
    except ValueError as error:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8
        raise InvalidRequestError(f"the body is not valid JSON: {error}") from error
    except RecursionError as error:  # the parser's own depth limit, reached in microseconds
        raise InvalidRequestError(
            "the body nests arrays or objects deeper than the JSON parser allows; a search request "
            'nests two levels at most, as in {"filter": {"label": "cats"}}'
        ) from error
    if not isinstance(payload, dict):
        raise InvalidRequestError(f"the body must be a JSON object, not a JSON {type(payload).__name__}")
    given = [name for name in _QUERY_FIELDS if name in payload]
    if len(given) != 1:
        raise InvalidRequestError(f"give exactly one of {', '.join(_QUERY_FIELDS)}; the body has {given}")
    _validate("SearchRequest", payload, where="body")
    return payload


def _query(payload: dict[str, Any]) -> Query:
    if "image" in payload:
        return ImageQuery(data=_inline_image(_base64(payload["image"])))
    if "s3_key" in payload:
        return StoredImageQuery(key=_text("s3_key", payload["s3_key"]))
    if "id" in payload:
        return IndexedImageQuery(image_id=payload["id"])
    return VectorQuery(values=payload["vector"])


def _base64(text: str) -> bytes:
    try:
        return pybase64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidRequestError(
            f"image is not valid base64 (standard alphabet, padded): {error}"
        ) from error


def _query_parameters(event: APIGatewayProxyEvent) -> dict[str, Any]:
    """``k``, ``min_similarity``, ``collapse_duplicates``, ``label`` and ``prefix`` from the query string,
    shaped as in a JSON body."""
    raw = event.query_string_parameters
    parameters: dict[str, Any] = {}
    if "k" in raw:
        parameters["k"] = _parsed("k", raw["k"], _INTEGER, int)
    if "min_similarity" in raw:
        parameters["min_similarity"] = _parsed("min_similarity", raw["min_similarity"], _NUMBER, float)
    if "collapse_duplicates" in raw:
        parameters["collapse_duplicates"] = _boolean("collapse_duplicates", raw["collapse_duplicates"])
    selected = {name: raw[name] for name in ("label", "prefix") if name in raw}
    if selected:
        parameters["filter"] = selected
    _validate("SearchOptions", parameters, where="query string")
    return parameters


def _parsed(name: str, raw: str, pattern: re.Pattern[str], kind: type[int] | type[float]) -> int | float:
    if len(raw) > _NUMBER_MAX_CHARS:  # int() of thousands of digits is slow, and refused past 4300
        raise InvalidRequestError(
            f"{name} has {len(raw)} characters; a number here has at most {_NUMBER_MAX_CHARS}"
        )
    if not pattern.fullmatch(raw):
        raise InvalidRequestError(
            f"{name} is {raw!r}; it must be a{'n integer' if kind is int else ' number'}"
        )
    value = kind(raw)
    if not math.isfinite(value):
        raise InvalidRequestError(f"{name} is {raw!r}; it must be a finite number")
    return value


def _boolean(name: str, raw: str) -> bool:
    if raw not in _BOOLEANS:
        raise InvalidRequestError(f"{name} is {raw[:_NUMBER_MAX_CHARS]!r}; it must be true or false")
    return _BOOLEANS[raw]


def _options(parameters: dict[str, Any]) -> SearchOptions:
    """``SearchOptions`` from validated parameters; absent ones keep the defaults."""
    options: dict[str, Any] = {}
    if "k" in parameters:
        options["k"] = int(parameters["k"])  # JSON may say 10.0, which the schema accepts as an integer
    if "min_similarity" in parameters:
        options["min_similarity"] = float(parameters["min_similarity"])
    if "collapse_duplicates" in parameters:
        options["collapse_duplicates"] = parameters["collapse_duplicates"]
    if selected := parameters.get("filter"):
        label, prefix = selected.get("label"), selected.get("prefix")
        options["filters"] = Filters(
            label=None if label is None else _text("label", label),
            key_prefix=None if prefix is None else _text("prefix", prefix),
        )
    return SearchOptions(**options)


def _text(name: str, value: str) -> str:
    """``value`` if it can be sent on as UTF-8 (JSON escapes can carry unpaired surrogates)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidRequestError(f"{name} contains an unpaired surrogate ({error.reason})") from error
    return value


def _validate(schema: str, instance: object, *, where: str) -> None:
    """Raise ``InvalidRequestError`` naming the most relevant problem jsonschema finds, if any."""
    error = _VALIDATORS[schema].first_error(instance)
    if error is None:
        return
    path = ".".join(str(part) for part in error.absolute_path)
    message = error.message
    if len(message) > _MAX_MESSAGE_CHARS:  # unknown property names are quoted, and may be long
        message = message[:_MAX_MESSAGE_CHARS] + "…"
    raise InvalidRequestError(f"{path or where}: {message}")
