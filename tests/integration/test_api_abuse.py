"""The abuse suite: generated hostile requests against the deployed query handler and the local gateway.

Each request must be refused with a 4xx and the API's JSON error (no traceback, no path) within
``BOUND_S`` seconds, a bound meant to catch work that grows with the input (seconds, not a benchmark on
a shared machine), and the API must answer normally afterwards. The requests are generated from five
families: nesting, sizes, encodings, numbers at the limits, and, against the gateway only, HTTP framing
and header games sent byte for byte.

The module also checks, through the real handler, the answers a hostile request must not change: raw
TIFF and BMP bodies are searched, and vectors of any finite magnitude rank by their direction's cosine.
"""

from __future__ import annotations

import http.client
import io
import json
import math
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from handlers import query
from handlers.api_input import INLINE_IMAGE_MAX_BYTES
from handlers.gateway import HEAD_MAX_BYTES
from localmode.api_gateway import MAX_BODY_BYTES, running
from localmode.harness import deployed, local_settings
from simsearch.index.embedded import EmbeddedIndex
from simsearch.manifest import ModelManifest
from tests import api_events
from tests.image_factories import encode, photo
from tests.index_factories import document

BOUND_S = 5.0
READ_TIMEOUT_S = 1.0  # the gateway's, for the requests that announce more than they send
UNKNOWN_ID = "f" * 32  # the query of requests that are otherwise valid: they end in a 404
DIM = 1280  # MobileNetV2's embedding
INTERNALS = ("Traceback", 'File "', "/work/", "site-packages", ".py", "RecursionError")


@dataclass(frozen=True)
class Hostile:
    """One hostile request, as a client would send it."""

    name: str
    method: str = "POST"
    target: str = "/search"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    body: bytes = b""


def nested(depth: int, *, kind: str = "array") -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"1" + b"}" * depth


def with_query(inner: bytes, *, place: str) -> bytes:
    """``inner`` (raw JSON) at ``place`` of an otherwise valid request."""
    if place == "body":
        return inner
    if place in ("vector", "id", "s3_key", "image"):
        return b'{"' + place.encode() + b'": ' + inner + b"}"
    if place in ("label", "prefix"):
        return (
            b'{"id": "' + UNKNOWN_ID.encode() + b'", "filter": {"' + place.encode() + b'": ' + inner + b"}}"
        )
    return b'{"id": "' + UNKNOWN_ID.encode() + b'", "' + place.encode() + b'": ' + inner + b"}"


def json_request(name: str, payload: object) -> Hostile:
    return Hostile(name, body=json.dumps(payload, allow_nan=True).encode())


def nesting() -> Iterator[Hostile]:
    for depth in (10, 100, 1_000, 10_000, 100_000):
        for kind in ("array", "object"):
            for place in ("body", "vector", "label", "k", "filter", "min_similarity", "id"):
                yield Hostile(
                    f"{kind} nested {depth} deep in {place}",
                    body=with_query(nested(depth, kind=kind), place=place),
                )


def sizes() -> Iterator[Hostile]:
    for items in (0, DIM + 1, 2049, 100_000, 2_700_000):
        yield Hostile(f"vector of {items} items", body=b'{"vector": [' + b",".join([b"0"] * items) + b"]}")
    for place, length in (
        ("id", 33),
        ("id", 5_000_000),
        ("s3_key", 1025),
        ("s3_key", 3_000_000),
        ("label", 257),
        ("prefix", 1_000_000),
    ):
        yield Hostile(
            f"{place} of {length} characters", body=with_query(json.dumps("a" * length).encode(), place=place)
        )
    for members in (8, 100_000):
        body = {"id": UNKNOWN_ID, **{f"m{n}": n for n in range(members)}}
        yield json_request(f"an object of {members} members", body)
    yield json_request(
        "a filter of 100000 members", {"id": UNKNOWN_ID, "filter": {f"f{n}": "x" for n in range(100_000)}}
    )
    yield Hostile("a JSON body over the limit", body=b'{"image": "' + b"A" * (6 * 1024 * 1024) + b'"}')
    yield Hostile(
        "a raw image over the inline limit",
        headers={"Content-Type": "image/jpeg"},
        body=b"\xff" * (INLINE_IMAGE_MAX_BYTES + 1),
    )
    yield Hostile("an empty JSON body")
    yield Hostile("an empty image body", headers={"Content-Type": "image/png"})


