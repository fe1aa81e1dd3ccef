"""One table of accepted formats: the decoder, the API document, the web page, the command line and the
folder scans of local mode and the evaluation all agree with ``simsearch.formats``."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image

from evaluation.dataset import scan
from handlers.api_input import DOCUMENT, RAW_IMAGE_MEDIA_TYPES
from localmode import cli
from localmode.stack import folder_images
from localmode.static_site import WEB_ROOT
from simsearch.formats import FORMATS, IMAGE_SUFFIXES, MEDIA_TYPES, ImageFormat, media_type_for
from simsearch.preprocess import ImageLimits, decode_image
from tests.image_factories import encode

OCTET_STREAM = "application/octet-stream"


@pytest.mark.parametrize("image_format", FORMATS, ids=lambda f: f.pillow)
def test_the_decoder_reads_every_format_of_the_table(image_format: ImageFormat) -> None:
    data = encode(Image.new("RGB", (16, 12), (200, 40, 40)), image_format.pillow)
    decoded = decode_image(data, limits=ImageLimits.deployed())
    assert (decoded.width, decoded.height) == (16, 12)


def test_the_api_document_takes_every_media_type_of_the_table_as_a_raw_body() -> None:
    content = DOCUMENT["paths"]["/search"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", OCTET_STREAM, *MEDIA_TYPES}
    assert set(RAW_IMAGE_MEDIA_TYPES) == {OCTET_STREAM, *MEDIA_TYPES}


def test_the_web_page_sends_exactly_the_media_types_of_the_table() -> None:
    script = (WEB_ROOT / "app.js").read_text(encoding="utf-8")
    listed = re.search(r"const SENDABLE_TYPES = (\[[^\]]*\]);", script)
    assert listed is not None
    assert json.loads(listed.group(1)) == list(MEDIA_TYPES)


class _Recorder(BaseHTTPRequestHandler):
    content_types: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.content_types.append(self.headers["Content-Type"])
        body = json.dumps({"results": [], "index": "i", "took_ms": 1}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def api() -> Iterator[str]:
    """An API stand-in that records the Content-Type of every search."""
    _Recorder.content_types = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("suffix", sorted(IMAGE_SUFFIXES | {".JPG", ".heic"}))
def test_the_command_line_sends_the_media_type_the_api_takes(api: str, tmp_path: Path, suffix: str) -> None:
    photo = tmp_path / f"photo{suffix}"
    photo.write_bytes(b"the API reads the bytes")

    assert cli.main(["search", str(photo), "--api", api]) == 0

    [sent] = _Recorder.content_types
    assert sent == (media_type_for(photo.name) or OCTET_STREAM)
    assert sent in RAW_IMAGE_MEDIA_TYPES


def test_local_mode_and_the_evaluation_pick_every_suffix_of_the_table(tmp_path: Path) -> None:
    names = [f"{label}/{n}{suffix}" for n, suffix in enumerate(sorted(IMAGE_SUFFIXES)) for label in "ab"]
    for name in [*names, "a/notes.txt", "b/photo.heic"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")

    assert sorted(folder_images(tmp_path)) == sorted(names)
    assert sorted(item.key for item in scan(tmp_path)) == sorted(names)
