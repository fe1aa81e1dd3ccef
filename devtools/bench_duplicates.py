"""``python -m devtools.bench_duplicates``: what the picture check costs ``GET /images/{id}/duplicates``.

One run, one process. The images (default: the first 200 of ``../shared/datasets/celebrity-faces``, so
a few people with many frames per shoot, or generated photographs when that folder is absent) and one
edited copy of each (``evaluation.edits``, seed 0: resized, re-compressed, cropped, ...) are embedded with
the real model into the embedded index, and stored in ``devtools.remote_latency.RemoteImageStore``, which
answers each GET after S3's latency (``--s3-get``, default 15–30 ms) and costs no CPU. Then, for every
original in turn, the query service (``bootstrap.search``, as the query handler builds it) answers:

- **picture check**: the default, which reads the image and each candidate above the model's gate;
- **cosine alone**: the baseline, ``threshold=near_duplicate_threshold``, which reads no image.

Prints each one's p50/p95, the ratio and difference of the medians, the candidates and GETs per call,
and writes JSON (default ``build/bench/duplicates.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from devtools import benchkit
from devtools.bench_ingest import photos
from devtools.remote_latency import Latency, RemoteImageStore, RemoteLatencies
from evaluation.dataset import scan
from evaluation.edits import draw_edit, kinds_for
from simsearch import bootstrap
from simsearch.embedder import OnnxEmbedder
from simsearch.ids import content_id, image_id_for
from simsearch.index.embedded import EmbeddedIndex
from simsearch.index.port import Document, ImageMetadata
from simsearch.preprocess import ImageLimits, decode_image
from simsearch.settings import Settings

DEFAULT_DATASET = Path("../shared/datasets/celebrity-faces")
DEFAULT_MODEL_DIR = Path("build/models/mobilenet_v2")
DEFAULT_OUT = Path("build/bench/duplicates.json")
BUCKET = "images"
CHECKED, COSINE = "picture check", "cosine alone"


def originals(dataset: Path, count: int) -> dict[str, bytes]:
    """``count`` images by key: the dataset's first, in order, or generated photographs without it."""
    if dataset.is_dir():
        return {item.key: item.path.read_bytes() for item in scan(dataset)[:count]}
    print(f"{dataset} not found: generated photographs instead", file=sys.stderr)
    return {f"generated/{n:04d}.jpg": data for n, data in enumerate(photos(count))}


def with_copies(images: dict[str, bytes], *, limits: ImageLimits) -> dict[str, bytes]:
    """Each image and one edited copy of it, of a kind drawn per image (``evaluation.edits``)."""
    collection = dict(images)
    for key, data in images.items():
        [kind] = kinds_for(key, seed=0, count=1)
        edit = draw_edit(kind, seed=0, key=key)
        collection[f"copies/{kind}/{key}"] = edit.apply(decode_image(data, limits=limits).rgb)
    return collection


def indexed(
    collection: dict[str, bytes], *, embedder: OnnxEmbedder, store: RemoteImageStore, index: EmbeddedIndex
) -> None:
    limits = ImageLimits.deployed()
    keys = list(collection)
    vectors = embedder.embed_images([collection[key] for key in keys], limits=limits)
    documents = []
    for key, vector in zip(keys, vectors, strict=True):
        data = collection[key]
        metadata = ImageMetadata(
            bucket=BUCKET,
            key=key,
            etag=store.put(BUCKET, key, data),
            content_sha256=content_id(data),
            model_id=embedder.model_id,
            bytes=len(data),
        )
        documents.append(Document(image_id=image_id_for(BUCKET, key), vector=vector, metadata=metadata))
    written = index.upsert(documents)
    assert not written.failed, written.failed


