"""A file server on 127.0.0.1 that answers ``Range`` requests as RFC 9110 says, or misbehaves on request.

It stands in for download.pytorch.org: the downloader meets real HTTP through the real client, so a cut
transfer, a server that ignores ``Range`` or one that fails is tested without patching any of our code.
It also answers requests sent to it as a forward proxy (absolute URLs), which is how a test shows that
``HTTP_PROXY`` is honoured.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

_RANGE = re.compile(r"bytes=(\d+)-$")


@dataclass
class Behaviour:
    """What the server does; tests change it between requests."""

    body: bytes
    honour_range: bool = True
    cut_after: int | None = None  # the next full or partial answer stops after this many body bytes
    status: int | None = None  # answer every request with this error status instead
    seen: list[tuple[str, str | None]] = field(default_factory=list)  # (request target, Range header)
    lock: threading.Lock = field(default_factory=threading.Lock)


class CheckpointServer:
    """``with CheckpointServer(body) as server: ...``; download from ``server.url_for(name)``."""

    def __init__(self, body: bytes) -> None:
        self.behaviour = Behaviour(body=body)
        self._server = _Server(self.behaviour)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url_for(self, file_name: str) -> str:
        return f"{self.origin}/models/{file_name}"

    @property
    def seen(self) -> list[tuple[str, str | None]]:
        with self.behaviour.lock:
            return list(self.behaviour.seen)

    def __enter__(self) -> CheckpointServer:
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

    def __init__(self, behaviour: Behaviour) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        behaviour = self.server.behaviour
        requested = self.headers.get("Range")
        with behaviour.lock:
            behaviour.seen.append((self.path, requested))
            cut, behaviour.cut_after = behaviour.cut_after, None
        if behaviour.status is not None:
            self._answer(behaviour.status, b"server error\n", {})
            return
        body, match = behaviour.body, _RANGE.match(requested or "")
        if not (match and behaviour.honour_range):
            self._answer(200, body, {}, cut=cut)
        elif int(match.group(1)) >= len(body):
            self._answer(416, b"", {"Content-Range": f"bytes */{len(body)}"})
        else:
            start = int(match.group(1))
            content_range = f"bytes {start}-{len(body) - 1}/{len(body)}"
            self._answer(206, body[start:], {"Content-Range": content_range}, cut=cut)

    def _answer(self, status: int, body: bytes, headers: dict[str, str], *, cut: int | None = None) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body)), "Accept-Ranges": "bytes"}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body if cut is None else body[:cut])
        if cut is not None:  # promised Content-Length bytes, sent fewer: the client sees a cut transfer
            self.wfile.flush()
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test asserts on ``seen`` instead."""
