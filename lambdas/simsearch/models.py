"""Embedders by model: the one a function carries, and any other an index says it was built with.

A function ships one model (the bundle's, or local mode's ``model_dir``). While a re-index runs, the
serving index may hold another model's vectors; queries must be embedded with that model, and uploads
written to both indexes with both. Every index records where its model lives (``IndexInfo.model_uri``):
an ``s3://bucket/prefix/`` that the deployment fills with each model it ships, or a local directory.
A model fetched from S3 lands in ``cache_dir`` (Lambda's ``/tmp``) and is checked against the sha256
its manifest records before it is loaded; loaded models are kept for the life of the process.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from simsearch.errors import ConfigError, SimsearchError, StorageUnavailableError
from simsearch.manifest import MANIFEST_FILE, ModelManifest

if TYPE_CHECKING:
    from collections.abc import Callable

    from simsearch.embedder import Embedder
    from simsearch.index.port import IndexInfo

logger = logging.getLogger(__name__)

MODELS_PREFIX = "models/"
"""Where a deployment's artifacts bucket keeps each model it ever shipped, one folder per model id."""


def s3_model_uri(bucket: str, model_id: str) -> str:
    """The deployed home of ``model_id``: what its index records, and where ``publish`` puts it."""
    return f"s3://{bucket}/{MODELS_PREFIX}{model_id}/"


class ModelStore:
    """The embedder for an index's model: the carried one when it matches, else fetched once and kept."""

    def __init__(
        self,
        *,
        carried: Embedder,
        load: Callable[[Path], Embedder],
        cache_dir: Path,
        s3: Callable[[], Any] | None = None,
    ) -> None:
        """``load`` builds an embedder from a model directory; ``s3`` makes the client that fetches one."""
        self._embedders: dict[str, Embedder] = {carried.model_id: carried}
        self._load = load
        self._cache_dir = cache_dir
        self._s3 = s3
        self._lock = threading.Lock()

    @property
    def carried(self) -> Embedder:
        return next(iter(self._embedders.values()))

    def embedder(self, info: IndexInfo) -> Embedder:
        """The embedder of ``info``'s model; ``ConfigError`` when it cannot be found or is not that model."""
        with self._lock:
            if info.model_id not in self._embedders:
                self._embedders[info.model_id] = self._fetch(info)
            return self._embedders[info.model_id]

    def close(self) -> None:
        for embedder in self._embedders.values():
            embedder.close()

    def _fetch(self, info: IndexInfo) -> Embedder:
        if not info.model_uri:
            raise ConfigError(
                f"index {info.name!r} holds vectors of model {info.model_id}, which this function does not "
                "carry, and the index does not say where that model lives: deploy that model again, or "
                "re-index with the model deployed now"
            )
        location = urlsplit(info.model_uri)
        model_dir = (
            self._download(info, location.netloc, location.path)
            if location.scheme == "s3"
            else Path(info.model_uri)
        )
        logger.info("loading model %s from %s for index %s", info.model_id, info.model_uri, info.name)
        embedder = self._load(model_dir)
        if embedder.model_id != info.model_id:
            raise ConfigError(f"{info.model_uri} holds model {embedder.model_id}, not {info.model_id}")
        return embedder

    def _download(self, info: IndexInfo, bucket: str, prefix: str) -> Path:
        """``manifest.json`` and the model file into ``cache_dir/<model id>``, verified."""
        if self._s3 is None:
            raise ConfigError(f"model {info.model_id} lives in S3 ({info.model_uri}) and no S3 client is set")
        target = self._cache_dir / info.model_id
        target.mkdir(parents=True, exist_ok=True)
        s3, prefix = self._s3(), prefix.strip("/")
        try:
            s3.download_file(bucket, f"{prefix}/{MANIFEST_FILE}", str(target / MANIFEST_FILE))
            manifest = ModelManifest.load(target)
            model = target / manifest.onnx_file
            if not model.is_file() or _sha256(model) != manifest.onnx_sha256:
                s3.download_file(bucket, f"{prefix}/{manifest.onnx_file}", str(model))
        except SimsearchError:
            raise
        except Exception as error:  # botocore's errors: the model store could not be read
            raise StorageUnavailableError(
                f"could not fetch model {info.model_id} from {info.model_uri}: {error}"
            ) from error
        if _sha256(model) != manifest.onnx_sha256:
            model.unlink()
            raise ConfigError(
                f"{info.model_uri}{manifest.onnx_file} does not have the sha256 its manifest records"
            )
        return target


def publish(model_dir: Path, model_uri: str, *, s3: Any) -> bool:
    """Copy the model of ``model_dir`` to ``model_uri`` (``s3://bucket/prefix/``) unless it is there already.

    The deployment's bootstrap calls this with the model its bundle carries, so every model that ever
    served can be fetched again by ``ModelStore`` while its index serves. The model file goes first and the
    manifest last: a manifest in S3 always describes a complete model. Returns whether anything was copied.
    """
    location = urlsplit(model_uri)
    if location.scheme != "s3":
        raise ConfigError(f"model uri {model_uri!r} is not an s3://bucket/prefix/ location")
    bucket, prefix = location.netloc, location.path.strip("/")
    manifest = ModelManifest.load(model_dir)
    try:
        there = s3.get_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST_FILE}")["Body"].read()
    except s3.exceptions.NoSuchKey:
        there = b""
    if there == (model_dir / MANIFEST_FILE).read_bytes():
        return False
    s3.upload_file(str(model_dir / manifest.onnx_file), bucket, f"{prefix}/{manifest.onnx_file}")
    s3.upload_file(str(model_dir / MANIFEST_FILE), bucket, f"{prefix}/{MANIFEST_FILE}")
    return True


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
