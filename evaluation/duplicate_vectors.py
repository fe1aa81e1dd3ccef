"""The collection's vectors through the production path, cached by content and model.

Originals are read from disk; copies are made by their edit from the decoded original. Both go through
``OnnxEmbedder.embed_images``: ``decode_image`` (EXIF orientation applied, as ingestion does) and
``to_tensor`` under the deployed image limits, then the ONNX model.

A 2-core machine embeds about 18 images/s with MobileNetV2 and 5 with ResNet50, so vectors are kept in
``<cache dir>/<model id>-<onnx sha256 prefix>.npz``, keyed by ``Member.cache_key`` (the source's sha256,
plus the edit's recipe for a copy): a rerun, another threshold rule or another whitening embeds nothing,
and a changed edit or model misses the cache instead of reading stale vectors.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from evaluation.duplicate_set import Member
from simsearch.embedder import OnnxEmbedder
from simsearch.manifest import ModelManifest
from simsearch.preprocess import ImageLimits, decode_image

Vectors = npt.NDArray[np.float32]
BATCH = 32  # images per inference call, as evaluation.vectors
SAVE_EVERY = 20  # batches between cache writes: an interrupted ResNet50 run keeps most of its work


def cache_file(cache_dir: Path, manifest: ModelManifest) -> Path:
    return cache_dir / f"{manifest.model_id}-{manifest.onnx_sha256[:12]}.npz"


def embed_members(members: Sequence[Member], model_dir: Path, *, cache_dir: Path, threads: int) -> Vectors:
    """One unit row per member, in order; only members missing from the cache are embedded.

    Raises:
        ConfigError: ``model_dir`` holds no usable model.
        InvalidImageError, ImageTooLargeError: an image (or copy) the ingestion would refuse.
    """
    manifest = ModelManifest.load(model_dir)
    path = cache_file(cache_dir, manifest)
    cached = _read(path)
    missing = [
        member for member in {m.cache_key: m for m in members}.values() if member.cache_key not in cached
    ]
    if missing:
        _embed_missing(missing, model_dir, cached=cached, path=path, threads=threads)
    return np.stack([cached[member.cache_key] for member in members]).astype(np.float32)


def member_bytes(member: Member, *, limits: ImageLimits) -> bytes:
    """What an upload of ``member`` would carry: the file, or its edit applied to the upright original."""
    data = member.source.path.read_bytes()
    if member.edit is None:
        return data
    return member.edit.apply(decode_image(data, limits=limits).rgb)


def _embed_missing(
    missing: Sequence[Member], model_dir: Path, *, cached: dict[str, Vectors], path: Path, threads: int
) -> None:
    from tqdm import tqdm  # imported here, as the other commands do: only a run that embeds needs it

    workers = max(threads, 1)
    embedder = OnnxEmbedder.load(model_dir, threads=workers)
    limits = ImageLimits.deployed()
    try:
        with (
            ThreadPoolExecutor(max_workers=workers) as pool,  # Pillow releases the GIL while editing
            tqdm(
                total=len(missing), unit="image", desc=f"embedding with {embedder.model_id}", file=sys.stderr
            ) as bar,
        ):
            for number, start in enumerate(range(0, len(missing), BATCH), start=1):
                batch = missing[start : start + BATCH]
                encoded = list(pool.map(lambda member: member_bytes(member, limits=limits), batch))
                for member, vector in zip(batch, embedder.embed_images(encoded, limits=limits), strict=True):
                    cached[member.cache_key] = vector
                bar.update(len(batch))
                if number % SAVE_EVERY == 0:
                    _write(path, cached)
    finally:
        embedder.close()
        _write(path, cached)


def _read(path: Path) -> dict[str, Vectors]:
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as stored:
        return dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))


def _write(path: Path, cached: dict[str, Vectors]) -> None:
    if cached:
        save_npz(path, keys=np.array(list(cached)), vectors=np.stack(list(cached.values())))


def save_npz(path: Path, **arrays: Any) -> None:
    """Write beside, then rename: an interrupted write never leaves a half cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(path)
