"""Recall and speed of the vector index adapters: ``make bench-index``. A benchmark, not a test.

    python -m devtools.bench_index [--n 20000] [--hard] [--force-merge] [--model-dir DIR]

For each adapter and search setting: recall@10 against exact search (numpy, same run), queries/s from
one sequential client through the adapter (HTTP and JSON included), and bulk indexing docs/s. The exact
numpy search is the baseline every QPS is also given against. Synthetic data imitates MobileNetV2
embeddings: 1280 non-negative values (post-ReLU pooling), L2-normalised, in nested clusters whose
similarity profile matches real MobileNetV2 embeddings (see ``clustered``); queries are new points
from the same distribution; ``--hard`` adds a stress set. Real embeddings come next: the images of
``--dataset-dir`` (``../shared/datasets/celebrity-faces`` when present) embedded with ``--model-dir``
and cached in ``build/bench/``, or ``--dataset-embeddings`` (an (n, dim) float32 ``.npy``); a tenth of
the rows are the queries.

OpenSearch: ``OPENSEARCH_URL``, else a node started with ``devtools.opensearch_node`` (lucene only:
the node has no faiss libraries). Results: a table on stdout and ``build/bench/index.json``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from opensearchpy import OpenSearch

from devtools import benchkit
from simsearch.index.embedded import EmbeddedIndex, HnswParams
from simsearch.index.naming import alias_name
from simsearch.index.opensearch import IndexConfig, OpenSearchIndex
from simsearch.index.port import Document, ImageMetadata, VectorIndex

K = 10
DATASET_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "celebrity-faces"
TIE_TOLERANCE = 1e-5  # float32 rounding between numpy and the engines
BATCH = 200
Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True, kw_only=True)
class Run:
    dataset: str
    adapter: str
    m: int | None
    ef_construction: int | None
    ef_search: int | None
    recall_at_10: float
    qps: float
    p50_ms: float
    qps_vs_exact: float
    bulk_docs_per_s: float
    first_query_s: float  # the embedded index builds its faiss structure from SQLite here


def clustered(n: int, dim: int, *, seed: int, noise: float = 0.5) -> Matrix:
    """Non-negative unit vectors in nested clusters, like image embeddings of classes and identities.

    A shared positive component, 20 coarse and 600 fine cluster directions, and noise, clipped at 0
    (ReLU) and normalised. The weights were fitted to MobileNetV2 embeddings of celebrity-faces: mean
    cosine ~0.7, nearest neighbour ~0.89, 10th ~0.84 (real: 0.66, 0.87, 0.83), so neighbours sit close
    together as in real data rather than in well-separated blobs that any graph search gets right.
    ``noise=2`` is the stress case: the 10th neighbour is barely closer than the 100th (0.54 vs 0.52).
    """
    rng = np.random.default_rng(seed)
    shared = np.abs(rng.standard_normal(dim)).astype(np.float32)
    coarse = rng.standard_normal((20, dim)).astype(np.float32)
    fine = rng.standard_normal((600, dim)).astype(np.float32)
    parent = rng.integers(0, len(coarse), len(fine))
    member = rng.integers(0, len(fine), n)
    jitter = rng.standard_normal((n, dim)).astype(np.float32)
    points = np.maximum(shared + 0.6 * coarse[parent[member]] + 0.4 * fine[member] + noise * jitter, 0)
    result: Matrix = points / np.linalg.norm(points, axis=1, keepdims=True)
    return result


@dataclass(frozen=True)
class Truth:
    """Exact search's answer: a hit counts if it is as similar as the exact 10th neighbour.

    Counting by similarity rather than by id keeps ties (duplicate images have equal vectors) from
    turning a correct answer into a miss, as in ann-benchmarks.
    """

    data: Matrix
    kth: Matrix  # per query, the exact K-th best cosine

    @classmethod
    def of(cls, data: Matrix, queries: Matrix) -> Truth:
        scores = queries @ data.T
        return cls(data=data, kth=-np.partition(-scores, K - 1, axis=1)[:, K - 1])

    def recall(self, query_number: int, query: Matrix, image_ids: Sequence[str]) -> float:
        similarities = self.data[[int(i) for i in image_ids]] @ query
        return min(K, int(np.sum(similarities >= self.kth[query_number] - TIE_TOLERANCE))) / K


def exact_qps(data: Matrix, queries: Matrix) -> float:
    """Brute force, one query at a time: the baseline every adapter's speed is compared with."""
    started = time.perf_counter()
    for query in queries:
        scores = data @ query
        np.argpartition(-scores, K)[:K]
    return len(queries) / (time.perf_counter() - started)


