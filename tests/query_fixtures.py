"""Fixtures for the query API tests: the real model, moto S3, and a small index of real images on the node.

The corpus is six pictures (scikit-learn's two photographs and four patterns drawn here), each indexed
with a reframed copy; queries are differently reframed versions, so each query's two nearest
neighbours are known. Measured with MobileNetV2: a family member scores ≥ 0.85, any other ≤ 0.6.

The handler is deployed by ``localmode.harness.deployed`` (moto in this process). Test modules import
these fixtures by name (the query tests are their only users); ``model_dir`` and ``opensearch_url``
come from ``tests/conftest.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opensearchpy import OpenSearch
from PIL import Image, ImageDraw

from localmode.cloud import LocalCloud
from localmode.harness import Deployment, deployed, local_settings
from model.images import photograph
from simsearch.embedder import OnnxEmbedder
from simsearch.ids import content_id, image_id_for
from simsearch.index import Document, ImageMetadata
from simsearch.index.opensearch import OpenSearchIndex
from simsearch.preprocess import ImageLimits, decode_image
from simsearch.settings import Settings
from tests.image_factories import encode, reframed

BUCKET = "images"
LIMITS = ImageLimits(max_bytes=20 * 1024 * 1024, max_pixels=50_000_000)
PICTURES = ("china", "flower", "rings", "checker", "stripes", "blobs")


def _rings() -> bytes:
    image = Image.new("RGB", (480, 360), (250, 240, 200))
    draw = ImageDraw.Draw(image)
    for radius in range(170, 0, -20):
        colour = (200, 30, 30) if radius // 20 % 2 else (250, 240, 200)
        draw.ellipse((240 - radius, 180 - radius, 240 + radius, 180 + radius), fill=colour)
    return encode(image, "PNG")


def _two_tone(mask: np.ndarray, on: tuple[int, int, int], off: tuple[int, int, int]) -> bytes:
    pixels = np.empty((*mask.shape, 3), dtype=np.uint8)
    pixels[mask], pixels[~mask] = on, off
    return encode(Image.fromarray(pixels), "PNG")


def _blobs() -> bytes:
    cells = (np.random.default_rng(3).random((9, 12, 3)) * 255).astype(np.uint8)
    return encode(Image.fromarray(cells).resize((480, 360), Image.Resampling.BICUBIC), "PNG")


def pictures() -> dict[str, bytes]:
    """The six originals, encoded as an upload would deliver them."""
    y, x = np.indices((360, 480))
    return {
        "china": photograph("china.jpg"),
        "flower": photograph("flower.jpg"),
        "rings": _rings(),
        "checker": _two_tone((x // 40 + y // 40) % 2 == 1, (20, 20, 20), (230, 230, 230)),
        "stripes": _two_tone((x + y) // 24 % 2 == 1, (30, 90, 200), (250, 200, 40)),
        "blobs": _blobs(),
    }


@dataclass(frozen=True)
class Indexed:
    """One indexed image: its key in the bucket, id, label and bytes."""

    key: str
    label: str
    data: bytes

    @property
    def id(self) -> str:
        return image_id_for(BUCKET, self.key)


@dataclass
class Corpus:
    """What the index holds (``indexed[name]`` and ``indexed[name + "-copy"]``), and the queries."""

    indexed: dict[str, Indexed] = field(default_factory=dict)
    queries: dict[str, bytes] = field(default_factory=dict)

    def family(self, name: str) -> set[str]:
        """The ids a query of picture ``name`` must find first: the original and its copy."""
        return {self.indexed[name].id, self.indexed[f"{name}-copy"].id}


def build_corpus() -> Corpus:
    corpus = Corpus()
    for name, data in pictures().items():
        folder, label = ("photos", "photo") if name in ("china", "flower") else ("patterns", "pattern")
        corpus.indexed[name] = Indexed(f"{folder}/{name}.img", label, data)
        copy = reframed(data, keep=0.9, scale=0.8, quality=85)
        corpus.indexed[f"{name}-copy"] = Indexed(f"{folder}/{name}-copy.jpg", label, copy)
        corpus.queries[name] = reframed(data, keep=0.8, scale=0.6, quality=70)
    return corpus


@pytest.fixture(scope="session")
def embedder(model_dir: Path) -> OnnxEmbedder:
    return OnnxEmbedder.load(model_dir, threads=2)


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    return build_corpus()


@dataclass(frozen=True)
class QueryApi:
    """The deployed handler's world: its settings, the moto bucket, and the index it reads."""

    settings: Settings
    cloud: LocalCloud
    s3: Any  # a boto3 S3 client
    index: OpenSearchIndex
    serving: str  # the concrete index behind the serving pointer, which answers name
    corpus: Corpus


def handler_configured(api: QueryApi, **changes: Any) -> AbstractContextManager[Deployment]:
    """The functions of ``api``'s deployment configured with some settings changed, inside the block."""
    return deployed(replace(api.settings, **changes), cloud=api.cloud, bootstrap_index=False)


def _document(item: Indexed, vector: np.ndarray, *, model_id: str) -> Document:
    decoded = decode_image(item.data, limits=LIMITS)
    metadata = ImageMetadata(
        bucket=BUCKET,
        key=item.key,
        label=item.label,
        content_sha256=content_id(item.data),
        content_type=f"image/{decoded.format.lower()}",
        width=decoded.width,
        height=decoded.height,
        bytes=len(item.data),
        model_id=model_id,
        indexed_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    return Document(image_id=item.id, vector=vector, metadata=metadata)


@pytest.fixture(scope="module")
def query_api(
    opensearch_url: str,
    opensearch_client: OpenSearch,
    model_dir: Path,
    embedder: OnnxEmbedder,
    corpus: Corpus,
) -> Iterator[QueryApi]:
    """The handler configured for a fresh index on the node holding the corpus, the images in moto S3."""
    settings = local_settings(
        model_dir=model_dir,
        opensearch_url=opensearch_url,
        bucket=BUCKET,
        index_prefix=f"query-test-{uuid.uuid4().hex[:8]}",
        ort_threads=2,
    )
    with deployed(settings) as deployment:
        s3 = deployment.s3
        index = OpenSearchIndex.connect(settings, model_id=embedder.model_id, dim=embedder.dim, refresh=True)
        concrete = index.ensure()
        items = list(corpus.indexed.values())
        vectors = embedder.embed_images([item.data for item in items], limits=LIMITS)
        for item in items:
            s3.put_object(Bucket=BUCKET, Key=item.key, Body=item.data)
        written = index.upsert(
            [_document(i, v, model_id=embedder.model_id) for i, v in zip(items, vectors, strict=True)]
        )
        assert not written.failed
        yield QueryApi(
            settings=settings, cloud=deployment.cloud, s3=s3, index=index, serving=concrete, corpus=corpus
        )
        opensearch_client.indices.delete(index=concrete)
