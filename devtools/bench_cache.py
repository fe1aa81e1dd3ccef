"""``python -m devtools.bench_cache``: what the embedding cache saves on a second upload of the same images.

One run, one process: moto S3 and SQS wired as ``localmode.harness.deployed`` wires them, the real model,
and each index backend (the OpenSearch node of ``devtools.opensearch_node`` or ``OPENSEARCH_URL``, and
the embedded index). The images (default: the first 100 of ``../shared/datasets/celebrity-faces``, or
generated photographs when that folder is absent) are uploaded under ``first/``, and their
notifications go through the ingest function's service (``bootstrap.ingestion``, as the handler builds
it, in Lambda's batches of 10), then the same bytes under ``second/``. The model is wrapped to count
its inference calls and the images they embed. Between the two, the index is refreshed, as a second
of OpenSearch's refresh interval would (a copy ingested within that second is embedded again).

Prints a table and writes JSON (default ``build/bench/cache.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opensearchpy import OpenSearch

from devtools import benchkit
from devtools.bench_ingest import photos
from handlers.notifications import NotificationBatch
from localmode.harness import BATCH_SIZE, Deployment, deployed, local_settings
from simsearch import bootstrap
from simsearch.bootstrap import inference_threads
from simsearch.embedder import Embeddings, OnnxEmbedder
from simsearch.formats import IMAGE_SUFFIXES
from simsearch.ingestion import EMBEDDING_REUSED
from simsearch.storage import S3ImageStore

if TYPE_CHECKING:
    from PIL import Image

    from simsearch.ingestion import Ingestion
    from simsearch.settings import Settings

DEFAULT_IMAGES = Path("../shared/datasets/celebrity-faces")
DEFAULT_OUT = Path("build/bench/cache.json")


class CountingEmbedder:
    """The real model, counting its inference calls and the images they embed."""

    def __init__(self, inner: OnnxEmbedder) -> None:
        self._inner = inner
        self.calls = 0
        self.images = 0

    @property
    def dim(self) -> int:
        return self._inner.dim

    @property
    def model_id(self) -> str:
        return self._inner.model_id

    def embed(self, images: Sequence[Image.Image]) -> Embeddings:
        self.calls += 1
        self.images += len(images)
        return self._inner.embed(images)

    def close(self) -> None:
        """The model outlives each backend's run: the next one counts on it too."""


@dataclass(frozen=True)
class Row:
    backend: str
    upload: str  # "first" or "second"
    images: int
    indexed: int
    reused: int
    inference_calls: int
    images_embedded: int
    seconds: float

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def corpus(folder: Path, count: int) -> tuple[str, list[bytes]]:
    """``count`` images of ``folder`` (sorted paths), or as many generated photographs if it is absent."""
    if not folder.is_dir():
        return f"{count} generated 640x480 JPEGs ({folder} is absent)", photos(count)
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    chosen = paths[:count]
    distinct = len({path.read_bytes() for path in chosen})
    return f"the first {len(chosen)} images of {folder} ({distinct} distinct)", [
        path.read_bytes() for path in chosen
    ]


def upload_and_ingest(
    deployment: Deployment, service: Ingestion, prefix: str, images: Sequence[bytes]
) -> tuple[float, Counter[str]]:
    """Upload ``images`` under ``prefix``, then sync their notifications in Lambda's batches; the
    seconds the syncs took and the count of each outcome (``reused`` for vectors the cache gave)."""
    for n, data in enumerate(images):
        deployment.upload(f"{prefix}/{n:05d}.jpg", data, ContentType="image/jpeg")
    messages = deployment.queue.drain()
    batches = [
        NotificationBatch.read((m["MessageId"], m["Body"]) for m in messages[start : start + BATCH_SIZE])
        for start in range(0, len(messages), BATCH_SIZE)
    ]
    outcomes: Counter[str] = Counter()
    started = time.perf_counter()
    for batch in batches:
        for outcome in service.sync(batch.changes):
            outcomes[outcome.kind] += 1
            outcomes["reused"] += outcome.reason == EMBEDDING_REUSED
    return time.perf_counter() - started, outcomes


