"""Base-model vectors of dataset images, computed outside the handlers to fit and sweep whitenings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from evaluation.dataset import Item
from simsearch.embedder import OnnxEmbedder
from simsearch.preprocess import ImageLimits

BATCH = 32  # images per inference call


def embed_items(items: Sequence[Item], model_dir: Path, *, threads: int) -> npt.NDArray[np.float32]:
    """One L2-normalised row per item, in ``items`` order, under the production image limits.

    Raises:
        InvalidImageError, ImageTooLargeError: an item is not an image the ingestion would accept.
        ConfigError: ``model_dir`` holds no usable model.
    """
    embedder = OnnxEmbedder.load(model_dir, threads=max(threads, 1))
    limits = ImageLimits.deployed()
    batches = [
        embedder.embed_images(
            [item.path.read_bytes() for item in items[start : start + BATCH]], limits=limits
        )
        for start in range(0, len(items), BATCH)
    ]
    return np.concatenate(batches) if batches else np.empty((0, embedder.dim), dtype=np.float32)
