"""``python -m devtools.bench_ingest``: images per second through the ingest handler, against embedding alone.

One run, one process, one machine, two ways of standing in for AWS:

- ``remote`` (``--remote`` runs this row alone): S3 and OpenSearch as a function in AWS sees them,
  remote services that cost no local CPU but take milliseconds per round trip
  (``devtools.remote_latency``: S3 HEAD/GET 15-30 ms, index reads 5-15 ms, bulk writes 20-50 ms by
  default; ``--s3-head-ms`` and the like change them). The real ingestion service runs on them, built
  by ``bootstrap.ingestion(images=..., index=...)`` and called through the real handler.
  ``--lambda-memory MB`` runs this row on the CPU a function of that size gets (one core and one
  inference thread at the deployed 2,048 MB) rather than on every core of this machine;
- real components: the handler deployed by ``localmode.harness`` on moto S3 and SQS (S3 notifications
  produced by moto, in batches as the event source delivers them) and each index backend (the
  OpenSearch node of ``devtools.opensearch_node`` or ``OPENSEARCH_URL``, and the embedded index). Here
  moto and the JVM burn the cores the model needs.

The real model in every row. Measured, each handler invocation followed at once by its baselines on as
many images, so a busy neighbour on a shared machine slows the handler and its baseline alike:

- handler, new images: ``handlers.ingest.handler`` on uploads of images it has not seen, each run its
  own (an index lookup, a GET per image, decode, one inference per chunk of 10, bulk upsert, the check
  after writing), ``--batch`` messages per invocation (the deployed event source's batch size by
  default);
- handler, duplicates: the same events delivered again (a HEAD per image and an index lookup, no
  inference);
- embed from bytes: ``OnnxEmbedder.embed_images`` on the same JPEGs in the handler's inference batches
  (chunks of 10; the baseline);
- inference only: ``OnnxEmbedder.embed_tensors`` on tensors prepared beforehand.

Besides the throughputs: where the handler's time goes on new images, per stage (fetch, decode,
preprocess, infer, write, verify; ``devtools.stage_clock``), and the process's peak resident memory
while the row ran. Prints tables and writes JSON (default ``build/bench/ingest.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol
from unittest import mock

import numpy as np
import onnxruntime
from opensearchpy import OpenSearch
from PIL import Image

from devtools import benchkit
from devtools.benchkit import LIMITS, elapsed_seconds
from devtools.remote_latency import Latency, RemoteImageStore, RemoteIndex, RemoteLatencies
from devtools.stage_clock import STAGES, StageClock, StageReport
from localmode.harness import (
    BATCH_SIZE,
    QUIET_POWERTOOLS,
    Deployment,
    deployed,
    discard_unpublished_metrics,
    environment,
    ingest_context,
    local_settings,
    sqs_event,
)
from simsearch import bootstrap
from simsearch.bootstrap import inference_threads
from simsearch.embedder import OnnxEmbedder
from simsearch.index.embedded import EmbeddedIndex
from simsearch.index.opensearch import OpenSearchIndex
from simsearch.ingestion import Ingestion
from simsearch.ingestion.pipeline import chunked
from simsearch.preprocess import decode_image, to_tensor
from simsearch.storage import S3ImageStore

DEFAULT_OUT = Path("build/bench/ingest.json")
BATCH = BATCH_SIZE  # the ingest event source's batch size
PHOTO_SIZE = (640, 480)
BACKENDS = ("remote", "opensearch", "embedded")
BUCKET = "images"
REGION = "us-east-1"


@dataclass(frozen=True)
class Row:
    backend: str
    images: int
    handler_new_per_s: float
    handler_duplicates_per_s: float
    embed_from_bytes_per_s: float
    inference_only_per_s: float
    cold_start_s: float
    peak_rss_mb: float = 0.0
    stages: StageReport | None = None
    round_trips: dict[str, int] = field(default_factory=dict)

    @property
    def handler_share_of_embedding(self) -> float:
        """Handler throughput over embed-from-bytes throughput: 1.0 would mean I/O and indexing are free."""
        return self.handler_new_per_s / self.embed_from_bytes_per_s


def photos(count: int, *, seed: int = 0) -> list[bytes]:
    """``count`` different 640x480 JPEGs cut from scikit-learn's two sample photographs."""
    sources = [Image.open(io.BytesIO(photo)).convert("RGB") for photo in benchkit.sample_photos()]
    rng = np.random.default_rng(seed)
    encoded = []
    for n in range(count):
        source = sources[n % len(sources)]
        left, top = int(rng.integers(0, source.width // 3)), int(rng.integers(0, source.height // 3))
        crop = source.crop((left, top, left + source.width * 2 // 3, top + source.height * 2 // 3))
        buffer = io.BytesIO()
        crop.resize(PHOTO_SIZE, Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=90)
        encoded.append(buffer.getvalue())
    return encoded


class Handler(Protocol):
    """One way of running the ingest handler: where uploads go, and how its events are delivered."""

    cold_start_s: float

    def upload(self, prefix: str, images: Sequence[bytes]) -> list[dict[str, Any]]: ...

    def invoke(self, events: Sequence[dict[str, Any]]) -> None: ...


class Stage:
    """One backend's deployment: the ingest handler, its moto bucket and queue, and its cold start."""

    def __init__(self, deployment: Deployment, *, batch: int = BATCH) -> None:
        self._deployment = deployment
        self._batch = batch
        self.cold_start_s = deployment.cold_start("ingest")  # model load, warm-up, index ensure
        deployment.queue.drain()  # the test event

    def upload(self, prefix: str, images: Sequence[bytes]) -> list[dict[str, Any]]:
        """Put ``images`` under ``prefix``; returns the Lambda events their notifications make."""
        for n, data in enumerate(images):
            self._deployment.upload(f"{prefix}/{n:05d}.jpg", data, ContentType="image/jpeg")
        messages = self._deployment.queue.drain()
        return [
            self._deployment.queue.event(messages[start : start + self._batch])
            for start in range(0, len(messages), self._batch)
        ]

    def invoke(self, events: Sequence[dict[str, Any]]) -> None:
        for event in events:
            _check(self._deployment.invoke_ingest(event))

    @property
    def round_trips(self) -> dict[str, int]:
        return {}


class RemoteStage:
    """The real ingestion service and handler on the remote-latency stand-ins of S3 and OpenSearch.

    The service is built by ``bootstrap.ingestion`` with the stand-ins handed in (its model loaded
    as the function's composition root would), and the handler's root returns it.
    """

    def __init__(self, settings: Any, latencies: RemoteLatencies, *, dim: int, batch: int = BATCH) -> None:
        self._batch = batch
        self.store = RemoteImageStore(latencies)
        self.index = RemoteIndex(dim=dim, latencies=latencies)
        started = time.perf_counter()
        self.service: Ingestion = bootstrap.ingestion(settings, images=self.store, index=self.index)
        self.cold_start_s = time.perf_counter() - started

    def upload(self, prefix: str, images: Sequence[bytes]) -> list[dict[str, Any]]:
        messages = []
        for n, data in enumerate(images):
            key = f"{prefix}/{n:05d}.jpg"
            etag = self.store.put(BUCKET, key, data, content_type="image/jpeg")
            body = json.dumps({"Records": [_created(key, etag=etag, size=len(data), sequencer=n + 1)]})
            messages.append(
                {
                    "MessageId": str(uuid.uuid4()),
                    "ReceiptHandle": uuid.uuid4().hex,
                    "Body": body,
                    "MD5OfBody": hashlib.md5(body.encode()).hexdigest(),
                }
            )
        arn = f"arn:aws:sqs:{REGION}:000000000000:uploads"
        return [
            sqs_event(messages[start : start + self._batch], queue_arn=arn, region=REGION)
            for start in range(0, len(messages), self._batch)
        ]

    def invoke(self, events: Sequence[dict[str, Any]]) -> None:
        from handlers import ingest

        with mock.patch.object(ingest, "service", lambda: self.service):
            for event in events:
                _check(dict(ingest.handler(dict(event), ingest_context())))
                discard_unpublished_metrics()

    @property
    def round_trips(self) -> dict[str, int]:
        return {f"s3 {k}": v for k, v in self.store.round_trips.items()} | {
            f"index {k}": v for k, v in self.index.round_trips.items()
        }

    def close(self) -> None:
        self.service.close()


def _created(key: str, *, etag: str, size: int, sequencer: int) -> dict[str, Any]:
    """An ``ObjectCreated:Put`` record as S3 writes it (the fields the handler reads)."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": "2025-01-02T03:04:05.678Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
            "object": {"key": key, "size": size, "eTag": etag, "sequencer": f"{sequencer:016X}"},
        },
    }


def _check(response: dict[str, Any]) -> None:
    if response["batchItemFailures"]:
        raise RuntimeError(f"the handler asked for redelivery: {response}")


def instrumented(clock: StageClock) -> contextlib.AbstractContextManager[StageClock]:
    """``clock`` timing the stages of every adapter a row may use."""
    from simsearch.ingestion import documents

    return clock.instrument(
        stores=[S3ImageStore, RemoteImageStore],
        indexes=[OpenSearchIndex, EmbeddedIndex, RemoteIndex],
        embedders=[OnnxEmbedder],
        decoders=[(documents, "decode_image")],
        preprocessors=[(sys.modules["simsearch.embedder"], "to_tensor")],
    )


def measure(backend: str, stage: Handler, embedder: OnnxEmbedder, runs: Sequence[Sequence[bytes]]) -> Row:
    """Each handler invocation on new images is followed at once by embed-only and inference-only on as
    many images (in the handler's chunks of 10), so a neighbour's load on a shared machine slows the
    handler and its baseline alike; the duplicates follow each run as a whole.

    Every run uploads images of its own (``runs[0]`` warms up): the handler looks each image's content
    up in the index and embeds only what it has not seen, so images a run before had indexed would
    measure the cache, not ingestion.
    """
    warm_up, *timed = runs
    stage.invoke(stage.upload("warm-up", warm_up))
    timings: dict[str, list[float]] = {"new": [], "duplicates": [], "bytes": [], "inference": []}
    clock = StageClock()
    with instrumented(clock):
        for repeat, images in enumerate(timed):
            events = stage.upload(f"run-{repeat}", images)
            seconds = dict.fromkeys(("new", "bytes", "inference"), 0.0)
            position = 0
            for event in events:
                mine = images[position : position + len(event["Records"])]
                position += len(mine)
                chunks = chunked(mine)  # the handler's inference calls: the baseline makes the same
                tensors = [
                    np.stack(
                        [
                            to_tensor(decode_image(data, limits=LIMITS).rgb, embedder.manifest)
                            for data in chunk
                        ]
                    )
                    for chunk in chunks
                ]
                with clock.recording():
                    seconds["new"] += elapsed_seconds(lambda: stage.invoke([event]))  # noqa: B023
                seconds["bytes"] += elapsed_seconds(
                    lambda: [embedder.embed_images(chunk, limits=LIMITS) for chunk in chunks]  # noqa: B023
                )
                seconds["inference"] += elapsed_seconds(
                    lambda: [embedder.embed_tensors(batch) for batch in tensors]  # noqa: B023
                )
            for name, value in seconds.items():
                timings[name].append(value)
            timings["duplicates"].append(elapsed_seconds(lambda: stage.invoke(events)))  # noqa: B023
    images = timed[0]
    per_second = {name: len(images) / statistics.median(values) for name, values in timings.items()}
    return Row(
        backend=backend,
        images=len(images),
        handler_new_per_s=per_second["new"],
        handler_duplicates_per_s=per_second["duplicates"],
        embed_from_bytes_per_s=per_second["bytes"],
        inference_only_per_s=per_second["inference"],
        cold_start_s=stage.cold_start_s,
        stages=clock.report(len(images) * len(timed)),
        round_trips=getattr(stage, "round_trips", {}),
    )


def table(rows: Sequence[Row]) -> str:
    header = (
        f"{'backend':<12}{'images':>7}{'handler':>10}{'handler':>13}{'embed':>10}{'inference':>11}"
        f"{'handler /':>11}{'cold':>9}{'peak':>8}\n"
        f"{'':<19}{'new img/s':>10}{'dupl. img/s':>13}{'img/s':>10}{'img/s':>11}{'embed':>11}{'start s':>9}"
        f"{'RSS MB':>8}"
    )
    lines = [
        f"{row.backend:<12}{row.images:>7}{row.handler_new_per_s:>10.1f}{row.handler_duplicates_per_s:>13.1f}"
        f"{row.embed_from_bytes_per_s:>10.1f}{row.inference_only_per_s:>11.1f}"
        f"{row.handler_share_of_embedding:>11.2f}{row.cold_start_s:>9.1f}{row.peak_rss_mb:>8.0f}"
        for row in rows
    ]
    return "\n".join([header, *lines])


def stage_table(rows: Sequence[Row]) -> str:
    """Per stage on new images: busy ms per image (summed over threads), then % of the handler's wall time."""
    header = (
        f"{'backend':<12}" + "".join(f"{stage:>17}" for stage in STAGES) + f"{'other':>8}{'I/O alone':>11}"
    )
    lines = [header]
    for row in rows:
        if row.stages is None:
            continue
        busy, share = row.stages.busy_ms, row.stages.wall_share
        cells = "".join(f"{busy[stage]:>9.1f} ms{100 * share[stage]:>4.0f}%" for stage in STAGES)
        exposed = row.stages.exposed_io_ms
        lines.append(f"{row.backend:<12}{cells}{100 * row.stages.other_share:>7.0f}%{exposed:>7.0f} ms")
    return "\n".join(lines)


@contextlib.contextmanager
def _remote_stage(
    settings: Any, latencies: RemoteLatencies, *, dim: int, batch: int
) -> Iterator[RemoteStage]:
    with environment(QUIET_POWERTOOLS):
        stage = RemoteStage(settings, latencies, dim=dim, batch=batch)
        try:
            yield stage
        finally:
            stage.close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.bench_ingest", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model-dir", type=Path, default=benchkit.MODEL_DIR, help="built by `make model`")
    parser.add_argument("--images", type=int, default=100, help="uploads per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (the median is kept)")
    parser.add_argument("--threads", type=int, default=0, help="0: every core, as off Lambda")
    parser.add_argument(
        "--lambda-memory",
        type=int,
        default=0,
        metavar="MB",
        help="the remote row alone, on the CPU a function of MB gets: the process pinned to as many cores "
        "as Lambda gives it (1 at the deployed 2,048 MB), one inference thread per core; 0: every core",
    )
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--remote", action="store_true", help="the remote-latency row alone")
    parser.add_argument(
        "--batch",
        type=int,
        default=BATCH,
        help=f"messages per handler invocation ({BATCH}: the deployed event source's; a backfill syncs 20-32 "
        "keys at once); embed-only embeds the same chunks of 10 the handler's inference calls take",
    )
    defaults = RemoteLatencies()
    for flag, default, what in (
        ("--s3-head-ms", defaults.s3_head, "S3 HEAD"),
        ("--s3-get-ms", defaults.s3_get, "S3 GET (before transfer time)"),
        ("--index-read-ms", defaults.index_read, "an index read (get, multi-get)"),
        ("--bulk-ms", defaults.index_bulk, "a bulk write"),
    ):
        parser.add_argument(flag, type=Latency.parse, default=default, help=f"{what}: LOW-HIGH ms")
    parser.add_argument("--s3-mbps", type=float, default=defaults.s3_mb_per_s, help="S3 GET transfer MB/s")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not benchkit.model_is_built(args.model_dir):
        return 1
    backends = ["remote"] if args.remote or args.lambda_memory else args.backends
    latencies = RemoteLatencies(
        s3_head=args.s3_head_ms,
        s3_get=args.s3_get_ms,
        s3_mb_per_s=args.s3_mbps,
        index_read=args.index_read_ms,
        index_bulk=args.bulk_ms,
    )
    threads = (
        benchkit.lambda_cpu(args.lambda_memory) if args.lambda_memory else inference_threads(args.threads)
    )
    embedder = OnnxEmbedder.load(args.model_dir, threads=threads)
    runs = [photos(args.images if run else BATCH, seed=run) for run in range(args.repeats + 1)]
    rows = run_rows(backends, args, embedder, runs, latencies=latencies, threads=threads)

    size = "x".join(map(str, PHOTO_SIZE))
    print(
        f"model {embedder.model_id}, {threads} threads on {len(os.sched_getaffinity(0))} of {os.cpu_count()} "
        f"cores, {size} JPEGs, {args.batch} messages per invocation"
        + (f", as a {args.lambda_memory} MB function" if args.lambda_memory else "")
    )
    if "remote" in backends:
        print(f"remote: {latencies.describe()}")
    print(table(rows))
    print(
        "\nwhere the handler's time goes on new images: busy ms per image (summed over threads), % of the "
        "handler's wall time;\nI/O alone: ms per invocation in which the handler waited on S3 or the index "
        "and no decode, preprocess or inference ran"
    )
    print(stage_table(rows))
    for row in rows:
        if row.round_trips:
            trips = ", ".join(f"{kind} {count}" for kind, count in sorted(row.round_trips.items()))
            print(f"{row.backend} round trips (all runs): {trips}")
    for row in rows:
        print(
            f"ratio {row.backend}: handler {row.handler_new_per_s:.1f} img/s / embed-only "
            f"{row.embed_from_bytes_per_s:.1f} img/s = {row.handler_share_of_embedding:.2f}"
        )
    report = {
        "model_id": embedder.model_id,
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "cores_used": len(os.sched_getaffinity(0)),
        "lambda_memory_mb": args.lambda_memory or None,
        "machine": platform.processor() or platform.machine(),
        "photo_size": PHOTO_SIZE,
        "batch": args.batch,
        "repeats": args.repeats,
        "remote_latencies": latencies.describe(),
        "versions": {"onnxruntime": onnxruntime.__version__, "numpy": np.__version__},
        "rows": [
            asdict(row) | {"handler_share_of_embedding": row.handler_share_of_embedding} for row in rows
        ],
    }
    benchkit.write_report(args.out, report)
    return 0


def run_rows(
    backends: Sequence[str],
    args: argparse.Namespace,
    embedder: OnnxEmbedder,
    runs: Sequence[Sequence[bytes]],
    *,
    latencies: RemoteLatencies,
    threads: int,
) -> list[Row]:
    """One row per backend (on the same ``runs`` of images), each with the process's peak resident memory
    while it ran."""
    rows = []
    with tempfile.TemporaryDirectory() as scratch, contextlib.ExitStack() as nodes:
        for backend in backends:
            url = nodes.enter_context(benchkit.opensearch_url()) if backend == "opensearch" else ""
            settings = local_settings(
                model_dir=args.model_dir,
                index_path=Path(scratch) / f"{backend}.sqlite",
                opensearch_url=url,
                index_prefix=f"bench-{uuid.uuid4().hex[:8]}",
                ort_threads=threads,
            )
            benchkit.reset_peak_rss()
            if backend == "remote":
                with _remote_stage(settings, latencies, dim=embedder.dim, batch=args.batch) as remote:
                    row = measure(backend, remote, embedder, runs)
            else:
                with deployed(settings, quiet=True) as deployment:
                    stage = Stage(deployment, batch=args.batch)
                    row = measure(backend, stage, embedder, runs)
            rows.append(replace(row, peak_rss_mb=benchkit.peak_rss_mb()))
            if url:  # an OPENSEARCH_URL node outlives the run: leave it as we found it
                OpenSearch(hosts=[url]).indices.delete(index=f"{settings.index_prefix}-*")
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr)
    return rows


if __name__ == "__main__":
    sys.exit(main())
