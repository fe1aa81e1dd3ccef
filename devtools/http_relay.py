"""One HTTP request passed on to an upstream server, as the test proxies in front of OpenSearch do.

Hop-by-hop headers (and the length, which the relaying server sets again) stay on their own hop, in
both directions.
"""

from __future__ import annotations

import http.client
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})


@dataclass(frozen=True)
class Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes


def relay(request: BaseHTTPRequestHandler, upstream: str, body: bytes) -> Answer:
    """``request`` (its method, path, end-to-end headers and ``body``) sent to ``upstream``; its answer."""
    target = urlsplit(upstream)
    connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=60)
    try:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        connection.request(request.command, request.path, body=body or None, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        kept = {k: v for k, v in response.getheaders() if k.lower() not in HOP_BY_HOP}
        return Answer(response.status, kept, payload)
    finally:
        connection.close()
