"""Drive the real paths: index the split's images through the ingest handler, query through the query handler.

Everything AWS would do in between is played in this process by ``localmode.harness.deployed``: images
are put into a moto bucket whose notifications go to a queue wired as the CDK app wires it, the queue's
messages reach ``handlers.ingest.handler`` in Lambda batches, and each query is a ``POST /search``
API Gateway event for ``handlers.query.handler``.
The vectors land in the embedded index (a fresh SQLite file in the work folder) or, with
``opensearch_url``, in OpenSearch under a prefix of their own, removed at the end.

With ``whitening``, the run first fits it on the indexed 80 % (their base-model vectors and folder
labels, never a query's) and appends it to the model (``model.projection``); both handlers then run the
whitened model, as a deployment of it would.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from evaluation.dataset import DatasetError, Item, duplicate_counts, scan
from evaluation.metrics import K, QueryRecord, Retrieved, ann_recall
from evaluation.split import DEFAULT_QUERY_FRACTION, DEFAULT_SEED, Split, stratified_split
from evaluation.vectors import embed_items
from localmode.harness import Deployment, deployed, local_settings
from model.projection import WhiteningSettings, whitened_model
from simsearch.delivery import MAX_RECEIVES
from simsearch.embedder import OnnxEmbedder
from simsearch.errors import SimsearchError
from simsearch.ids import image_id_for
from simsearch.index import connect_index
from simsearch.manifest import ModelManifest
from simsearch.preprocess import ImageLimits
from simsearch.settings import Engine, Settings

BUCKET = "eval-images"
UPLOAD_CHUNK = 10  # images uploaded before their notifications are ingested: one Lambda batch
INLINE_LIMIT = 4 * 1024 * 1024  # larger queries are uploaded and searched by s3_key, as clients must


class EvalError(SimsearchError):
    """The evaluation could not run to the end (images not indexed, a query refused); the message says why."""

    code = "eval_failed"


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What to evaluate and where; ``opensearch_url`` empty means the embedded index."""

    dataset: Path
    model_dir: Path
    work_dir: Path
    opensearch_url: str = ""
    engine: Engine = "lucene"  # a local node has no faiss libraries; an Amazon OpenSearch domain has both
    seed: int = DEFAULT_SEED
    query_fraction: float = DEFAULT_QUERY_FRACTION
    threads: int = 0
    whitening: WhiteningSettings | None = None


@dataclass(frozen=True, kw_only=True)
class IngestTiming:
    """Images indexed; seconds inside the ingest handler, and from the first upload to the last batch."""

    images: int
    handler_seconds: float
    wall_seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.handler_seconds if self.handler_seconds else float("nan")


@dataclass(frozen=True, kw_only=True)
class RunResult:
    config: RunConfig
    manifest: ModelManifest
    backend: Literal["embedded", "opensearch"]
    index: str
    split: Split
    ingest: IngestTiming
    records: tuple[QueryRecord, ...]
    fit_seconds: float = 0.0  # embedding the indexed images with the base model and fitting the whitening


def run(config: RunConfig, *, progress: Callable[[str], None] = lambda _: None) -> RunResult:
    """Split ``config.dataset``, ingest and query it through the handlers, and record every answer.

    Raises:
        DatasetError: the dataset cannot be split.
        EvalError: an image was not indexed, or a query was refused.
        ConfigError: the model directory or settings are unusable.
    """
    split = stratified_split(scan(config.dataset), seed=config.seed, query_fraction=config.query_fraction)
    model_dir, fit_seconds = config.model_dir, 0.0
    if config.whitening is not None:
        began = time.perf_counter()
        model_dir = _whitened(config, config.whitening, split.indexed, progress=progress)
        fit_seconds = time.perf_counter() - began
    manifest = ModelManifest.load(model_dir)
    settings = _settings(config, model_dir)
    progress(f"{len(split.indexed)} images to index, {len(split.queries)} queries, model {manifest.model_id}")
    with deployed(settings, quiet=True) as deployment:  # one log line per image would drown the report
        timing = _ingest(deployment, split.indexed)
        progress(f"indexed {timing.images} images in {timing.handler_seconds:.1f} s of handler time")
        index = connect_index(settings, model_id=manifest.model_id, dim=manifest.embedding_dim)
        try:
            records = _queries(deployment, split, index=index)
        finally:
            index.close()
            _drop_opensearch_indexes(settings)
    return RunResult(
        config=config,
        manifest=manifest,
        backend="opensearch" if settings.opensearch_url else "embedded",
        index=index.name,
        split=split,
        ingest=timing,
        records=tuple(records),
        fit_seconds=fit_seconds,
    )


def _whitened(
    config: RunConfig,
    whitening: WhiteningSettings,
    indexed: Sequence[Item],
    *,
    progress: Callable[[str], None],
) -> Path:
    """Fit ``whitening`` on the base model's vectors of ``indexed``; the whitened model's directory."""
    vectors = embed_items(indexed, config.model_dir, threads=config.threads)
    fitted = whitening.fit(vectors, labels=[item.label for item in indexed])
    manifest = whitened_model(config.model_dir, fitted, out_dir=config.work_dir / "model")
    progress(f"fitted {manifest.projection} on {fitted.images} indexed images: model {manifest.model_id}")
    return config.work_dir / "model"


