"""API Gateway REST proxy events, and the handler's answers read back, for the query API tests.

Events come from ``localmode.api_gateway.proxy_event``, the same conversion the local server applies to
real HTTP requests, so tests and local mode send the handler identical events.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from localmode.api_gateway import LocalContext, proxy_event


def request(
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, object] | None = None,
) -> dict[str, Any]:
    """The event for ``method path?query`` with ``body``, as API Gateway delivers it."""
    target = f"{path}?{urlencode({name: str(value) for name, value in query.items()})}" if query else path
    return proxy_event(
        method=method, target=target, headers=list((headers or {}).items()), body=body, source_ip="127.0.0.1"
    )


def get(path: str) -> dict[str, Any]:
    return request("GET", path)


def post_json(path: str, payload: object, *, query: Mapping[str, object] | None = None) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    return request("POST", path, body=body, headers={"Content-Type": "application/json"}, query=query)


def post_image(
    path: str, data: bytes, *, content_type: str = "image/jpeg", query: Mapping[str, object] | None = None
) -> dict[str, Any]:
    """A raw image body: API Gateway base64-encodes it, ``image/*`` being a binary media type."""
    return request("POST", path, body=data, headers={"Content-Type": content_type}, query=query)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class Answer:
    """A handler response: status, headers with lower-case names, and the parsed JSON body."""

    status: int
    headers: Mapping[str, str]
    json: Any

    @property
    def error_code(self) -> str:
        return str(self.json["error"]["code"])

    @property
    def error_message(self) -> str:
        return str(self.json["error"]["message"])


def call(handler: Callable[[dict[str, Any], Any], Mapping[str, Any]], event: dict[str, Any]) -> Answer:
    """Invoke ``handler`` with ``event`` and a Lambda context, and read the proxy response back."""
    response = handler(event, LocalContext(aws_request_id="test-request"))
    headers = {
        name.lower(): str(values[-1]) for name, values in (response.get("multiValueHeaders") or {}).items()
    }
    headers |= {name.lower(): str(value) for name, value in (response.get("headers") or {}).items()}
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return Answer(
        status=int(response["statusCode"]), headers=headers, json=json.loads(body) if body else None
    )