def measure(backend: str, settings: Settings, embedder: OnnxEmbedder, images: Sequence[bytes]) -> list[Row]:
    counting = CountingEmbedder(embedder)
    rows = []
    with deployed(settings, quiet=True) as deployment:
        deployment.queue.drain()  # the s3:TestEvent
        service = bootstrap.ingestion(settings, images=S3ImageStore(deployment.s3), embedder=counting)
        for upload in ("first", "second"):
            calls, embedded = counting.calls, counting.images
            seconds, outcomes = upload_and_ingest(deployment, service, upload, images)
            rows.append(
                Row(
                    backend=backend,
                    upload=upload,
                    images=len(images),
                    indexed=outcomes["indexed"],
                    reused=outcomes["reused"],
                    inference_calls=counting.calls - calls,
                    images_embedded=counting.images - embedded,
                    seconds=seconds,
                )
            )
            _refresh(settings)
        service.close()
    return rows


def _refresh(settings: Settings) -> None:
    if settings.opensearch_url:
        client = OpenSearch(hosts=[settings.opensearch_url])
        client.indices.refresh(index=f"{settings.index_prefix}-*")
        client.close()


def table(rows: Sequence[Row]) -> str:
    header = (
        f"{'backend':<12}{'upload':<8}{'images':>7}{'indexed':>9}{'reused':>8}{'inference':>11}"
        f"{'images':>9}{'seconds':>9}{'img/s':>8}\n"
        f"{'':<44}{'calls':>11}{'embedded':>9}"
    )
    lines = [
        f"{row.backend:<12}{row.upload:<8}{row.images:>7}{row.indexed:>9}{row.reused:>8}"
        f"{row.inference_calls:>11}{row.images_embedded:>9}{row.seconds:>9.2f}{row.images_per_s:>8.1f}"
        for row in rows
    ]
    return "\n".join([header, *lines])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.bench_cache", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model-dir", type=Path, default=benchkit.MODEL_DIR, help="built by `make model`")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="a folder of images")
    parser.add_argument("--count", type=int, default=100, help="how many images each upload puts")
    parser.add_argument("--threads", type=int, default=0, help="0: every core, as off Lambda")
    parser.add_argument(
        "--backends", nargs="+", choices=["opensearch", "embedded"], default=["opensearch", "embedded"]
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not benchkit.model_is_built(args.model_dir):
        return 1

    threads = inference_threads(args.threads)
    embedder = OnnxEmbedder.load(args.model_dir, threads=threads)
    described, images = corpus(args.images, args.count)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as nodes:
        for backend in args.backends:
            url = nodes.enter_context(benchkit.opensearch_url()) if backend == "opensearch" else ""
            settings = local_settings(
                model_dir=args.model_dir,
                index_path=Path(scratch) / "index.sqlite",
                opensearch_url=url,
                index_prefix=f"bench-{uuid.uuid4().hex[:8]}",
                ort_threads=threads,
            )
            rows += measure(backend, settings, embedder, images)
            if url:  # an OPENSEARCH_URL node outlives the run: leave it as we found it
                OpenSearch(hosts=[url]).indices.delete(index=f"{settings.index_prefix}-*")
            print(table(rows[-2:]).split("\n", 2)[-1], file=sys.stderr)

    print(f"model {embedder.model_id}, {threads} threads on {os.cpu_count()} cores; {described}")
    print("second upload: the same bytes under new keys (first/… then second/…), in batches of 10")
    print(table(rows))
    report: dict[str, Any] = {
        "model_id": embedder.model_id,
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "images": described,
        "batch": BATCH_SIZE,
        "rows": [asdict(row) | {"images_per_s": row.images_per_s} for row in rows],
    }
    benchkit.write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
