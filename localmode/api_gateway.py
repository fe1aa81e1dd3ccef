"""A local stand-in for API Gateway: HTTP requests in, REST proxy events to a Lambda handler, responses out.

The server calls the very ``handlers.query.handler`` that runs in AWS, so local mode has no second
implementation of the API. Each request becomes the event an API Gateway REST API sends to a Lambda
proxy integration (payload format 1.0): bodies of the binary media types arrive base64-encoded with
``isBase64Encoded``, headers and query strings come as single- and multi-value maps.

Requests reach the handler one at a time, as they would reach one Lambda container: Powertools'
resolver keeps the current event on the app object, so two concurrent calls would see each other's.

HTTP/1.1 is read by h11, which is strict where ``http.server`` was lenient: a Content-Length that is not
digits, or two that disagree, is a 400; a head larger than its buffer is a 431. What API Gateway refuses
before any function runs (a payload over 10 MB, a request line and headers over 10 KB) is refused here
from the head, before a body byte is read. Every read times out, so a client announcing more than it
sends gets a 408 instead of holding a thread. Every answer the gateway gives itself has the API's JSON
error shape, and no answer names the server. (Rather than h11 under a loop of our own, waitress answers
malformed requests with plain-text pages of its own and cannot be stopped from another thread through
its public API; uvicorn puts no timeout on reading a body and answers every parse error with the same
plain-text 400.)

    PYTHONPATH=lambdas python -m localmode.api_gateway --port 8000   # SIMSEARCH_* variables configure it
"""

from __future__ import annotations

import argparse
import base64
import errno
import json
import logging
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from fnmatch import fnmatch
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

from handlers.gateway import BINARY_MEDIA_TYPES, HEAD_MAX_BYTES, PAYLOAD_MAX_BYTES
from handlers.http_errors import error_body
from localmode.ports import PortInUseError, ensure_free

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = PAYLOAD_MAX_BYTES
"""API Gateway refuses larger payloads itself; Lambda's 6 MB limit is the handler's to explain."""

READ_TIMEOUT_S = 10.0
"""How long a read from a client may wait: a request left incomplete this long is answered 408 and closed."""

RECEIVE_BYTES = 64 * 1024
PARSER_BUFFER_BYTES = 64 * 1024
"""h11 answers 431 for a request head larger than this before it is parsed; smaller heads over API
Gateway's ``HEAD_MAX_BYTES`` are measured and refused here, with the same answer and a precise message."""

STAGE = "local"
API_ROLE = "the API server"

LambdaHandler = Callable[[dict[str, Any], Any], Mapping[str, Any]]


@dataclass(frozen=True, kw_only=True)
class LocalContext:
    """The Lambda context attributes that handlers and Powertools read, of ``simsearch-<function>-local``.

    One per invocation: ``aws_request_id`` is fresh unless given. The defaults are the query function's
    (``localmode.harness.ingest_context`` gives the ingest function's).
    """

    function: str = "query"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 3008
    log_stream_name: str = "local"
    timeout_ms: int = 30_000  # API Gateway's integration timeout

    @property
    def function_name(self) -> str:
        return f"simsearch-{self.function}-local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:000000000000:function:{self.function_name}"

    @property
    def log_group_name(self) -> str:
        return f"/aws/lambda/{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return self.timeout_ms


def proxy_event(
    *, method: str, target: str, headers: Sequence[tuple[str, str]], body: bytes, source_ip: str
) -> dict[str, Any]:
    """The REST API proxy event for one HTTP request (``target`` is the request line's path and query)."""
    url = urlsplit(target)
    path = url.path or "/"  # REST APIs keep the path percent-encoded; path parameters arrive decoded
    multi_headers = _multi(headers)
    multi_query = _multi(parse_qsl(url.query, keep_blank_values=True))
    content_type = next((v for n, v in headers if n.lower() == "content-type"), "")
    binary = _is_binary(content_type)
    request_id = str(uuid.uuid4())
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": _last(multi_headers),
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": _last(multi_query),
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": {"proxy": unquote(path.lstrip("/"))},
        "stageVariables": None,
        "requestContext": {
            "requestId": request_id,
            "extendedRequestId": request_id,
            "stage": STAGE,
            "path": f"/{STAGE}{path}",
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "protocol": "HTTP/1.1",
            "apiId": "local",
            "accountId": "000000000000",
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {"sourceIp": source_ip, "userAgent": multi_headers.get("User-Agent", [""])[-1]},
        },
        # API Gateway passes text bodies as they are (invalid UTF-8 gets replaced) and binary ones in base64
        "body": (base64.b64encode(body).decode() if binary else body.decode("utf-8", "replace"))
        if body
        else None,
        "isBase64Encoded": binary and bool(body),
    }


