"""The world of the local-mode tests: a folder of known pictures, and the local stack on free ports.

The corpus is the query tests' six pictures (``tests/query_fixtures.py``) under ``<label>/<name>``,
so labels come from folders as they do for ``IMAGES=...``; the query for a picture is a reframed copy
(cropped, rescaled, re-encoded) whose nearest neighbour must be the original.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.resources.abc import Traversable
from pathlib import Path

from localmode.harness import local_settings
from localmode.stack import LocalStack, StackConfig, folder_images, started, upload
from tests.image_factories import reframed
from tests.query_fixtures import pictures

LABELS = {"china": "photos", "flower": "photos"}  # the drawn patterns get "patterns"
INGEST_TIMEOUT_S = 120


def write_corpus(folder: Path) -> dict[str, str]:
    """Write the six pictures as ``<label>/<name>.<ext>``; returns picture name -> key."""
    keys: dict[str, str] = {}
    for name, data in pictures().items():
        extension = "jpg" if data[:2] == b"\xff\xd8" else "png"
        key = f"{LABELS.get(name, 'patterns')}/{name}.{extension}"
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        (folder / key).write_bytes(data)
        keys[name] = key
    return keys


def query_image(folder: Path, name: str) -> bytes:
    """A re-upload of picture ``name``: its centre, smaller, as a lower-quality JPEG."""
    original = (folder / next(p for p in folder_images(folder) if Path(p).stem == name)).read_bytes()
    return reframed(original, keep=0.8, scale=0.6, quality=70)


def stack_config(
    *, model_dir: Path, index_path: Path, images: Mapping[str, Traversable] | None = None
) -> StackConfig:
    return StackConfig(
        settings=local_settings(model_dir=model_dir, index_path=index_path),
        api_port=0,
        s3_port=0,
        images=images or {},
    )


@contextmanager
def stack_with(folder: Path, *, model_dir: Path, index_path: Path) -> Iterator[LocalStack]:
    """The local stack on ``folder``, as `imgsearch serve --images` runs it, once ingestion has settled."""
    images = folder_images(folder)
    with started(stack_config(model_dir=model_dir, index_path=index_path, images=images)) as stack:
        pending = {key: images[key] for key in stack.reconciled.to_index}
        count = upload(stack.cloud, pending, paced_by=stack.progress)
        assert stack.progress.wait_for(count, timeout=INGEST_TIMEOUT_S), "ingestion did not finish"
        yield stack
