"""The composition roots: settings in, a service wired to its adapters out; any part may be handed in.

The Lambda handlers call these once per execution environment (``@cache``), the backfill commands
once per run, and tests hand in the parts they replace (an in-memory image store, a stub embedder, an
index they hold). Adapters are imported inside the functions, as in ``simsearch.index.connect_index``:
the query side need not import faiss, nor local mode opensearch-py. A service owns what it is built
with: ``close()`` releases every part, the handed-in ones too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from botocore.config import Config

from simsearch.ingestion import DEFAULT_WORKERS, IngestionService
from simsearch.preprocess import ImageLimits
from simsearch.search import QueryConfig, SearchService

if TYPE_CHECKING:
    from simsearch.embedder import Embedder
    from simsearch.index.port import VectorIndex
    from simsearch.settings import Settings
    from simsearch.storage import ImageStore, S3ImageStore

LAMBDA_MEMORY = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
"""Set by Lambda to the function's memory in MB; absent anywhere else."""

INGEST_S3 = Config(retries={"mode": "standard"}, max_pool_connections=DEFAULT_WORKERS)
"""Ingestion reads a batch's objects at once; standard retries back off when S3 throttles."""

QUERY_S3 = Config(signature_version="s3v4")
"""SigV4 signing, which presigned POSTs and URLs need in every region."""


def ingestion(
    settings: Settings,
    *,
    images: ImageStore | None = None,
    embedder: Embedder | None = None,
    index: VectorIndex | None = None,
) -> IngestionService:
    """The ingestion service ``settings`` describe, its index and failure log created if missing."""
    from simsearch.index import connect_failure_log

    embedder = load_embedder(settings) if embedder is None else embedder
    index = _index(settings, embedder) if index is None else index
    failures = connect_failure_log(settings)
    index.ensure()
    failures.ensure()
    return IngestionService(
        images=image_store(settings, config=INGEST_S3) if images is None else images,
        embedder=embedder,
        index=index,
        failures=failures,
        limits=ImageLimits.of(settings),
        query_upload_prefix=settings.query_upload_prefix,
    )


def search(
    settings: Settings,
    *,
    images: ImageStore | None = None,
    embedder: Embedder | None = None,
    index: VectorIndex | None = None,
) -> SearchService:
    """The query service ``settings`` describe; the index must exist (the bootstrap function creates it)."""
    embedder = load_embedder(settings) if embedder is None else embedder
    return SearchService(
        embedder=embedder,
        index=_index(settings, embedder) if index is None else index,
        images=image_store(settings, config=QUERY_S3) if images is None else images,
        config=QueryConfig.from_settings(settings),
    )


def load_embedder(settings: Settings) -> Embedder:
    """The model of ``settings``, loaded and warmed up (most of a cold start)."""
    from simsearch.embedder import OnnxEmbedder

    return OnnxEmbedder.load(settings.model_dir, threads=inference_threads(settings.ort_threads))


def image_store(settings: Settings, *, config: Config) -> S3ImageStore:
    """S3 in the settings' region, through a boto3 client configured with ``config``."""
    import boto3

    from simsearch.storage import S3ImageStore

    return S3ImageStore(boto3.client("s3", region_name=settings.aws_region, config=config))


def inference_threads(configured: int, environ: Mapping[str, str] = os.environ) -> int:
    """ONNX Runtime threads for this process: ``configured`` if positive, else what Lambda's memory
    buys on Lambda, else one per core (``simsearch.embedder.ort_threads`` says why)."""
    from simsearch.embedder import ort_threads

    memory = environ.get(LAMBDA_MEMORY)
    return ort_threads(configured, lambda_memory_mb=int(memory) if memory else None, cpu_count=os.cpu_count())


def _index(settings: Settings, embedder: Embedder) -> VectorIndex:
    from simsearch.index import connect_index

    return connect_index(settings, model_id=embedder.model_id, dim=embedder.dim)
