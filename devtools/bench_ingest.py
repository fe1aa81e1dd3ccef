"""``python -m devtools.bench_ingest``: images per second through the ingest handler, against embedding alone.

One run, one process, one machine: the handler deployed by ``localmode.harness`` on moto S3 and SQS
(S3 notifications produced by moto, in SQS batches of 10 as the event source delivers them), the real
model, and each index backend (the OpenSearch node of ``devtools.opensearch_node`` or
``OPENSEARCH_URL``, and the embedded index). Measured, interleaved per repeat so drift hits every row alike:

- handler, new images: ``handlers.ingest.handler`` on fresh uploads (HEAD, GET, decode, one inference
  per batch, bulk upsert, the check after writing);
- handler, duplicates: the same events delivered again (HEAD and an index read per image, no inference);
- embed from bytes: ``OnnxEmbedder.embed_images`` on the same JPEGs in batches of 10 (the baseline);
- inference only: ``OnnxEmbedder.embed_tensors`` on tensors prepared beforehand.

moto answers in microseconds where S3 takes milliseconds, so the handler's S3 share here is a floor.
Prints a table and writes JSON (default ``build/bench/ingest.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import statistics
import sys
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
from opensearchpy import OpenSearch
from PIL import Image

from devtools import benchkit
from devtools.benchkit import LIMITS, elapsed_seconds
from localmode.harness import BATCH_SIZE, Deployment, deployed, local_settings
from simsearch.bootstrap import inference_threads
from simsearch.embedder import OnnxEmbedder
from simsearch.preprocess import decode_image, to_tensor

DEFAULT_OUT = Path("build/bench/ingest.json")
BATCH = BATCH_SIZE  # the ingest event source's batch size
PHOTO_SIZE = (640, 480)


@dataclass(frozen=True)
class Row:
    backend: str
    images: int
    handler_new_per_s: float
    handler_duplicates_per_s: float
    embed_from_bytes_per_s: float
    inference_only_per_s: float
    cold_start_s: float

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


class Stage:
    """One backend's deployment: the ingest handler, its moto bucket and queue, and its cold start."""

    def __init__(self, deployment: Deployment) -> None:
        self._deployment = deployment
        self.cold_start_s = deployment.cold_start("ingest")  # model load, warm-up, index ensure
        deployment.queue.drain()  # the test event

    def upload(self, prefix: str, images: Sequence[bytes]) -> list[dict[str, Any]]:
        """Put ``images`` under ``prefix``; returns the Lambda events their notifications make."""
        for n, data in enumerate(images):
            self._deployment.upload(f"{prefix}/{n:05d}.jpg", data, ContentType="image/jpeg")
        messages = self._deployment.queue.drain()
        return [
            self._deployment.queue.event(messages[start : start + BATCH])
            for start in range(0, len(messages), BATCH)
        ]

    def invoke(self, events: Sequence[dict[str, Any]]) -> None:
        for event in events:
            response = self._deployment.invoke_ingest(event)
            if response["batchItemFailures"]:
                raise RuntimeError(f"the handler asked for redelivery: {response}")


def measure(
    backend: str, deployment: Deployment, embedder: OnnxEmbedder, images: Sequence[bytes], *, repeats: int
) -> Row:
    stage = Stage(deployment)
    stage.invoke(stage.upload("warm-up", images[:BATCH]))
    batches = [images[start : start + BATCH] for start in range(0, len(images), BATCH)]
    tensors = [
        np.stack([to_tensor(decode_image(data, limits=LIMITS).rgb, embedder.manifest) for data in batch])
        for batch in batches
    ]
    timings: dict[str, list[float]] = {"new": [], "duplicates": [], "bytes": [], "inference": []}
    for repeat in range(repeats):
        events = stage.upload(f"run-{repeat}", images)
        timings["new"].append(elapsed_seconds(lambda: stage.invoke(events)))  # noqa: B023 - called at once
        timings["duplicates"].append(elapsed_seconds(lambda: stage.invoke(events)))  # noqa: B023
        timings["bytes"].append(
            elapsed_seconds(lambda: [embedder.embed_images(b, limits=LIMITS) for b in batches])
        )
        timings["inference"].append(elapsed_seconds(lambda: [embedder.embed_tensors(t) for t in tensors]))
    per_second = {name: len(images) / statistics.median(values) for name, values in timings.items()}
    return Row(
        backend=backend,
        images=len(images),
        handler_new_per_s=per_second["new"],
        handler_duplicates_per_s=per_second["duplicates"],
        embed_from_bytes_per_s=per_second["bytes"],
        inference_only_per_s=per_second["inference"],
        cold_start_s=stage.cold_start_s,
    )


def table(rows: Sequence[Row]) -> str:
    header = (
        f"{'backend':<12}{'images':>7}{'handler':>10}{'handler':>13}{'embed':>10}{'inference':>11}"
        f"{'handler /':>11}{'cold':>9}\n"
        f"{'':<19}{'new img/s':>10}{'dupl. img/s':>13}{'img/s':>10}{'img/s':>11}{'embed':>11}{'start s':>9}"
    )
    lines = [
        f"{row.backend:<12}{row.images:>7}{row.handler_new_per_s:>10.1f}{row.handler_duplicates_per_s:>13.1f}"
        f"{row.embed_from_bytes_per_s:>10.1f}{row.inference_only_per_s:>11.1f}"
        f"{row.handler_share_of_embedding:>11.2f}{row.cold_start_s:>9.1f}"
        for row in rows
    ]
    return "\n".join([header, *lines])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.bench_ingest", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model-dir", type=Path, default=benchkit.MODEL_DIR, help="built by `make model`")
    parser.add_argument("--images", type=int, default=100, help="uploads per timed run (batches of 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (the median is kept)")
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
    images = photos(args.images)
    rows = []
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
            with deployed(settings, quiet=True) as deployment:
                rows.append(measure(backend, deployment, embedder, images, repeats=args.repeats))
            if url:  # an OPENSEARCH_URL node outlives the run: leave it as we found it
                OpenSearch(hosts=[url]).indices.delete(index=f"{settings.index_prefix}-*")
            print(table(rows[-1:]).splitlines()[-1], file=sys.stderr)

    size = "x".join(map(str, PHOTO_SIZE))
    print(f"model {embedder.model_id}, {threads} threads on {os.cpu_count()} cores, {size} JPEGs")
    print(table(rows))
    report = {
        "model_id": embedder.model_id,
        "threads": threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "photo_size": PHOTO_SIZE,
        "batch": BATCH,
        "repeats": args.repeats,
        "versions": {"onnxruntime": onnxruntime.__version__, "numpy": np.__version__},
        "rows": [
            asdict(row) | {"handler_share_of_embedding": row.handler_share_of_embedding} for row in rows
        ],
    }
    benchkit.write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