def _multi(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for name, value in pairs:
        values.setdefault(name, []).append(value)
    return values


def _last(values: Mapping[str, list[str]]) -> dict[str, str] | None:
    """API Gateway's single-value maps keep the last value; null when there is nothing."""
    return {name: items[-1] for name, items in values.items()} or None


def _is_binary(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return bool(media_type) and any(fnmatch(media_type, pattern) for pattern in BINARY_MEDIA_TYPES)


class ApiGatewayServer(socketserver.ThreadingTCPServer):
    """An HTTP server that hands every request to ``handler`` as API Gateway would (one thread per client)."""

    daemon_threads = True
    allow_reuse_address = True  # a restarted stack may bind while old connections wait out TIME_WAIT

    def __init__(
        self, address: tuple[str, int], handler: LambdaHandler, *, read_timeout_s: float = READ_TIMEOUT_S
    ) -> None:
        try:
            super().__init__(address, _Exchange)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise PortInUseError(host=address[0], port=address[1], role=API_ROLE) from error
            raise
        self._handler = handler
        self._one_at_a_time = threading.Lock()
        self.read_timeout_s = read_timeout_s

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def invoke(self, event: dict[str, Any]) -> Mapping[str, Any]:
        """Call the handler; a crash becomes API Gateway's own answer to a failed integration."""
        context = LocalContext()
        with self._one_at_a_time:
            try:
                return self._handler(event, context)
            except Exception:
                logger.exception("the Lambda handler raised; answering 502 as API Gateway does")
                return {
                    "statusCode": 502,
                    "headers": {"Content-Type": "application/json"},
                    "body": '{"message": "Internal server error"}',
                }


class _Refused(Exception):
    """A request the gateway answers itself, before (or instead of) reading its body."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Exchange(socketserver.BaseRequestHandler):
    """One client connection: requests read by h11 and answered one after another until either side closes."""

    server: ApiGatewayServer
    request: socket.socket

    def handle(self) -> None:
        self.request.settimeout(self.server.read_timeout_s)
        http = h11.Connection(h11.SERVER, max_incomplete_event_size=PARSER_BUFFER_BYTES)
        try:
            while self._answer_one(http):
                http.start_next_cycle()
        except OSError as error:  # the client reset the connection or stopped reading the answer
            logger.debug("connection from %s ended: %s", self.client_address[0], error)

    def _answer_one(self, http: h11.Connection) -> bool:
        """Read one request and answer it; True when the connection may carry another."""
        head = False
        try:
            request = self._next_event(http)
            if not isinstance(request, h11.Request):  # the client closed the connection
                return False
            head = request.method == b"HEAD"
            _check_size(request)
            body = self._body(http)
        except TimeoutError:
            if http.their_state is h11.IDLE and not http.trailing_data[0]:
                return False  # an idle keep-alive connection, not a request left half-sent
            self._send(http, _refusal(HTTPStatus.REQUEST_TIMEOUT, _TIMEOUT_MESSAGE), head=False)
            return False
        except h11.RemoteProtocolError as error:
            status = HTTPStatus(error.error_status_hint)
            self._send(http, _refusal(status, f"the request is not valid HTTP/1.1: {error}"), head=False)
            return False
        except _Refused as refusal:
            self._send(http, _refusal(refusal.status, str(refusal)), head=head)
            return False
        self._send(http, self.server.invoke(self._event(request, body)), head=head)
        return http.our_state is h11.DONE and http.their_state is h11.DONE

    def _next_event(self, http: h11.Connection) -> h11.Event:
        """The next event of the request, reading from the socket as h11 needs (each read times out)."""
        while True:
            event = http.next_event()
            if isinstance(event, h11.Event):
                return event
            if event is h11.PAUSED:  # the client asked to switch protocols (CONNECT, Upgrade)
                raise _Refused(HTTPStatus.NOT_IMPLEMENTED, "this API speaks HTTP/1.1 only")
            http.receive_data(self.request.recv(RECEIVE_BYTES))

    def _body(self, http: h11.Connection) -> bytes:
        """The whole body, at most ``MAX_BODY_BYTES`` however it is framed (chunks declare no total)."""
        if http.they_are_waiting_for_100_continue:
            self.request.sendall(http.send(h11.InformationalResponse(status_code=100, headers=[])))
        body = bytearray()
        while isinstance(event := self._next_event(http), h11.Data):
            body += event.data
            if len(body) > MAX_BODY_BYTES:
                raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _too_large(len(body)))
        if not isinstance(event, h11.EndOfMessage):  # the client closed half-way through its body
            raise OSError("the connection closed before the request's body was complete")
        return bytes(body)

    def _event(self, request: h11.Request, body: bytes) -> dict[str, Any]:
        """API Gateway's proxy event; HEAD is routed as GET, and its answer sent without a body."""
        method = request.method.decode("ascii")
        return proxy_event(
            method="GET" if method == "HEAD" else method,
            target=request.target.decode("latin-1"),
            headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers.raw_items()],
            body=body,
            source_ip=self.client_address[0],
        )

    def _send(self, http: h11.Connection, response: Mapping[str, Any], *, head: bool) -> None:
        """Write a proxy response; the body is left out for HEAD, its length is still given."""
        raw = response.get("body") or ""
        payload = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode()
        status = int(response["statusCode"])
        headers = [*_response_headers(response), ("Content-Length", str(len(payload)))]
        if http.their_state is not h11.DONE:  # the rest of the request was not read: no next request
            headers.append(("Connection", "close"))
        data = http.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
        if not head:
            data += http.send(h11.Data(data=payload))
        data += http.send(h11.EndOfMessage())
        self.request.sendall(data)


def _reason(status: int) -> bytes:
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:  # a status HTTP does not name: the line carries the number alone
        return b""


_TIMEOUT_MESSAGE = "the request was not complete in time; send the body its Content-Length announces"


def _check_size(request: h11.Request) -> None:
    """Refuse what API Gateway refuses before the function runs: a long head, a large payload."""
    line = len(request.method) + len(request.target) + len(b" HTTP/1.1 ")
    if line > HEAD_MAX_BYTES:
        raise _Refused(
            HTTPStatus.REQUEST_URI_TOO_LONG,
            f"the request line is {line} bytes; at most {HEAD_MAX_BYTES} are accepted with the headers "
            "(send long parameters in a JSON body)",
        )
    head = line + sum(len(name) + len(value) + 4 for name, value in request.headers.raw_items())
    if head > HEAD_MAX_BYTES:
        raise _Refused(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            f"the request line and headers are {head} bytes; at most {HEAD_MAX_BYTES} are accepted",
        )
    declared = next((int(value) for name, value in request.headers if name == b"content-length"), 0)
    if declared > MAX_BODY_BYTES:
        raise _Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, _too_large(declared))


