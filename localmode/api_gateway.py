"""A local stand-in for API Gateway: HTTP requests in, REST proxy events to a Lambda handler, responses out.

The server calls the very ``handlers.query.handler`` that runs in AWS, so local mode has no second
implementation of the API. Each request becomes the event an API Gateway REST API sends to a Lambda
proxy integration (payload format 1.0): bodies of the binary media types arrive base64-encoded with
``isBase64Encoded``, headers and query strings come as single- and multi-value maps.

Requests reach the handler one at a time, as they would reach one Lambda container: Powertools'
resolver keeps the current event on the app object, so two concurrent calls would see each other's.

    PYTHONPATH=lambdas python -m localmode.api_gateway --port 8000   # SIMSEARCH_* variables configure it
"""

from __future__ import annotations

import argparse
import base64
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from handlers.gateway import BINARY_MEDIA_TYPES

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024
"""API Gateway refuses larger payloads itself; Lambda's 6 MB limit is the handler's to explain."""

STAGE = "local"

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


class ApiGatewayServer(ThreadingHTTPServer):
    """An HTTP server that hands every request to ``handler`` as API Gateway would."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: LambdaHandler) -> None:
        super().__init__(address, _RequestHandler)
        self._handler = handler
        self._one_at_a_time = threading.Lock()

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


class _RequestHandler(BaseHTTPRequestHandler):
    server: ApiGatewayServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.address_string(), *args)

    def _proxy(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read, so the connection cannot be reused
            self._write(
                {
                    "statusCode": 413,
                    "body": '{"message": "Request Entity Too Large"}',
                    "headers": {"Content-Type": "application/json"},
                }
            )
            return
        event = proxy_event(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=self.rfile.read(length),
            source_ip=self.client_address[0],
        )
        self._write(self.server.invoke(event))

    def __getattr__(self, name: str) -> Any:
        """``do_<METHOD>`` for every method, even unusual ones (TRACE, QUERY): the handler's routes decide."""
        if name.startswith("do_"):
            return self._proxy
        raise AttributeError(name)

    def _write(self, response: Mapping[str, Any]) -> None:
        raw = response.get("body") or ""
        payload = base64.b64decode(raw) if response.get("isBase64Encoded") else str(raw).encode()
        self.send_response(int(response["statusCode"]))
        for name, value in _response_headers(response):
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def _response_headers(response: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``multiValueHeaders`` plus the ``headers`` they do not already name, as API Gateway merges them."""
    multi: Mapping[str, Sequence[str]] = response.get("multiValueHeaders") or {}
    single: Mapping[str, str] = response.get("headers") or {}
    named = {name.lower() for name in multi}
    pairs = [(name, str(value)) for name, values in multi.items() for value in values]
    pairs += [(name, str(value)) for name, value in single.items() if name.lower() not in named]
    return [(name, value) for name, value in pairs if name.lower() != "content-length"]


@contextmanager
def running(handler: LambdaHandler, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[ApiGatewayServer]:
    """Serve ``handler`` on a background thread (``port=0``: any free port) until the block ends."""
    server = ApiGatewayServer((host, port), handler)
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
    from handlers.query import handler  # after parsing: --help must not load the model's dependencies

    with ApiGatewayServer((args.host, args.port), handler) as server:
        print(f"query API at {server.url} (GET /openapi.json describes it); Ctrl-C stops it", flush=True)
        with suppress(KeyboardInterrupt):
            server.serve_forever()


if __name__ == "__main__":
    main()