def encodings() -> Iterator[Hostile]:
    yield Hostile("bytes that are not UTF-8", body=b'{"s3_key": "\xff\xfe\xc3\x28"}')
    yield Hostile("UTF-16 JSON", body='{"id": "ffffffffffffffffffffffffffffffff"}'.encode("utf-16"))
    yield Hostile("a NUL in the body", body=b'{"s3_key": "a\x00b"}')
    for place in ("s3_key", "label", "prefix", "id", "image"):
        yield Hostile(f"an unpaired surrogate in {place}", body=with_query(b'"\\ud800x"', place=place))
        yield Hostile(f"an escaped NUL in {place}", body=with_query(b'"\\u0000"', place=place))
    yield json_request("url-safe base64", {"image": "-_-_" * 10})
    yield json_request("base64 with spaces", {"image": "QUJD REVG"})
    yield json_request("base64 of text", {"image": "aGVsbG8sIHdvcmxk"})
    yield json_request("a key that climbs out", {"s3_key": "../../../../etc/passwd"})
    yield json_request("a key of another bucket", {"s3_key": "s3://other-bucket/secret.jpg"})
    for content_type in (
        "text/plain",
        "application/json, image/png",
        "image/svg+xml",
        "multipart/form-data; boundary=x",
        "",
    ):
        yield Hostile(f"Content-Type {content_type!r}", headers={"Content-Type": content_type}, body=b"{}")
    yield Hostile("JSON sent as an image", headers={"Content-Type": "image/png"}, body=b'{"id": "x"}')
    yield Hostile(
        "an SVG sent as an image",
        headers={"Content-Type": "image/png"},
        body=b'<svg xmlns="http://www.w3.org/2000/svg"/>',
    )


def numbers() -> Iterator[Hostile]:
    raw_values = [
        b"0",
        b"101",
        b"-1",
        b"1.5",
        b"1e308",
        b"1e400",
        b"-1e400",
        b"1e-400",
        b"NaN",
        b"Infinity",
        b"-Infinity",
        b"true",
        b"null",
        b'"5"',
        b"1" * 4000,
        b"1" * 5000,
    ]
    for value in raw_values:
        for place in ("k", "min_similarity"):
            yield Hostile(f"{place} = {value[:12].decode()}", body=with_query(value, place=place))
    for value in (b"NaN", b"Infinity", b"1e400", b"1" * 400, b"-0.0", b"1e-400", b"true", b'"1"', b"null"):
        body = b'{"vector": [' + b",".join([value] * DIM) + b"]}"
        yield Hostile(f"a vector of {value[:12].decode()}", body=body)
    for name, value in (
        ("k", "1" * 5000),
        ("k", "ten"),
        ("k", "1e3"),
        ("k", ""),
        ("k", "１"),
        ("min_similarity", "nan"),
        ("min_similarity", "inf"),
        ("min_similarity", "0." + "1" * 5000),
        ("label", "x" * 5000),
    ):
        yield Hostile(
            f"{name}={value[:12]!r} in the query string",
            target=f"/search?{name}={value}",
            body=json.dumps({"id": UNKNOWN_ID}).encode(),
        )


def routes() -> Iterator[Hostile]:
    for method, target in (
        ("DELETE", "/search"),
        ("GET", "/search"),
        ("PUT", "/health"),
        ("GET", "/images/../../etc/passwd"),
        ("GET", "/images/%00"),
        ("GET", f"/images/{'a' * 5000}"),
        ("TRACE", "/health"),
        ("GET", "/nothing"),
    ):
        yield Hostile(f"{method} {target[:30]}", method=method, target=target, headers={})


