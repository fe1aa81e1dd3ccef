"""The web page, served beside the query API by wrapping its handler (the API itself stays untouched).

``GET /`` and ``GET /<asset>`` for the files of ``localmode/web`` are answered here; every other
request goes to the query handler. The page is plain HTML, JavaScript and CSS with no build step, and
it calls the API by URL, so the same files work against a deployed API (they need not be served by it).
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from localmode.api_gateway import LambdaHandler

WEB_ROOT = Path(__file__).parent / "web"
INDEX = "index.html"


def assets(root: Path = WEB_ROOT) -> dict[str, Path]:
    """URL path -> file: ``/`` is the page, each other file by its name (no directories, no traversal)."""
    files = {f"/{path.name}": path for path in sorted(root.iterdir()) if path.is_file()}
    return {"/": root / INDEX, **files}


def with_static_site(handler: LambdaHandler, *, root: Path = WEB_ROOT) -> LambdaHandler:
    """``handler``, except that GET and HEAD of the page's files return those files."""
    served = assets(root)

    def serve(event: dict[str, Any], context: Any) -> Mapping[str, Any]:
        path = served.get(event.get("path") or "")
        if path is None or event.get("httpMethod") not in ("GET", "HEAD"):
            return handler(event, context)
        return file_response(path)

    return serve


def file_response(path: Path) -> dict[str, Any]:
    """A proxy response with the file's bytes; ``no-cache`` so an edited page shows on reload."""
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type == "application/javascript":
        content_type += "; charset=utf-8"
    return {
        "statusCode": 200,
        "headers": {"Content-Type": content_type, "Cache-Control": "no-cache"},
        "body": base64.b64encode(path.read_bytes()).decode(),
        "isBase64Encoded": True,
    }