def documents(data: Matrix) -> Iterator[list[Document]]:
    for start in range(0, len(data), BATCH):
        yield [
            Document(image_id=str(i), vector=data[i], metadata=ImageMetadata(bucket="bench", key=f"{i}.jpg"))
            for i in range(start, min(start + BATCH, len(data)))
        ]


def bulk_load(index: VectorIndex, data: Matrix) -> float:
    """Write every row through the adapter; docs/s."""
    started = time.perf_counter()
    for batch in documents(data):
        result = index.upsert(batch)
        if result.failed:
            raise SystemExit(
                f"bulk load failed for {len(result.failed)} documents: {next(iter(result.failed.values()))}"
            )
    return len(data) / (time.perf_counter() - started)


@dataclass(frozen=True)
class Measured:
    recall: float
    qps: float
    p50_ms: float
    first_query_s: float


def measure(index: VectorIndex, queries: Matrix, truth: Truth) -> Measured:
    """Recall@10, queries/s and median latency of sequential searches, after one warm-up query."""
    started = time.perf_counter()
    index.search(queries[0], k=K)  # warms caches; the embedded index builds its faiss structure
    first = time.perf_counter() - started
    latencies, recalls = [], []
    for number, query in enumerate(queries):
        started = time.perf_counter()
        hits = index.search(query, k=K)
        latencies.append(time.perf_counter() - started)
        recalls.append(truth.recall(number, query, [h.image_id for h in hits]))
    return Measured(
        float(np.mean(recalls)), len(queries) / sum(latencies), 1000 * statistics.median(latencies), first
    )


@dataclass(frozen=True)
class Workload:
    """One dataset, ready for every adapter: its rows, its queries, and exact search's answers and speed."""

    name: str
    data: Matrix
    queries: Matrix
    truth: Truth
    baseline_qps: float

    @classmethod
    def of(cls, name: str, data: Matrix, queries: Matrix) -> Workload:
        truth = Truth.of(data, queries)
        return cls(name=name, data=data, queries=queries, truth=truth, baseline_qps=exact_qps(data, queries))


@dataclass(frozen=True)
class Setting:
    """The adapter a row measured and, for a graph search, its HNSW parameters."""

    adapter: str
    m: int | None = None
    ef_construction: int | None = None
    ef_search: int | None = None


def measured_run(workload: Workload, setting: Setting, index: VectorIndex, *, docs_per_s: float) -> Run:
    """Measure one setting and print its row at once: a full run takes long enough to want its progress."""
    measured = measure(index, workload.queries, workload.truth)
    run = Run(
        dataset=workload.name,
        adapter=setting.adapter,
        m=setting.m,
        ef_construction=setting.ef_construction,
        ef_search=setting.ef_search,
        recall_at_10=measured.recall,
        qps=measured.qps,
        p50_ms=measured.p50_ms,
        qps_vs_exact=measured.qps / workload.baseline_qps,
        bulk_docs_per_s=docs_per_s,
        first_query_s=measured.first_query_s,
    )
    print(format_run(run), flush=True)
    return run


