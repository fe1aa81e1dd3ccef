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
from typing import TYPE_CHECKING, Any

from botocore.config import Config

from simsearch import reindex
from simsearch.ingestion import DEFAULT_WORKERS, Ingestion, IngestionService
from simsearch.ingestion.collection import CollectionIngestion
from simsearch.manifest import ModelManifest
from simsearch.models import ModelStore
from simsearch.preprocess import ImageLimits
from simsearch.reindex import Attached
from simsearch.search import QueryConfig, SearchService
from simsearch.targets import CollectionTargets, FixedServing, Serving, Target

if TYPE_CHECKING:
    from simsearch.embedder import Embedder
    from simsearch.index.port import FailureLog, VectorIndex
    from simsearch.settings import Settings
    from simsearch.storage import ImageStore, S3ImageStore

LAMBDA_MEMORY = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
"""Set by Lambda to the function's memory in MB; absent anywhere else."""

INGEST_S3 = Config(retries={"mode": "standard"}, max_pool_connections=DEFAULT_WORKERS)
"""Ingestion reads a batch's objects at once; standard retries back off when S3 throttles."""

QUERY_S3_REQUESTS = 2
"""The most S3 requests one API call makes: a search by key reads the object's headers, then its bytes."""
QUERY_S3_ATTEMPTS = 2
QUERY_S3_CONNECT_S = 0.5
QUERY_S3_READ_S = 0.5  # between two reads of the socket, not for a whole object

QUERY_S3 = Config(
    signature_version="s3v4",
    connect_timeout=QUERY_S3_CONNECT_S,
    read_timeout=QUERY_S3_READ_S,
    retries={"mode": "standard", "total_max_attempts": QUERY_S3_ATTEMPTS},
)
"""SigV4 signing, which presigned POSTs and URLs need in every region, and a time budget: botocore's
defaults (60 s to connect, 60 s per read, retried) would outlast the function. A search by key waits on a
silent S3 at most requests × attempts × (connect + read) = 4 s, inside the part of the function's timeout
that ``infra.config.QUERY_RESERVE_S`` keeps for everything but the index (checked by a unit test)."""


def ingestion(
    settings: Settings,
    *,
    images: ImageStore | None = None,
    embedder: Embedder | None = None,
    index: VectorIndex | None = None,
) -> Ingestion:
    """Ingestion into every index that takes writes, each with its model; its failure log created if missing.

    With ``index`` given, that one index and ``embedder`` only (created if missing): for callers that
    hold their index themselves, as tests, the evaluation and the benchmarks do.
    """
    if index is None:
        return collection_ingestion(settings, images=images, embedder=embedder)
    index.ensure()
    return IngestionService(
        images=image_store(settings, config=INGEST_S3) if images is None else images,
        embedder=load_embedder(settings) if embedder is None else embedder,
        index=index,
        failures=_failure_log(settings),
        limits=ImageLimits.of(settings),
        query_upload_prefix=settings.query_upload_prefix,
    )


def collection_ingestion(
    settings: Settings, *, images: ImageStore | None = None, embedder: Embedder | None = None
) -> CollectionIngestion:
    """Ingestion into every index that takes writes, or one of them (``into``: a backfill's batches)."""
    return CollectionIngestion(
        targets(settings, embedder=embedder),
        images=image_store(settings, config=INGEST_S3) if images is None else images,
        failures=_failure_log(settings),
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
    """The query service: the serving index, each query embedded with that index's model.

    With ``index`` given, that index and ``embedder`` always (callers that hold their index themselves).
    """
    if index is None:
        serving: Serving = targets(settings, embedder=embedder)
    else:
        serving = FixedServing(Target(index, load_embedder(settings) if embedder is None else embedder))
    return SearchService(
        serving=serving,
        images=image_store(settings, config=QUERY_S3) if images is None else images,
        config=QueryConfig.from_settings(settings),
    )


def targets(settings: Settings, *, embedder: Embedder | None = None) -> CollectionTargets:
    """The collection's indexes with their models: the carried one, or any other fetched by the store."""
    from simsearch.embedder import OnnxEmbedder
    from simsearch.index import connect_collection

    threads = inference_threads(settings.ort_threads)
    models = ModelStore(
        carried=load_embedder(settings) if embedder is None else embedder,
        load=lambda model_dir: OnnxEmbedder.load(model_dir, threads=threads),
        cache_dir=settings.model_cache_dir,
        s3=lambda: _s3(settings, config=INGEST_S3),
    )
    return CollectionTargets(connect_collection(settings), models)


def attach(settings: Settings) -> Attached:
    """Make the carried model's index take writes, and serve if nothing serves yet (see ``reindex``).

    The deployment's bootstrap does this in AWS, local mode when it starts; the functions never do.
    """
    from simsearch.index import connect_collection

    manifest = ModelManifest.load(settings.model_dir)
    collection = connect_collection(settings)
    try:
        return reindex.attach(
            collection, model_id=manifest.model_id, model_uri=model_uri(settings), dim=manifest.embedding_dim
        )
    finally:
        collection.close()


def _failure_log(settings: Settings) -> FailureLog:
    from simsearch.index import connect_failure_log

    failures = connect_failure_log(settings)
    failures.ensure()
    return failures


def model_uri(settings: Settings) -> str:
    """Where other functions find the carried model: the deployment's model store, or its directory here."""
    return settings.model_uri or str(settings.model_dir.resolve())


def load_embedder(settings: Settings) -> Embedder:
    """The model of ``settings``, loaded and warmed up (most of a cold start)."""
    from simsearch.embedder import OnnxEmbedder

    return OnnxEmbedder.load(settings.model_dir, threads=inference_threads(settings.ort_threads))


def image_store(settings: Settings, *, config: Config) -> S3ImageStore:
    """S3 in the settings' region, through a boto3 client configured with ``config``."""
    from simsearch.storage import S3ImageStore

    return S3ImageStore(_s3(settings, config=config))


def _s3(settings: Settings, *, config: Config) -> Any:
    import boto3

    return boto3.client("s3", region_name=settings.aws_region, config=config)


def inference_threads(configured: int, environ: Mapping[str, str] = os.environ) -> int:
    """ONNX Runtime threads for this process: ``configured`` if positive, else what Lambda's memory
    buys on Lambda, else one per core (``simsearch.embedder.ort_threads`` says why)."""
    from simsearch.embedder import ort_threads

    memory = environ.get(LAMBDA_MEMORY)
    return ort_threads(configured, lambda_memory_mb=int(memory) if memory else None, cpu_count=os.cpu_count())