def _too_large(size: int) -> str:
    return (
        f"the request body is {size} bytes or more; at most {MAX_BODY_BYTES} are accepted. "
        "Upload large images with POST /uploads"
    )


_CODES: Final = {
    HTTPStatus.BAD_REQUEST: "invalid_request",
    HTTPStatus.REQUEST_TIMEOUT: "request_timeout",
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "request_too_large",
    HTTPStatus.REQUEST_URI_TOO_LONG: "request_line_too_long",
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: "headers_too_large",
    HTTPStatus.NOT_IMPLEMENTED: "not_implemented",
}


def _refusal(status: HTTPStatus, message: str) -> dict[str, Any]:
    """The gateway's own answer, in the API's error shape (``handlers.http_errors``)."""
    return {
        "statusCode": status.value,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(error_body(code=_CODES.get(status, "invalid_request"), message=message)),
    }


def _response_headers(response: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``multiValueHeaders`` plus the ``headers`` they do not already name, as API Gateway merges them."""
    multi: Mapping[str, Sequence[str]] = response.get("multiValueHeaders") or {}
    single: Mapping[str, str] = response.get("headers") or {}
    named = {name.lower() for name in multi}
    pairs = [(name, str(value)) for name, values in multi.items() for value in values]
    pairs += [(name, str(value)) for name, value in single.items() if name.lower() not in named]
    return [(name, value) for name, value in pairs if name.lower() != "content-length"]


@contextmanager
def running(
    handler: LambdaHandler, *, host: str = "127.0.0.1", port: int = 0, read_timeout_s: float = READ_TIMEOUT_S
) -> Iterator[ApiGatewayServer]:
    """Serve ``handler`` on a background thread (``port=0``: any free port) until the block ends."""
    server = ApiGatewayServer((host, port), handler, read_timeout_s=read_timeout_s)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="api-gateway", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main(argv: Sequence[str] | None = None) -> None:
    """Serve ``handlers.query.handler`` in the foreground until Ctrl-C."""
    parser = argparse.ArgumentParser(
        prog="python -m localmode.api_gateway", description="Serve the query API as API Gateway would."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        ensure_free(args.host, args.port, role=API_ROLE)  # before the model loads, not after
    except PortInUseError as error:
        parser.exit(1, f"{error}\n")
    from handlers.query import handler  # after parsing: --help must not load the model's dependencies

    with ApiGatewayServer((args.host, args.port), handler) as server:
        print(f"query API at {server.url} (GET /openapi.json describes it); Ctrl-C stops it", flush=True)
        with suppress(KeyboardInterrupt):
            server.serve_forever()


if __name__ == "__main__":
    main()
