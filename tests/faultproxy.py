"""A local HTTP proxy in front of the OpenSearch node that fails the first N matching requests.

Faults reach the adapter exactly as a throttled or overloaded domain would send them (a real HTTP
status through the real client, transport and bulk helper), so retry and error handling are tested
without patching any of our code. Every request's headers are kept, so tests can check signing.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}
_ERROR_TYPES = {429: "rejected_execution_exception", 503: "unavailable_shards_exception"}


@dataclass
class Fault:
    """Answer ``status`` to the first ``times`` requests whose path contains ``path_contains``."""

    status: int
    times: int
    path_contains: str = ""
    injected: int = 0


@dataclass
class _State:
    upstream: str | None
    fault: Fault | None = None
    seen: list[tuple[str, str, Mapping[str, str]]] = field(default_factory=list)
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
    def seen(self) -> list[tuple[str, str, Mapping[str, str]]]:
        """(method, path, headers) of every request received, in order."""
        with self._server.state.lock:
            return list(self._server.state.seen)

    def fail(self, *, status: int, times: int, path_contains: str = "") -> Fault:
        """Start failing; the returned ``Fault`` counts how many requests it failed so far."""
        fault = Fault(status=status, times=times, path_contains=path_contains)
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

    def take_fault(self, method: str, path: str, headers: Mapping[str, str]) -> Fault | None:
        """Record the request; return the fault to answer it with, if one still applies."""
        with self.state.lock:
            self.state.seen.append((method, path, headers))
            fault = self.state.fault
            if fault is None or fault.injected >= fault.times or fault.path_contains not in path:
                return None
            fault.injected += 1
            return fault


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *_: object) -> None:  # keep test output clean
        return

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fault = self.server.take_fault(self.command, self.path, dict(self.headers.items()))
        upstream = self.server.state.upstream
        if fault is not None:
            self._reply(fault.status, _error_body(fault.status), {"Content-Type": "application/json"})
        elif upstream is None:
            self._reply(502, _error_body(502), {"Content-Type": "application/json"})
        else:
            self._forward(upstream, body)

    def _forward(self, upstream: str, body: bytes) -> None:
        target = urlsplit(upstream)
        connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            connection.request(self.command, self.path, body=body or None, headers=headers)
            response = connection.getresponse()
            payload = response.read()
            kept = {k: v for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP}
            self._reply(response.status, payload, kept)
        finally:
            connection.close()

    def _reply(self, status: int, payload: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


def _error_body(status: int) -> bytes:
    kind = _ERROR_TYPES.get(status, "fault_injected")
    error = {"type": kind, "reason": f"fault injected by tests/faultproxy.py ({status})"}
    return json.dumps({"error": {"root_cause": [error], **error}, "status": status}).encode()
