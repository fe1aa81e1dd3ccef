"""``python -m devtools.bench_local --images FOLDER``: how fast a folder becomes searchable in local mode.

One process, one run, two measurements, each with its baseline measured in the same run:

- ingestion: a fresh local stack (moto S3/SQS, the worker, the real ingest handler, a new embedded index)
  from the first upload until the worker has settled every notification, as images/s; the baseline is
  ``decode_image`` + ``OnnxEmbedder.embed`` alone over the same images in batches of ten (what the
  handler cannot avoid), so the ratio is what S3, SQS, the handler and the index add;
- search: ``POST /search`` with an image body through the local API server (``--queries`` requests),
  p50/p95; the baseline is decoding and embedding the same image in-process.

Prints a table and writes JSON (default ``build/bench/local.json``). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import requests

from devtools import benchkit
from localmode.harness import local_settings
from localmode.stack import StackConfig, folder_images, started, upload
from simsearch.bootstrap import inference_threads
from simsearch.embedder import OnnxEmbedder
from simsearch.errors import SimsearchError
from simsearch.preprocess import ImageLimits, decode_image
from simsearch.settings import Settings

DEFAULT_IMAGES = Path("../shared/datasets/celebrity-faces")
BATCH = 10  # the SQS batch the worker hands to the handler


def embed_only(embedder: OnnxEmbedder, paths: Sequence[Path], limits: ImageLimits) -> float:
    """Seconds to decode and embed ``paths`` in batches of ``BATCH``; undecodable files are skipped."""
    started = time.perf_counter()
    for start in range(0, len(paths), BATCH):
        images = []
        for path in paths[start : start + BATCH]:
            try:
                images.append(decode_image(path.read_bytes(), limits=limits).rgb)
            except SimsearchError:
                continue
        if images:
            embedder.embed(images)
    return time.perf_counter() - started


def measure(images: Path, *, model_dir: Path, queries: int) -> dict[str, Any]:
    catalogue = folder_images(images)
    paths = list(catalogue.values())
    with tempfile.TemporaryDirectory(prefix="bench-local-") as work:
        settings = local_settings(model_dir=model_dir.resolve(), index_path=Path(work) / "index.sqlite")
        embedder = OnnxEmbedder.load(settings.model_dir, threads=inference_threads(0))
        limits = ImageLimits.of(settings)
        baseline_s = embed_only(embedder, paths, limits)
        ingest_s, documents, search_ms = _through_the_stack(settings, catalogue, queries=queries)
        query_data = [path.read_bytes() for path in paths[:queries]]
        embed_ms = []
        for data in query_data:
            started = time.perf_counter()
            embedder.embed([decode_image(data, limits=limits).rgb])
            embed_ms.append((time.perf_counter() - started) * 1000)
    return {
        "images": len(paths),
        "documents": documents,
        "embed_only_images_per_s": len(paths) / baseline_s,
        "local_stack_seconds_to_searchable": ingest_s,
        "local_stack_images_per_s": len(paths) / ingest_s,
        "search_p50_ms": benchkit.percentile(search_ms, 50),
        "search_p95_ms": benchkit.percentile(search_ms, 95),
        "embed_one_p50_ms": benchkit.percentile(embed_ms, 50),
        "embed_one_p95_ms": benchkit.percentile(embed_ms, 95),
        "queries": len(search_ms),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def _through_the_stack(
    settings: Settings, catalogue: dict[str, Path], *, queries: int
) -> tuple[float, int, list[float]]:
    """Seconds from the first upload until everything is settled, the document count, /search latencies."""
    with started(StackConfig(settings=settings, api_port=0, s3_port=0)) as stack:
        begun = time.perf_counter()
        count = upload(stack.cloud, catalogue, paced_by=stack.progress)
        stack.progress.wait_for(count)
        ingest_s = time.perf_counter() - begun
        documents = int(requests.get(f"{stack.url}/health", timeout=30).json()["documents"])
        latencies = []
        with requests.Session() as session:
            for path in list(catalogue.values())[:queries]:
                data = path.read_bytes()
                started_at = time.perf_counter()
                response = session.post(
                    f"{stack.url}/search?k=10", data=data, headers={"Content-Type": "image/jpeg"}, timeout=30
                )
                latencies.append((time.perf_counter() - started_at) * 1000)
                response.raise_for_status()
    return ingest_s, documents, latencies


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.bench_local", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="a folder (<label>/<file>)")
    parser.add_argument("--model-dir", type=Path, default=benchkit.MODEL_DIR)
    parser.add_argument("--queries", type=int, default=200, help="POST /search requests to time")
    parser.add_argument("--out", type=Path, default=Path("build/bench/local.json"))
    args = parser.parse_args(argv)
    if not args.images.is_dir():
        parser.error(f"--images {args.images} is not a folder")
    if not folder_images(args.images):
        parser.error(f"--images {args.images} holds no images")
    result = measure(args.images, model_dir=args.model_dir, queries=args.queries)
    result["folder"] = str(args.images)
    ratio = result["local_stack_images_per_s"] / result["embed_only_images_per_s"]
    print(f"{result['images']} images from {args.images} ({result['documents']} indexed)")
    print(f"  embed only (baseline)      {result['embed_only_images_per_s']:8.1f} images/s")
    print(
        f"  local stack → searchable   {result['local_stack_images_per_s']:8.1f} images/s "
        f"({result['local_stack_seconds_to_searchable']:.1f} s; {ratio:.2f}× the baseline)"
    )
    for name, prefix in (
        ("POST /search (k=10)       ", "search"),
        ("embed one image (baseline)", "embed_one"),
    ):
        print(f"  {name} p50 {result[prefix + '_p50_ms']:6.1f} ms  p95 {result[prefix + '_p95_ms']:6.1f} ms")
    benchkit.write_report(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