def run(args: argparse.Namespace) -> dict[str, Any]:
    limits = ImageLimits.deployed()
    images = originals(args.dataset, args.images)
    collection = with_copies(images, limits=limits)
    latencies = RemoteLatencies(s3_get=args.s3_get)
    store = RemoteImageStore(latencies=latencies)
    embedder = OnnxEmbedder.load(args.model_dir, threads=bootstrap.inference_threads(0))
    settings = Settings(model_dir=args.model_dir, images_bucket=BUCKET)
    with tempfile.TemporaryDirectory() as scratch, contextlib.closing(embedder):
        index = EmbeddedIndex.open(
            Path(scratch) / "index.sqlite", prefix="bench", model_id=embedder.model_id, dim=embedder.dim
        )
        index.ensure()
        print(f"embedding {len(collection)} images", file=sys.stderr)
        indexed(collection, embedder=embedder, store=store, index=index)
        service = bootstrap.search(settings, images=store, embedder=embedder, index=index)
        ids = [image_id_for(BUCKET, key) for key in images]
        cosine = settings.near_duplicate_threshold
        candidates = [
            len(service.duplicates(id_, threshold=settings.near_duplicate_gate).near) for id_ in ids
        ]
        timings: dict[str, list[float]] = {CHECKED: [], COSINE: []}
        found = {CHECKED: 0, COSINE: 0}
        gets_before = store.round_trips.get("get", 0)
        for id_ in ids:  # in turn, so that a busy neighbour slows both alike
            for name, threshold in ((CHECKED, None), (COSINE, cosine)):
                started = time.perf_counter()
                answer = service.duplicates(id_, threshold=threshold)
                timings[name].append(time.perf_counter() - started)
                found[name] += len(answer.near)
        gets = store.round_trips.get("get", 0) - gets_before
    rows = {name: _row(seconds) for name, seconds in timings.items()}
    return {
        "images": len(images),
        "documents": len(collection),
        "model_id": embedder.model_id,
        "s3_get": f"{latencies.s3_get} + {latencies.s3_mb_per_s:g} MB/s",
        "gate": settings.near_duplicate_gate,
        "picture_match_threshold": settings.picture_match_threshold,
        "cosine_threshold": cosine,
        "candidates_per_call": sum(candidates) / len(ids),
        "gets_per_call": gets / len(ids),
        "near_per_call": {name: count / len(ids) for name, count in found.items()},
        "rows": rows,
        "ratio_p50": rows[CHECKED]["p50_ms"] / rows[COSINE]["p50_ms"],
        "difference_p50_ms": rows[CHECKED]["p50_ms"] - rows[COSINE]["p50_ms"],
    }


def _row(seconds: Sequence[float]) -> dict[str, float]:
    milliseconds = [s * 1000 for s in seconds]
    return {
        "p50_ms": benchkit.percentile(milliseconds, 50),
        "p95_ms": benchkit.percentile(milliseconds, 95),
        "mean_ms": sum(milliseconds) / len(milliseconds),
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        f"GET /images/{{id}}/duplicates, {report['images']} images + 1 copy each ({report['model_id']}); "
        f"S3 GET {report['s3_get']}",
        f"{'':<16}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}{'near/call':>11}",
    ]
    for name, row in report["rows"].items():
        lines.append(
            f"{name:<16}{row['p50_ms']:>9.1f}{row['p95_ms']:>9.1f}{row['mean_ms']:>9.1f}"
            f"{report['near_per_call'][name]:>11.2f}"
        )
    lines.append(
        f"picture check ÷ cosine alone (p50): {report['ratio_p50']:.2f}× "
        f"(+{report['difference_p50_ms']:.1f} ms); "
        f"{report['candidates_per_call']:.2f} candidates ≥ {report['gate']} and "
        f"{report['gets_per_call']:.2f} GETs per call"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench_duplicates", description=__doc__)
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--images", type=int, default=200, help="originals (each gets one edited copy)")
    parser.add_argument("--model-dir", type=Path, default=DEFAULT_MODEL_DIR)
    parser.add_argument("--s3-get", type=Latency.parse, default=Latency(15, 30), help="ms, e.g. 15-30")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    report = run(args)
    benchkit.write_report(args.out, report)
    print(table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