HOSTILE = [*nesting(), *sizes(), *encodings(), *numbers(), *routes()]


@dataclass(frozen=True)
class Api:
    url: str


@pytest.fixture(scope="module")
def api(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The handlers deployed on an embedded index holding two known vectors, and the local gateway."""
    index_path = tmp_path_factory.mktemp("abuse") / "index.sqlite"
    manifest = ModelManifest.load(model_dir)
    with deployed(local_settings(model_dir=model_dir, index_path=index_path), quiet=True) as deployment:
        deployment.cold_start("ingest")  # creates the index
        index = EmbeddedIndex.open(index_path, prefix="images", model_id=manifest.model_id, dim=DIM)
        index.upsert([document("known/e0.jpg", E0), document("known/half.jpg", HALF)])
        index.close()
        with running(query.handler, read_timeout_s=READ_TIMEOUT_S) as server:
            yield Api(url=server.url)


E0 = np.eye(1, DIM, dtype=np.float32)[0]
HALF = np.concatenate([np.ones(DIM // 2), np.zeros(DIM // 2)]).astype(np.float32)  # 45° from (1, ..., 1)


def refused_quickly(status: int, body: bytes, seconds: float) -> None:
    assert seconds < BOUND_S, f"took {seconds:.1f} s"
    assert 400 <= status < 500, (status, body[:300])
    payload = json.loads(body)
    assert set(payload) == {"error"} and {"code", "message"} <= set(payload["error"]), payload
    text = json.dumps(payload)
    assert not [word for word in INTERNALS if word in text], text[:300]


@pytest.mark.usefixtures("api")
@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda h: h.name)
def test_the_handler_refuses_each_hostile_request_in_bounded_time(hostile: Hostile) -> None:
    event = api_events.request(hostile.method, hostile.target, body=hostile.body, headers=hostile.headers)
    started = time.monotonic()
    answer = api_events.call(query.handler, event)
    refused_quickly(answer.status, json.dumps(answer.json).encode(), time.monotonic() - started)


@pytest.mark.parametrize("hostile", HOSTILE, ids=lambda h: h.name)
def test_the_local_gateway_refuses_each_hostile_request_in_bounded_time(api: Api, hostile: Hostile) -> None:
    started = time.monotonic()
    response = requests.request(
        hostile.method, f"{api.url}{hostile.target}", data=hostile.body, headers=hostile.headers, timeout=30
    )
    refused_quickly(response.status_code, response.content, time.monotonic() - started)


def post(head: str, body: bytes = b"") -> bytes:
    return f"POST /search HTTP/1.1\r\nHost: x\r\n{head}\r\n".encode() + body


HEALTH = "GET /health HTTP/1.1\r\nHost: x\r\n"
HEADER_GAMES = {
    "Content-Length: abc": post("Content-Length: abc\r\n", b"{}"),
    "Content-Length: 1e3": post("Content-Length: 1e3\r\n", b"{}"),
    "Content-Length: -1": post("Content-Length: -1\r\n", b"{}"),
    "Content-Length: +2": post("Content-Length: +2\r\n", b"{}"),
    "Content-Length: 0x2": post("Content-Length: 0x2\r\n", b"{}"),
    "Content-Length of 30 digits": post(f"Content-Length: {'9' * 30}\r\n", b"{}"),
    "two Content-Lengths that disagree": post("Content-Length: 2\r\nContent-Length: 7\r\n", b"{}"),
    "Content-Length and chunked": post("Content-Length: 2\r\nTransfer-Encoding: chunked\r\n", b"{}"),
    "Content-Length larger than the body": post(
        "Content-Length: 100\r\nContent-Type: application/json\r\n", b"{}"
    ),
    "a declared body over the quota": post(f"Content-Length: {MAX_BODY_BYTES + 1}\r\n"),
    "a chunk size that is not hex": post("Transfer-Encoding: chunked\r\n", b"zz\r\n{}\r\n0\r\n\r\n"),
    "Transfer-Encoding: gzip": post("Transfer-Encoding: gzip\r\n", b"{}"),
    "a chunked body left unfinished": post("Transfer-Encoding: chunked\r\n", b"10\r\n{}"),
    "a request line over the quota": f"GET /{'a' * HEAD_MAX_BYTES} HTTP/1.1\r\nHost: x\r\n\r\n".encode(),
    "headers over the quota": (HEALTH + f"X-A: {'a' * HEAD_MAX_BYTES}\r\n\r\n").encode(),
    "a megabyte of headers": (HEALTH + f"X-A: {'a' * 1_000_000}\r\n\r\n").encode(),
    "two thousand headers": (HEALTH + "X-A: a\r\n" * 2000 + "\r\n").encode(),
    "a header without a colon": b"GET /health HTTP/1.1\r\nHost: x\r\nnonsense\r\n\r\n",
    "a NUL in a header": b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "a space before the colon": b"GET /health HTTP/1.1\r\nHost : x\r\n\r\n",
    "no Host": b"GET /health HTTP/1.1\r\n\r\n",
    "HTTP/2's preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "a TLS ClientHello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    "a method with a slash": b"GE/T /health HTTP/1.1\r\nHost: x\r\n\r\n",
}


def exchange(api: Api, request: bytes) -> tuple[int, bytes, float]:
    started = time.monotonic()
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(request)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response.status, response.read(), time.monotonic() - started


@pytest.mark.parametrize("request_bytes", HEADER_GAMES.values(), ids=HEADER_GAMES.keys())
def test_the_local_gateway_answers_header_games_with_a_json_error(api: Api, request_bytes: bytes) -> None:
    status, body, seconds = exchange(api, request_bytes)
    if status == 501:  # a transfer-coding other than chunked: h11's hint, in our shape
        status = 400
    refused_quickly(status, body, seconds)


def test_the_api_answers_normally_after_the_abuse(api: Api) -> None:
    """Runs after the suites above (pytest keeps the order of a module's tests)."""
    health = requests.get(f"{api.url}/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["documents"] == 2
    search = requests.post(f"{api.url}/search", json={"vector": E0.tolist(), "k": 1}, timeout=30)
    assert search.json()["results"][0]["key"] == "known/e0.jpg"


@pytest.mark.usefixtures("api")
@pytest.mark.parametrize("image_format", ["TIFF", "BMP"])
def test_raw_tiff_and_bmp_bodies_are_searched(image_format: str) -> None:
    """Once refused with 415 though the decoder reads them; the formats table (``simsearch.formats``)
    fixed that, and this holds it through the handler."""
    data = encode(Image.open(io.BytesIO(photo(3))), image_format)
    media_type = f"image/{image_format.lower()}"
    answer = api_events.call(query.handler, api_events.post_image("/search", data, content_type=media_type))
    assert answer.status == 200, answer.json
    assert len(answer.json["results"]) == 2


@pytest.mark.usefixtures("api")
@pytest.mark.parametrize("magnitude", [3e38, 1e-45, 1e300, 1e-300], ids=str)
def test_a_vector_of_any_finite_magnitude_ranks_by_its_cosine(magnitude: float) -> None:
    """The query (1, ..., 1): its cosine with e0 is 1/√1280, with the half-ones vector √½."""
    body = b'{"vector": [' + b",".join([repr(magnitude).encode()] * DIM) + b'], "k": 2}'
    event = api_events.request("POST", "/search", body=body, headers={"Content-Type": "application/json"})
    answer = api_events.call(query.handler, event)
    assert answer.status == 200, answer.json
    similarities = {result["key"]: result["similarity"] for result in answer.json["results"]}
    assert similarities == {
        "known/half.jpg": pytest.approx(math.sqrt(0.5), abs=1e-4),
        "known/e0.jpg": pytest.approx(1 / math.sqrt(DIM), abs=1e-4),
    }
