"""``python -m devtools.bench_query``: what the query API adds to embedding one image and one k-NN query.

In one process and one run, interleaved so every path sees the same machine load:

- embed only: ``decode_image`` + ``OnnxEmbedder.embed`` of an inline ~100 KB JPEG (a baseline);
- index only: ``VectorIndex.search`` with a precomputed vector (k=10), the other baseline;
- presigning: the ten presigned GET URLs a response carries (``S3ImageStore.presigned_get``), signed
  anew, and handed out again (``GetPresigner`` reuses a URL for a quarter of its lifetime);
- handler: ``handlers.query.handler``, deployed by ``localmode.harness``, with the API Gateway event
  of ``POST /search`` carrying the same JPEG as a raw body (base64, as API Gateway delivers it; the
  event is built once, as API Gateway's side of the request is not the function's):
  routing, decoding, embedding, the k-NN query, ten presigned URLs and the JSON response. The same
  query finds the same results, whose URLs are then handed out again; each handler row is also run
  with every URL signed anew (``, URLs signed afresh``), as for results no earlier search returned.

Two modes, both by default (``--mode``):

- ``real``: the local OpenSearch node (``OPENSEARCH_URL``, else one started here) and moto in-process.
  Here the JVM burns the cores the embedder needs, so its figures mix our overhead with the node's.
  The k-NN query is also timed on the embedded index holding the same vectors.
- ``remote``: OpenSearch as AWS shows it to a function, latency without local CPU:
  ``devtools.latency_replay`` answers from another process with the node's recorded answers after a k-NN
  latency drawn from ``--knn-ms`` (default 5–15 ms; a new connection pays ``--connect-ms`` more). The
  handler's service is ``bootstrap.search`` with that index handed in. S3 is never called on this path:
  presigning is local computation, in both modes.

``--lambda-memory MB`` runs on the CPU a function of that size gets (one core and one inference thread
at the deployed 2,048 MB) and keeps the node it starts on the other cores: in AWS the domain does not
take the function's CPU, and on a shared machine the JVM's work lands inside whichever path runs next.

For each mode: overhead = handler p50 − embed p50 − index p50; the goal is ≤ 3 ms. On a busy machine
those medians come from different moments, so the overhead is also measured inside each request
(``InsideRequests``: the handler's time less that request's own embedding and k-NN query). The node holds
``--documents`` random unit vectors. Prints a table and writes JSON (default ``build/bench/query.json``).
"""

from __future__ import annotations

import argparse
import functools
import io
import itertools
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
from PIL import Image

from devtools import benchkit
from devtools.latency_replay import DEFAULT_CONNECT_MS, DEFAULT_LATENCY_MS, LatencyReplay
from localmode.api_gateway import proxy_event
from localmode.harness import Deployment, deployed, local_settings
from simsearch import bootstrap, storage
from simsearch.bootstrap import inference_threads
from simsearch.embedder import OnnxEmbedder
from simsearch.ids import image_id_for
from simsearch.index import Document, ImageMetadata, VectorIndex
from simsearch.index.embedded import EmbeddedIndex
from simsearch.index.opensearch import OpenSearchIndex, client_for
from simsearch.preprocess import ImageLimits, decode_image
from simsearch.search import SearchService
from simsearch.settings import Settings

DEFAULT_OUT = Path("build/bench/query.json")
TARGET_BYTES = 100 * 1024
GOAL_OVERHEAD_MS = 3.0
BUCKET = "images"
LOOPBACK = "127.0.0.1"
MODES = ("real", "remote")
EMBED, PRESIGN = "embed only (decode + preprocess + ONNX)", "presigned GET URLs x10"
REUSED = "presigned GET URLs x10, handed out again"
INDEX, EMBEDDED = "index only (k-NN query, k=10)", "index only (embedded index)"
HANDLER = "handler POST /search"
FRESH = "URLs signed afresh"


@dataclass(frozen=True)
class Row:
    path: str
    p50_ms: float
    p95_ms: float
    mean_ms: float


