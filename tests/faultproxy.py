"""A local HTTP proxy in front of the OpenSearch node that fails or stalls the first N matching requests.

Faults reach the adapter exactly as a throttled, overloaded or slow domain would send them (a real HTTP
status, or a late answer, through the real client, transport and bulk helper), so retry, timeout and
error handling are tested without patching any of our code. Every exchange is recorded (method, path,
headers, the status the client got, both bodies), so tests can check signing, what a request asked for
and what came back, and replay the traffic a function made.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from devtools.http_relay import relay

_ERROR_TYPES = {429: "rejected_execution_exception", 503: "unavailable_shards_exception"}


@dataclass
class Fault:
    """For the first ``times`` requests whose path contains ``path_contains``: wait ``delay_s``, then
    answer ``status`` (``None``: forward the request after the wait, as a slow domain would)."""

    status: int | None
    times: int
    path_contains: str = ""
    delay_s: float = 0.0
    injected: int = 0


@dataclass(frozen=True)
class Exchange:
    """One request the proxy received, and the status its client got back."""

    method: str
    path: str
    headers: Mapping[str, str]
    status: int
    body: bytes = b""
    answer: bytes = b""


@dataclass
class _State:
    upstream: str | None
    fault: Fault | None = None
    seen: list[Exchange] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FaultProxy:
    """``with FaultProxy(node_url) as proxy: ...``; point a client at ``proxy.url``.

    Without an upstream (``None``) every request that is not failed gets a 502, for tests that need
    only the faults or the requests' headers.
    """

    def __init__(self, upstream: str | None) -> None:
        self._server = _Server(_State(upstream=upstream))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def seen(self) -> list[Exchange]:
        """Every exchange so far, in the order the answers went out."""
        with self._server.state.lock:
            return list(self._server.state.seen)

    def fail(self, *, status: int, times: int, path_contains: str = "") -> Fault:
        """Start failing; the returned ``Fault`` counts how many requests it failed so far."""
        return self._inject(Fault(status=status, times=times, path_contains=path_contains))

    def stall(self, *, seconds: float, times: int, path_contains: str = "") -> Fault:
        """Start answering late: each matching request waits ``seconds`` before it is forwarded."""
        return self._inject(Fault(status=None, times=times, path_contains=path_contains, delay_s=seconds))

    def _inject(self, fault: Fault) -> Fault:
        with self._server.state.lock:
            self._server.state.fault = fault
        return fault

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: _State) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state

    def take_fault(self, path: str) -> Fault | None:
        """The fault to answer a request for ``path`` with, if one still applies."""
        with self.state.lock:
            fault = self.state.fault
            if fault is None or fault.injected >= fault.times or fault.path_contains not in path:
                return None
            fault.injected += 1
            return fault

    def record(self, exchange: Exchange) -> None:
        with self.state.lock:
            self.state.seen.append(exchange)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *_: object) -> None:  # keep test output clean
        return

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = self.server.take_fault(self.path)
        upstream = self.server.state.upstream
        if fault is not None:
            time.sleep(fault.delay_s)
        if fault is not None and fault.status is not None:
            status, answer = self._reply(
                fault.status, _error_body(fault.status), {"Content-Type": "application/json"}
            )
        elif upstream is None:
            status, answer = self._reply(502, _error_body(502), {"Content-Type": "application/json"})
        else:
            status, answer = self._forward(upstream, body)
        headers = dict(self.headers.items())
        self.server.record(Exchange(self.command, self.path, headers, status, body=body, answer=answer))

    def _forward(self, upstream: str, body: bytes) -> tuple[int, bytes]:
        answer = relay(self, upstream, body)
        return self._reply(answer.status, answer.body, answer.headers)

    def _reply(self, status: int, payload: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        return status, payload

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


def _error_body(status: int) -> bytes:
    kind = _ERROR_TYPES.get(status, "fault_injected")
    error = {"type": kind, "reason": f"fault injected by tests/faultproxy.py ({status})"}
    return json.dumps({"error": {"root_cause": [error], **error}, "status": status}).encode()