def _settings(config: RunConfig, model_dir: Path) -> Settings:
    index_file = config.work_dir / "index.sqlite"
    for stale in (index_file, index_file.with_suffix(".sqlite-wal"), index_file.with_suffix(".sqlite-shm")):
        stale.unlink(missing_ok=True)  # every run starts from an empty index
    config.work_dir.mkdir(parents=True, exist_ok=True)
    settings = local_settings(
        model_dir=model_dir,
        index_path=index_file,
        opensearch_url=config.opensearch_url,
        bucket=BUCKET,
        # a prefix per run: a run never reads another's vectors, and cleaning up cannot touch real indexes
        index_prefix=f"eval-{uuid.uuid4().hex[:8]}" if config.opensearch_url else "eval",
        ort_threads=config.threads,
    )
    return replace(settings, engine=config.engine)


def _ingest(deployment: Deployment, items: Sequence[Item]) -> IngestTiming:
    """Upload ``items``; the bucket notifies the queue; its messages reach the ingest handler in batches.

    Uploads go in chunks of one batch, each ingested before the next, as a function subscribed to the
    queue keeps up with a client; it also keeps moto's queue short (its receives scan the whole queue).
    """
    started, handler_seconds = time.perf_counter(), 0.0
    for start in range(0, len(items), UPLOAD_CHUNK):
        for item in items[start : start + UPLOAD_CHUNK]:
            deployment.upload(item.key, item.path.read_bytes())
        drained = deployment.ingest_pending()
        handler_seconds += drained.handler_seconds
        if drained.dead_lettered:
            raise EvalError(
                f"{drained.dead_lettered} upload notifications still failed after {MAX_RECEIVES} receives"
            )
    wall_seconds = time.perf_counter() - started
    return IngestTiming(images=len(items), handler_seconds=handler_seconds, wall_seconds=wall_seconds)


def _queries(deployment: Deployment, split: Split, *, index: Any) -> list[QueryRecord]:
    """Each query image through ``POST /search``; exact search over the stored vectors gives ANN recall."""
    settings = deployment.settings
    _refresh_opensearch(settings, index.name)
    rows = {item.key: row for row, item in enumerate(split.indexed)}
    corpus = _stored_vectors(index, split.indexed)
    if index.count() != len(split.indexed):
        raise EvalError(f"the index holds {index.count()} vectors; {len(split.indexed)} images were uploaded")
    embedder = OnnxEmbedder.load(settings.model_dir, threads=max(settings.ort_threads, 1))
    limits = ImageLimits.of(settings)
    copies = duplicate_counts(split.indexed)
    by_key = {item.key: item for item in split.indexed}
    records: list[QueryRecord] = []
    for query in split.queries:
        data = query.path.read_bytes()
        k = K + copies[query.sha256]  # room to drop the query's own copies and still score ten
        body = json.dumps(_search_payload(deployment, data)).encode()
        began = time.perf_counter()
        answer = deployment.invoke_api(
            "POST", f"/search?k={k}", body=body, headers={"Content-Type": "application/json"}
        )
        latency_ms = (time.perf_counter() - began) * 1000
        results = _results(answer, query=query, by_key=by_key)
        vector = embedder.embed_images([data], limits=limits)[0]
        recall = ann_recall([rows[r.key] for r in results], vector, corpus)
        records.append(QueryRecord(query=query, results=results, latency_ms=latency_ms, ann_recall=recall))
    return records


def _search_payload(deployment: Deployment, data: bytes) -> dict[str, Any]:
    """The image inline, or by ``s3_key`` once uploaded when it is too large to send inline."""
    if len(data) <= INLINE_LIMIT:
        return {"image": base64.b64encode(data).decode()}
    key = f"{deployment.settings.query_upload_prefix}eval-{uuid.uuid4().hex}"
    deployment.upload(key, data)
    return {"s3_key": key}


def _results(answer: Mapping[str, Any], *, query: Item, by_key: Mapping[str, Item]) -> tuple[Retrieved, ...]:
    if answer["statusCode"] != 200:
        raise EvalError(
            f"query {query.key!r} was refused with {answer['statusCode']}: {answer['body'][:300]}"
        )
    body = json.loads(answer["body"])
    unknown = [hit["key"] for hit in body["results"] if hit["key"] not in by_key]
    if unknown:
        raise EvalError(f"query {query.key!r} returned keys that were never indexed: {unknown[:3]}")
    unrecorded = [hit["key"] for hit in body["results"] if hit["content_sha256"] is None]
    if unrecorded:
        raise EvalError(f"query {query.key!r} returned images indexed without a content id: {unrecorded[:3]}")
    return tuple(  # the content identity the index recorded at ingest, as duplicates everywhere use it
        Retrieved(
            key=hit["key"], label=hit["label"], sha256=hit["content_sha256"], similarity=hit["similarity"]
        )
        for hit in body["results"]
    )


def _stored_vectors(index: Any, items: Sequence[Item]) -> npt.NDArray[np.float32]:
    """The vectors the index holds for ``items``, in their order, read back through the port."""
    return np.stack([index.get(image_id_for(BUCKET, item.key)).vector for item in items]).astype(np.float32)


def _refresh_opensearch(settings: Settings, name: str) -> None:
    """OpenSearch shows writes to searches after a refresh; the embedded index shows them at once."""
    if settings.opensearch_url:
        from simsearch.index.opensearch import client_for

        client_for(settings).indices.refresh(index=name)


def _drop_opensearch_indexes(settings: Settings) -> None:
    if settings.opensearch_url:
        from simsearch.index.opensearch import client_for

        client_for(settings).indices.delete(index=f"{settings.index_prefix}-*")


__all__ = ["DatasetError", "EvalError", "IngestTiming", "RunConfig", "RunResult", "run"]