def query_jpeg() -> bytes:
    """scikit-learn's china.jpg re-encoded at the highest quality that keeps it near 100 KB."""
    photo = Image.open(io.BytesIO(benchkit.sample_photos()[0])).convert("RGB")
    for quality in range(95, 40, -5):
        buffer = io.BytesIO()
        photo.save(buffer, "JPEG", quality=quality)
        if buffer.tell() <= TARGET_BYTES * 1.1:
            return buffer.getvalue()
    raise AssertionError("no quality gives a ~100 KB JPEG")


def fill(indexes: Sequence[VectorIndex], *, documents: int, dim: int) -> None:
    """The same ``documents`` random unit vectors into each index."""
    rows = np.random.default_rng(0).standard_normal((documents, dim)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    for start in range(0, documents, 500):
        batch = [
            Document(
                image_id=image_id_for(BUCKET, f"bench/{i}.jpg"),
                vector=rows[i],
                metadata=ImageMetadata(bucket=BUCKET, key=f"bench/{i}.jpg", label=f"l{i % 10}"),
            )
            for i in range(start, min(start + 500, documents))
        ]
        for index in indexes:
            written = index.upsert(batch)
            if written.failed:
                raise RuntimeError(f"indexing failed: {dict(list(written.failed.items())[:3])}")


def row(path: str, seconds: Sequence[float]) -> Row:
    milliseconds = [value * 1000 for value in seconds]
    return Row(
        path=path,
        p50_ms=statistics.median(milliseconds),
        p95_ms=benchkit.percentile(milliseconds, 95),
        mean_ms=statistics.fmean(milliseconds),
    )


@dataclass(frozen=True, kw_only=True)
class Remote:
    """How the remote-latency mode's OpenSearch answers: k-NN latency bounds and new-connection cost."""

    knn_ms: tuple[float, float] = DEFAULT_LATENCY_MS["knn"]
    connect_ms: float = DEFAULT_CONNECT_MS


def run(
    *,
    model_dir: Path,
    documents: int,
    repeats: int,
    url: str,
    modes: Sequence[str],
    remote: Remote,
    threads: int = 0,
) -> dict[str, Any]:
    """Every path of every mode; ``threads`` inference threads (0: one per core)."""
    settings = local_settings(
        model_dir=model_dir,
        opensearch_url=url,
        index_prefix=f"bench-{uuid.uuid4().hex[:8]}",
        ort_threads=threads,
    )
    with deployed(settings, quiet=True) as deployment:
        deployment.cold_start("query")  # load the model now, not in the first timed request
        return _measure(deployment, documents=documents, repeats=repeats, modes=modes, remote=remote)


def _measure(
    deployment: Deployment, *, documents: int, repeats: int, modes: Sequence[str], remote: Remote
) -> dict[str, Any]:
    settings, model_dir = deployment.settings, deployment.settings.model_dir
    threads = inference_threads(settings.ort_threads)  # as the handler
    embedder = OnnxEmbedder.load(model_dir, threads=threads)
    index = OpenSearchIndex.connect(settings, model_id=embedder.model_id, dim=embedder.dim, refresh=True)
    concrete = index.ensure()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-query-") as scratch:
        stack.callback(lambda: client_for(settings).indices.delete(index=concrete))
        embedded = EmbeddedIndex.open(
            Path(scratch) / "index.sqlite", prefix="bench", model_id=embedder.model_id, dim=embedder.dim
        )
        stack.callback(embedded.close)
        embedded.ensure()
        fill([index, embedded], documents=documents, dim=embedder.dim)
        data = query_jpeg()
        limits = ImageLimits.of(settings)
        vector = embedder.embed([decode_image(data, limits=limits).rgb])[0]
        images = bootstrap.image_store(settings, config=bootstrap.QUERY_S3)

        inside = stack.enter_context(InsideRequests.timing())

        # Built once, outside the timing: turning the HTTP request into this event is API Gateway's work.
        event = proxy_event(
            method="POST",
            target="/search",
            headers=[("Content-Type", "image/jpeg")],
            body=data,
            source_ip=LOOPBACK,
        )

        def handle() -> None:
            response = deployment.invoke_query(event)
            if response["statusCode"] != 200:
                raise RuntimeError(f"/search answered {response['statusCode']}: {response['body']}")

        def presign() -> object:
            return [
                images.presigned_get(
                    settings.images_bucket, f"bench/{i}.jpg", ttl_seconds=settings.presign_ttl_seconds
                )
                for i in range(10)
            ]

        works: dict[str, Callable[[], object]] = {
            EMBED: lambda: embedder.embed([decode_image(data, limits=limits).rgb]),
            PRESIGN: lambda: _patched(_no_reuse(), presign),
            REUSED: presign,
        }
        if "real" in modes:
            works[f"real: {INDEX}"] = lambda: index.search(vector, k=10)
            works[f"real: {EMBEDDED}"] = lambda: embedded.search(vector, k=10)
            works[f"real: {HANDLER}"] = inside.handler("real", handle)
            works[f"real: {HANDLER}, {FRESH}"] = inside.handler(
                f"real, {FRESH}", lambda: _patched(_no_reuse(), handle)
            )
        replay: LatencyReplay | None = None
        if "remote" in modes:
            replay = stack.enter_context(
                LatencyReplay(
                    settings.opensearch_url,
                    latency={**DEFAULT_LATENCY_MS, "knn": remote.knn_ms},
                    connect_ms=remote.connect_ms,
                )
            )
            remote_index, service = _remote(settings, replay.url, embedder=embedder)
            serve_remote = mock.patch("handlers.query.service", lambda: service)
            works[f"remote: {INDEX}"] = lambda: remote_index.search(vector, k=10)
            works[f"remote: {HANDLER}"] = inside.handler("remote", lambda: _patched(serve_remote, handle))
            works[f"remote: {HANDLER}, {FRESH}"] = inside.handler(
                f"remote, {FRESH}", lambda: _patched(serve_remote, lambda: _patched(_no_reuse(), handle))
            )
            for work in (works[f"remote: {INDEX}"], works[f"remote: {HANDLER}"]):
                work()  # recorded: the node answers through the replay server
            replay.replay()
        timings = benchkit.interleaved(works, repeats=repeats, warm_up=5)
        replayed = replay.stats() if replay is not None else None
    rows = {path: row(path, values) for path, values in timings.items()}
    return _report(
        rows,
        in_request={mode: samples[-repeats:] for mode, samples in inside.overheads.items()},
        modes=modes,
        replayed=replayed,
        remote=remote,
        model_id=embedder.model_id,
        image_bytes=len(data),
        documents=documents,
        repeats=repeats,
        engine=settings.engine,
        threads=threads,
    )


def _remote(settings: Settings, url: str, *, embedder: OnnxEmbedder) -> tuple[OpenSearchIndex, SearchService]:
    """The index behind the replay server, and the query service ``bootstrap.search`` wires to another
    handle on it (the handler's image store and configuration; the embedder is the one both modes use)."""
    remote_settings = replace(settings, opensearch_url=url)
    index = OpenSearchIndex.connect(remote_settings, model_id=embedder.model_id, dim=embedder.dim)
    served = OpenSearchIndex.connect(remote_settings, model_id=embedder.model_id, dim=embedder.dim)
    return index, bootstrap.search(remote_settings, embedder=embedder, index=served)


class InsideRequests:
    """How long each handler request spent outside embedding and the k-NN query, measured in that request.

    ``handler p50 - embed p50 - index p50`` subtracts medians of runs that met different moments of a
    busy machine; timing ``SearchService._embed`` (decode + embed) and ``OpenSearchIndex.search`` inside
    each request and subtracting them there cancels that noise. Both figures are reported.
    """

    def __init__(self) -> None:
        self.inner_s = 0.0
        self.overheads: dict[str, list[float]] = {}

    @classmethod
    @contextmanager
    def timing(cls) -> Iterator[InsideRequests]:
        inside = cls()
        with (
            mock.patch.object(SearchService, "_embed", inside._timed(SearchService._embed)),
            mock.patch.object(OpenSearchIndex, "search", inside._timed(OpenSearchIndex.search)),
        ):
            yield inside

    def handler(self, mode: str, handle: Callable[[], None]) -> Callable[[], None]:
        samples = self.overheads.setdefault(mode, [])

        def timed() -> None:
            self.inner_s = 0.0
            started = time.perf_counter()
            handle()
            samples.append(time.perf_counter() - started - self.inner_s)

        return timed

    def _timed(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.inner_s += time.perf_counter() - started

        return timed


def _patched(patch: Any, work: Callable[[], object]) -> None:
    with patch:
        work()


def _no_reuse() -> Any:
    """Every presigned URL signed anew, as for results no earlier search returned (``GetPresigner``)."""
    return mock.patch.object(storage, "REUSE_SHARE", 0)


def _report(
    rows: dict[str, Row],
    *,
    in_request: dict[str, list[float]],
    modes: Sequence[str],
    replayed: dict[str, Any] | None,
    remote: Remote,
    **facts: Any,
) -> dict[str, Any]:
    embed = rows[EMBED].p50_ms
    summary: dict[str, Any] = {}
    for mode, urls in itertools.product(modes, ("", f", {FRESH}")):  # the same results' URLs, or new ones
        handler, index = rows[f"{mode}: {HANDLER}{urls}"].p50_ms, rows[f"{mode}: {INDEX}"].p50_ms
        overhead = handler - embed - index
        measured_inside = statistics.median(in_request[f"{mode}{urls}"]) * 1000
        summary[f"{mode}{urls}"] = {
            "handler_p50_ms": handler,
            "embed_p50_ms": embed,
            "index_p50_ms": index,
            "overhead_p50_ms": overhead,
            "in_request_overhead_p50_ms": measured_inside,
            "goal_met": overhead <= GOAL_OVERHEAD_MS,
            "in_request_goal_met": measured_inside <= GOAL_OVERHEAD_MS,
        }
    report: dict[str, Any] = {
        **facts,
        "modes": list(modes),
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_average_1m": os.getloadavg()[0],  # other work on the machine slows the node most
        "rows": [asdict(r) for r in rows.values()],
        "summary": summary,
        "goal": f"handler p50 - embed p50 - index p50 <= {GOAL_OVERHEAD_MS:.0f} ms in each mode",
    }
    if "real" in modes:
        opensearch, embedded = rows[f"real: {INDEX}"].p50_ms, rows[f"real: {EMBEDDED}"].p50_ms
        report["knn_p50_ms"] = {"opensearch": opensearch, "embedded": embedded}
        report["knn_opensearch_vs_embedded"] = opensearch / embedded
    if replayed is not None:
        report["remote"] = {**asdict(remote), "replayed": replayed}
    return report


def table(report: dict[str, Any]) -> str:
    lines = [f"{'path':<50}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}"]
    lines += [
        f"{r['path']:<50}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['mean_ms']:>9.1f}" for r in report["rows"]
    ]
    for mode, figures in report["summary"].items():
        verdict = "met" if figures["goal_met"] else "NOT met"
        lines.append(
            f"{mode:>6}: handler {figures['handler_p50_ms']:.1f} - embed {figures['embed_p50_ms']:.1f}"
            f" - index {figures['index_p50_ms']:.1f} = overhead {figures['overhead_p50_ms']:.1f} ms"
            f" (goal <= {GOAL_OVERHEAD_MS:.0f} ms: {verdict})"
        )
    for mode, figures in report["summary"].items():
        verdict = "met" if figures["in_request_goal_met"] else "NOT met"
        lines.append(
            f"{mode:>6}: overhead measured inside each request (handler - its embed - its k-NN), p50"
            f" {figures['in_request_overhead_p50_ms']:.2f} ms (goal <= {GOAL_OVERHEAD_MS:.0f} ms: {verdict})"
        )
    if "knn_p50_ms" in report:
        knn = report["knn_p50_ms"]
        lines.append(
            f"k-NN query p50: OpenSearch node {knn['opensearch']:.1f} ms, embedded index "
            f"{knn['embedded']:.2f} ms on the same vectors ({report['knn_opensearch_vs_embedded']:.1f}x)"
        )
    if "remote" in report:
        remote, replayed = report["remote"], report["remote"]["replayed"]
        lines.append(
            f"remote: k-NN latency {remote['knn_ms'][0]:g}-{remote['knn_ms'][1]:g} ms; connections opened"
            f" while timed: {replayed['connections']} (each +{remote['connect_ms']:g} ms);"
            f" unrecorded requests: {len(replayed['unmatched'])}"
        )
    return "\n".join(lines)


def _milliseconds_range(spec: str) -> tuple[float, float]:
    low, _, high = spec.partition(":")
    bounds = (float(low), float(high or low))
    if not 0 <= bounds[0] <= bounds[1]:
        raise argparse.ArgumentTypeError(f"{spec!r}: want LOW:HIGH milliseconds, 0 <= LOW <= HIGH")
    return bounds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.bench_query", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model-dir", type=Path, default=benchkit.MODEL_DIR, help="built by `make model`")
    parser.add_argument("--documents", type=int, default=2000, help="random vectors in the index")
    parser.add_argument("--repeats", type=int, default=100, help="timed requests per path")
    parser.add_argument("--mode", choices=[*MODES, "both"], default="both")
    parser.add_argument(
        "--remote", action="store_const", const="remote", dest="mode", help="the remote-latency mode only"
    )
    parser.add_argument(
        "--knn-ms", type=_milliseconds_range, default=DEFAULT_LATENCY_MS["knn"], help="LOW:HIGH (remote)"
    )
    parser.add_argument(
        "--connect-ms", type=float, default=DEFAULT_CONNECT_MS, help="per new connection (remote)"
    )
    parser.add_argument(
        "--lambda-memory",
        type=int,
        default=0,
        metavar="MB",
        help="run on the CPU a function of MB gets (one core and one inference thread at the deployed "
        "2,048 MB), and the node this run starts on the other cores, as a domain runs apart from the "
        "function in AWS; 0: every core for both",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if not benchkit.model_is_built(args.model_dir):
        return 1
    modes = MODES if args.mode == "both" else (args.mode,)
    threads = benchkit.lambda_cpu(args.lambda_memory) if args.lambda_memory else 0
    own_node = not os.environ.get("OPENSEARCH_URL")
    node_cores = benchkit.spare_cores() if args.lambda_memory and own_node else None
    with ExitStack() as stack:
        # the remote mode records the node's answers
        url = stack.enter_context(benchkit.opensearch_url(cpus=node_cores))
        report = run(
            model_dir=args.model_dir,
            documents=args.documents,
            repeats=args.repeats,
            url=url,
            modes=modes,
            remote=Remote(knn_ms=args.knn_ms, connect_ms=args.connect_ms),
            threads=threads,
        )
    report |= {
        "lambda_memory_mb": args.lambda_memory or None,
        "cores_used": sorted(os.sched_getaffinity(0)),
        "node_cores": sorted(node_cores) if node_cores else None,
    }
    print(f"model {report['model_id']}, {report['image_bytes']} byte JPEG, {report['documents']} documents")
    if args.lambda_memory:
        node = report["node_cores"] or "anywhere (not started here)"
        print(
            f"as a {args.lambda_memory} MB function: {report['threads']} inference thread(s) on cores "
            f"{report['cores_used']}; the node on cores {node}"
        )
    elif "real" in modes:
        print(
            "every core shared by the embedder and the node: the real mode's difference of medians takes in "
            "the JVM's work (LAMBDA_MEMORY=2048 keeps the node off the function's core, as in AWS)"
        )
    print(table(report))
    benchkit.write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
