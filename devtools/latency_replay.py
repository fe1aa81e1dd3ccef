"""A remote service as AWS would show it to a function: latency, and no local CPU.

``python -m devtools.latency_replay --upstream URL`` serves HTTP on a free loopback port from its own
process. It starts by *recording*: every request is forwarded to ``URL`` (the real OpenSearch node) and
its answer kept. Once told to *replay* (``LatencyReplay.replay()``), it never forwards again: each request
gets the recorded answer to the same request, after a latency drawn for its kind of request, so the
function under test pays the round trip of a remote domain while the node's JVM burns no CPU.

Which answers a request gets: the same method, path and body; long lists of numbers (vectors) are matched
by their length, not their values, so a query vector that differs in the last bit still finds its
answer. A request that was never recorded gets a 502 naming it, and counts in ``unmatched``.

Latency per kind, uniformly drawn in milliseconds (``--latency knn=5:15,bulk=20:50,other=1:3``):
``knn`` is a search with a ``knn`` clause, ``bulk`` a ``_bulk``, ``other`` anything else. A new TCP
connection first waits ``--connect-ms`` more (TLS and TCP set-up to a domain), so a client that does not
keep its connection warm pays it on every request; ``stats()`` counts the connections opened.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from devtools.http_relay import Answer, relay

CONTROL = "/__replay__"
"""Paths under this prefix steer the server (``/replay``, ``/stats``); they are never recorded."""

DEFAULT_LATENCY_MS: dict[str, tuple[float, float]] = {
    "knn": (5.0, 15.0),
    "bulk": (20.0, 50.0),
    "other": (1.0, 3.0),
}
DEFAULT_CONNECT_MS = 20.0
_LONG_NUMBERS = re.compile(rb"\[(?:-?[0-9.eE+-]+,){15,}-?[0-9.eE+-]+\]")
"""A JSON list of at least 16 numbers: a vector, matched by its length only."""


def request_key(method: str, path: str, body: bytes) -> tuple[str, str, bytes]:
    """What a replayed request must share with a recorded one."""
    return method, path, _LONG_NUMBERS.sub(lambda match: b"<%d numbers>" % (match[0].count(b",") + 1), body)


def kind_of(path: str, body: bytes) -> str:
    """Which latency applies: ``knn``, ``bulk`` or ``other``."""
    if "/_bulk" in path:
        return "bulk"
    if "/_search" in path and b'"knn"' in body:
        return "knn"
    return "other"


def parse_latency(spec: str) -> dict[str, tuple[float, float]]:
    """``knn=5:15,bulk=20:50`` → ``{"knn": (5.0, 15.0), ...}`` over the defaults; ``knn=10`` is fixed."""
    latency = dict(DEFAULT_LATENCY_MS)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        kind, _, bounds = item.partition("=")
        if kind not in DEFAULT_LATENCY_MS:
            raise ValueError(f"unknown kind {kind!r}: one of {', '.join(DEFAULT_LATENCY_MS)}")
        low, _, high = bounds.partition(":")
        latency[kind] = (float(low), float(high or low))
        if not 0 <= latency[kind][0] <= latency[kind][1]:
            raise ValueError(f"{item!r}: want 0 <= low <= high milliseconds")
    return latency


@dataclass
class _State:
    upstream: str
    latency: Mapping[str, tuple[float, float]]
    connect_s: float
    random: random.Random
    replaying: bool = False
    recorded: dict[tuple[str, str, bytes], Answer] = field(default_factory=dict)
    connections: int = 0
    requests: dict[str, int] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delay_s(self, kind: str) -> float:
        low, high = self.latency[kind]
        with self.lock:
            return self.random.uniform(low, high) / 1000


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: _State, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = state


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client that reuses its connection is not charged again
    server: _Server

    def setup(self) -> None:
        super().setup()
        # as OpenSearch's Netty does: without it, a reply's second segment waits for the client's delayed
        # ACK (40 ms on Linux), a stall no real domain adds
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._new_connection = True

    def log_message(self, *_: object) -> None:
        return

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.startswith(CONTROL):
            self._control()
            return
        state, new_connection, self._new_connection = self.server.state, self._new_connection, False
        if new_connection:
            with state.lock:
                state.connections += 1
        key = request_key(self.command, self.path, body)
        if not state.replaying:
            answer = relay(self, state.upstream, body)
            with state.lock:
                state.recorded[key] = answer
            self._reply(answer)
            return
        kind = kind_of(self.path, body)
        time.sleep(state.delay_s(kind) + (state.connect_s if new_connection else 0.0))
        with state.lock:
            state.requests[kind] = state.requests.get(kind, 0) + 1
            answer_or_none = state.recorded.get(key)
            if answer_or_none is None:
                state.unmatched.append(f"{self.command} {self.path}")
        if answer_or_none is None:
            reason = f"{self.command} {self.path} was not recorded (devtools.latency_replay)"
            error = json.dumps({"error": {"type": "unrecorded_request", "reason": reason}, "status": 502})
            answer_or_none = Answer(502, {"Content-Type": "application/json"}, error.encode())
        self._reply(answer_or_none)

    def _control(self) -> None:
        state = self.server.state
        with state.lock:
            if self.path == f"{CONTROL}/replay":
                state.replaying, state.connections, state.requests = True, 0, {}
            stats = {
                "replaying": state.replaying,
                "recorded": len(state.recorded),
                "connections": state.connections,
                "requests": dict(state.requests),
                "unmatched": list(state.unmatched),
            }
        self._reply(Answer(200, {"Content-Type": "application/json"}, json.dumps(stats).encode()))

    def _reply(self, answer: Answer) -> None:
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle


class LatencyReplay:
    """``with LatencyReplay(node_url) as remote:`` the server in a child process; ``remote.url`` reaches it.

    Record by sending the requests to ``remote.url`` (they reach the node), then ``remote.replay()``.
    """

    def __init__(
        self,
        upstream: str,
        *,
        latency: Mapping[str, tuple[float, float]] = DEFAULT_LATENCY_MS,
        connect_ms: float = DEFAULT_CONNECT_MS,
        seed: int = 0,
    ) -> None:
        spec = ",".join(f"{kind}={low}:{high}" for kind, (low, high) in latency.items())
        self._command = [
            sys.executable,
            "-m",
            "devtools.latency_replay",
            "--upstream",
            upstream,
            "--latency",
            spec,
            "--connect-ms",
            str(connect_ms),
            "--seed",
            str(seed),
        ]
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> LatencyReplay:
        root = Path(__file__).resolve().parents[1]
        self._process = subprocess.Popen(
            self._command, cwd=root, stdout=subprocess.PIPE, text=True, env=_child_env(root)
        )
        assert self._process.stdout is not None  # stdout=PIPE
        line = self._process.stdout.readline()
        if not line.startswith("listening on "):
            self._process.kill()
            raise RuntimeError(f"devtools.latency_replay did not start: {line!r}")
        self.url = line.removeprefix("listening on ").strip()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)

    def replay(self) -> dict[str, Any]:
        """Stop forwarding: from now on every request is answered from the recording, late."""
        return self._control("replay", method="POST")

    def stats(self) -> dict[str, Any]:
        """Connections opened and requests answered since ``replay()``, and the unrecorded ones."""
        return self._control("stats", method="GET")

    def _control(self, what: str, *, method: str) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}{CONTROL}/{what}", method=method, data=b"")
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer


def _child_env(root: Path) -> dict[str, str]:
    import os

    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "lambdas"), str(root)])}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.latency_replay", description=__doc__)
    parser.add_argument("--upstream", required=True, help="the service to record from, e.g. the node's URL")
    parser.add_argument("--latency", default="", help="e.g. knn=5:15,bulk=20:50,other=1:3 (milliseconds)")
    parser.add_argument("--connect-ms", type=float, default=DEFAULT_CONNECT_MS, help="per new connection")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    state = _State(
        upstream=args.upstream,
        latency=parse_latency(args.latency),
        connect_s=args.connect_ms / 1000,
        random=random.Random(args.seed),
    )
    server = _Server(state, args.port)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