def bench_embedded(workload: Workload, args: argparse.Namespace) -> list[Run]:
    data = workload.data
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        for mode, threshold in (("embedded-exact", len(data) + 1), ("embedded-hnsw", 0)):
            hnsw = HnswParams(
                threshold=threshold, m=args.m, ef_construction=args.ef_construction, ef_search=128
            )
            path = Path(scratch) / f"{mode}.sqlite"
            index = EmbeddedIndex.open(path, prefix="bench", model_id="m", dim=data.shape[1], hnsw=hnsw)
            index.ensure()
            docs_per_s = bulk_load(index, data)
            efs = args.ef if mode == "embedded-hnsw" else [None]
            for ef in efs:
                if ef is not None:  # same file, another ef: a new handle rebuilds the graph from SQLite
                    hnsw = HnswParams(
                        threshold=0, m=args.m, ef_construction=args.ef_construction, ef_search=ef
                    )
                    index = EmbeddedIndex.open(
                        path, prefix="bench", model_id="m", dim=data.shape[1], hnsw=hnsw
                    )
                setting = Setting(mode) if ef is None else Setting(mode, args.m, args.ef_construction, ef)
                runs.append(measured_run(workload, setting, index, docs_per_s=docs_per_s))
    return runs


def bench_opensearch(workload: Workload, args: argparse.Namespace, url: str) -> list[Run]:
    data = workload.data
    admin = OpenSearch(hosts=[url], timeout=1800)
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    alias = alias_name(prefix, "m")
    config = IndexConfig(dim=data.shape[1], engine="lucene", m=args.m, ef_construction=args.ef_construction)
    runs = []
    try:
        loader = OpenSearchIndex(OpenSearch(hosts=[url], timeout=120), alias=alias, config=config)
        target = loader.ensure()
        started = time.perf_counter()
        bulk_load(loader, data)
        admin.indices.refresh(index=target)
        docs_per_s = len(data) / (time.perf_counter() - started)
        if args.force_merge:
            admin.indices.forcemerge(index=target, max_num_segments=1)
            admin.indices.refresh(index=target)
        segments = len(admin.cat.segments(index=target, format="json"))
        adapter = f"opensearch-lucene ({segments} segment{'s' * (segments != 1)})"
        for ef in args.ef:
            searcher = OpenSearchIndex(
                OpenSearch(hosts=[url], timeout=60),
                alias=alias,
                config=IndexConfig(**{**asdict(config), "ef_search": ef}),
            )
            setting = Setting(adapter, args.m, args.ef_construction, ef)
            runs.append(measured_run(workload, setting, searcher, docs_per_s=docs_per_s))
    finally:
        admin.indices.delete(index=f"{prefix}-*")
        admin.close()
    return runs


HEADER = (
    f"{'dataset':<36}{'adapter':<34}{'m':>4}{'efC':>5}{'ef':>5}{'recall@10':>11}{'QPS':>9}{'p50 ms':>8}"
    f"{'×exact':>8}{'docs/s':>9}{'1st q s':>9}"
)


def format_run(run: Run) -> str:
    def number(value: int | None) -> str:
        return "-" if value is None else str(value)

    return (
        f"{run.dataset:<36}{run.adapter:<34}{number(run.m):>4}{number(run.ef_construction):>5}"
        f"{number(run.ef_search):>5}{run.recall_at_10:>11.4f}{run.qps:>9.1f}{run.p50_ms:>8.2f}"
        f"{run.qps_vs_exact:>8.2f}{run.bulk_docs_per_s:>9.0f}{run.first_query_s:>9.2f}"
    )


@contextmanager
def opensearch_url(args: argparse.Namespace) -> Iterator[str | None]:
    if args.skip_opensearch:
        yield None
        return
    with benchkit.opensearch_url(heap="1g") as url:
        yield url


