"""Vectors and documents for the vector index tests: small, seeded, and realistic in shape."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from simsearch.ids import image_id_for
from simsearch.index.port import Document, ImageMetadata, Vector


def unit(values: npt.ArrayLike) -> Vector:
    """``values`` scaled to length 1, as the embedder emits them."""
    array = np.asarray(values, dtype=np.float32)
    result: Vector = array / np.linalg.norm(array)
    return result


def on_circle(angle_degrees: float, *, dim: int = 8) -> Vector:
    """A unit vector at ``angle_degrees`` from e0 (in the plane of e0 and e1): its cosines are known."""
    angle = math.radians(angle_degrees)
    return unit([math.cos(angle), math.sin(angle)] + [0] * (dim - 2))


def unit_vectors(n: int, dim: int, *, seed: int = 0) -> npt.NDArray[np.float32]:
    """``n`` random unit vectors, one per row."""
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    result: npt.NDArray[np.float32] = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return result


def document(
    key: str,
    vector: npt.ArrayLike,
    *,
    label: str | None = None,
    bucket: str = "images",
    width: int | None = 640,
    content_sha256: str = "ab" * 32,
    model_id: str = "test-model",
) -> Document:
    """A document as ingestion writes it, its id derived from ``bucket`` and ``key``."""
    metadata = ImageMetadata(
        bucket=bucket,
        key=key,
        label=label,
        etag="0123456789abcdef0123456789abcdef",
        content_sha256=content_sha256,
        content_type="image/jpeg",
        model_id=model_id,
        width=width,
        height=480,
        bytes=12345,
        indexed_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        sequencer="0055AED6DCD90281E5",
    )
    return Document(image_id=image_id_for(bucket, key), vector=unit(vector), metadata=metadata)