def datasets(args: argparse.Namespace) -> Iterator[tuple[str, Matrix, Matrix]]:
    """(name, indexed rows, query rows) for each dataset of this run."""
    data = clustered(args.n + args.queries, args.dim, seed=args.seed)
    yield f"synthetic-{args.n}", data[: args.n], data[args.n :]
    if args.hard:
        data = clustered(args.n + args.queries, args.dim, seed=args.seed, noise=2.0)
        yield f"hard-{args.n}", data[: args.n], data[args.n :]
    real = real_embeddings(args)
    if real is not None:
        name, rows = real
        order = np.random.default_rng(args.seed).permutation(len(rows))
        held_out = max(1, len(rows) // 10)
        yield f"{name}-{len(rows) - held_out}", rows[order[held_out:]], rows[order[:held_out]]


def real_embeddings(args: argparse.Namespace) -> tuple[str, Matrix] | None:
    """``--dataset-embeddings``, else the dataset folder embedded with the model (cached), else None."""
    if args.dataset_embeddings is not None:
        rows = np.load(args.dataset_embeddings).astype(np.float32)
        return args.dataset_embeddings.stem, rows / np.linalg.norm(rows, axis=1, keepdims=True)
    if not (args.dataset_dir.is_dir() and (args.model_dir / "manifest.json").is_file()):
        print(f"no real-embedding run: {args.dataset_dir} or {args.model_dir}/manifest.json is missing")
        return None
    from simsearch.embedder import OnnxEmbedder
    from simsearch.preprocess import ImageLimits

    embedder = OnnxEmbedder.load(args.model_dir, threads=os.cpu_count() or 1)
    cache = args.out.parent / f"{args.dataset_dir.name}-{embedder.model_id}.npy"
    if not cache.is_file():
        files = sorted(path for path in args.dataset_dir.rglob("*") if path.is_file())
        limits = ImageLimits(max_bytes=50 * 2**20, max_pixels=50_000_000)
        batches = [
            embedder.embed_images([path.read_bytes() for path in files[start : start + 32]], limits=limits)
            for start in range(0, len(files), 32)
        ]
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, np.concatenate(batches))
    return args.dataset_dir.name, np.load(cache)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.bench_index", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--n", type=int, default=20_000, help="vectors to index (default 20000)")
    parser.add_argument("--queries", type=int, default=200, help="queries per setting (default 200)")
    parser.add_argument("--dim", type=int, default=1280, help="dimension (MobileNetV2: 1280)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--m", type=int, default=16, help="HNSW m (default 16, the shipped value)")
    parser.add_argument("--ef-construction", type=int, default=128, help="HNSW ef_construction (default 128)")
    parser.add_argument(
        "--ef", type=int, nargs="+", default=[10, 64, 128, 256], help="ef_search values to try"
    )
    parser.add_argument(
        "--force-merge", action="store_true", help="merge the OpenSearch index to one segment first"
    )
    parser.add_argument("--hard", action="store_true", help="add the stress dataset (see clustered)")
    parser.add_argument("--skip-opensearch", action="store_true", help="measure the embedded adapter only")
    parser.add_argument("--dataset-embeddings", type=Path, help="real embeddings, an (n, dim) float32 .npy")
    parser.add_argument(
        "--dataset-dir", type=Path, default=DATASET_DIR, help=f"images to embed (default {DATASET_DIR})"
    )
    parser.add_argument("--model-dir", type=Path, default=benchkit.MODEL_DIR, help="the model")
    parser.add_argument("--out", type=Path, default=Path("build/bench/index.json"))
    args = parser.parse_args(argv)

    runs: list[Run] = []
    print(HEADER, flush=True)
    with opensearch_url(args) as url:
        for name, data, queries in datasets(args):
            workload = Workload.of(name, data, queries)
            baseline = workload.baseline_qps
            print(f"{name:<36}{'exact numpy (baseline)':<34}{'':>14}{1.0:>11.4f}{baseline:>9.1f}", flush=True)
            runs += bench_embedded(workload, args)
            if url is not None:
                runs += bench_opensearch(workload, args, url)
    report = {
        "k": K,
        "queries": args.queries,
        "dim": args.dim,
        "force_merge": args.force_merge,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "runs": [asdict(run) for run in runs],
    }
    benchkit.write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
