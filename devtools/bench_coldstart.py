"""``python -m devtools.bench_coldstart``: how long a new execution environment takes to serve, per function.

Each measurement is a fresh Python process laid out as Lambda lays out the deployed bundle
(``infra.packaging.build_bundle``, the same directory ``cdk synth`` uploads): the bundle first on the path,
then the runtime's own boto3/botocore (the bundle leaves them out, as Lambda provides them), on Lambda's
Python (``LAMBDA_PYTHON``, found on this machine or given with ``--python``). Lambda's ``/var/task`` is
read-only, so nothing compiled at run time is kept (``-B``), as there; the runtime's boto3 is
precompiled, as Lambda's is.

A cold start, per function and model, from ``exec`` to the composition root ready to answer:

- interpreter: the process starting (to the first line of the measuring script);
- imports: ``import handlers.query`` (or ``handlers.ingest``), what Lambda's init phase runs;
- session: ``onnxruntime.InferenceSession`` of the bundled model; warm-up: its first run;
- root, rest: the rest of the handler's ``service()``, which its first request builds (clients, settings;
  the ingest function's failure log is created on a stub OpenSearch that answers at once).

The deployed bundle carries bytecode compiled by Lambda's Python when the build machine has one
(``infra.packaging``); ``--source-only`` adds the rows of the bundle without it, which compiles every
module from source at every cold start (Lambda cannot keep bytecode beside a read-only bundle).

The baseline, measured in the same run in the same layout: a process that only imports ONNX Runtime,
creates a default session of the same model and runs it once. Goals: ≤ 1.5 s with MobileNetV2, ≤ 3 s
with ResNet50. Prints the median of ``--repeats`` processes per row and writes JSON
(default ``build/bench/coldstart.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from devtools import benchkit
from infra.config import PROFILES
from infra.packaging import BUNDLED_MODEL, CACHE, LAMBDA_PYTHON, build_bundle, lambda_python

DEFAULT_OUT = Path("build/bench/coldstart.json")
MODELS = {"mobilenet_v2": Path("build/models/mobilenet_v2"), "resnet50": Path("build/models/resnet50")}
GOAL_S = {"mobilenet_v2": 1.5, "resnet50": 3.0}
FUNCTIONS = ("query", "ingest")
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer")
"""What Lambda's Python runtime provides besides the standard library (``infra.packaging.TRIMMED``)."""

# The measuring scripts: argv[1] the bundle, argv[2] the runtime's packages; one JSON line out.
_PATH = "import sys, time; t0 = time.perf_counter(); sys.path[:0] = [sys.argv[1], sys.argv[2]]\n"
_FUNCTION = (
    _PATH
    + """import json
t1 = time.perf_counter()
handler = __import__("handlers." + sys.argv[3], fromlist=["service"])
t2 = time.perf_counter()
from simsearch import embedder
spent = {"session": 0.0, "warm_up": 0.0}
def timed(name, function):
    def run(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started
    return run
embedder._session = timed("session", embedder._session)
embedder.OnnxEmbedder._warm_up = timed("warm_up", embedder.OnnxEmbedder._warm_up)
handler.service()
t3 = time.perf_counter()
print(json.dumps({"interpreter": 0.0, "imports": t2 - t1, "session": spent["session"],
    "warm_up": spent["warm_up"], "rest": t3 - t2 - spent["session"] - spent["warm_up"],
    "script": t3 - t0}), flush=True)
"""
)
_BASELINE = (
    _PATH
    + """import json
t1 = time.perf_counter()
import numpy as np
import onnxruntime as ort
t2 = time.perf_counter()
session = ort.InferenceSession(sys.argv[3], providers=["CPUExecutionProvider"])
t3 = time.perf_counter()
shape = [1 if not isinstance(d, int) else d for d in session.get_inputs()[0].shape]
session.run(None, {session.get_inputs()[0].name: np.zeros(shape, dtype=np.float32)})
t4 = time.perf_counter()
print(json.dumps({"interpreter": 0.0, "imports": t2 - t1, "session": t3 - t2, "warm_up": t4 - t3,
    "rest": 0.0, "script": t4 - t0}), flush=True)
"""
)
PHASES = ("interpreter", "imports", "session", "warm_up", "rest")


@dataclass(frozen=True)
class Case:
    """One row: ``function`` is ``query``, ``ingest`` or ``baseline``; ``variant`` the bundle's."""

    function: str
    model: str
    bundle: Path
    variant: str = "deployed"


def runtime_packages(python: str, cache: Path) -> Path:
    """boto3, botocore and s3transfer of this environment, compiled for ``python`` once (as Lambda's are)."""
    import botocore

    target = cache / f"coldstart-runtime-botocore{botocore.__version__}-py{LAMBDA_PYTHON}"
    if target.is_dir():
        return target
    staging = cache / f".staging-{target.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    for name in RUNTIME_PACKAGES:
        source = Path(__import__(name).__file__ or "").parent
        shutil.copytree(source, staging / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([python, "-m", "compileall", "-q", str(staging)], check=True)
    staging.rename(target)
    return target


def environment(function: str, bundle: Path, opensearch_url: str) -> dict[str, str]:
    """The function's environment as Lambda sets it, without anything of this machine's Python set-up."""
    memory = getattr(PROFILES["prod"], f"{'query' if function == 'baseline' else function}_memory_mb")
    kept = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return {
        **kept,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "cold",
        "AWS_SECRET_ACCESS_KEY": "start",
        "AWS_SESSION_TOKEN": "bench",
        "POWERTOOLS_SERVICE_NAME": function,
        "ORT_DISABLE_TELEMETRY": "1",
        "SIMSEARCH_MODEL_DIR": str(bundle / BUNDLED_MODEL),
        "SIMSEARCH_IMAGES_BUCKET": "images",
        "SIMSEARCH_OPENSEARCH_URL": opensearch_url,
        "SIMSEARCH_MODEL_CACHE_DIR": "/tmp/simsearch-models-bench",
    }


def measure(case: Case, *, python: str, runtime: Path, opensearch_url: str) -> dict[str, float]:
    """One fresh process: seconds per phase, ``total`` from spawn to the composition root ready."""
    if case.function == "baseline":
        [model_file] = (case.bundle / BUNDLED_MODEL).glob("*.onnx")
        script, argument = _BASELINE, str(model_file)
    else:
        script, argument = _FUNCTION, case.function
    # -I: none of this machine's Python set-up; -B: /var/task is read-only, nothing compiled is kept
    command = [python, "-I", "-B", "-c", script, str(case.bundle), str(runtime), argument]
    started = time.perf_counter()
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(case.function, case.bundle, opensearch_url),
        cwd="/tmp",
    ) as process:
        assert process.stdout is not None and process.stderr is not None  # PIPE
        line = process.stdout.readline()
        total = time.perf_counter() - started
        process.wait(timeout=60)
        if not line.startswith("{"):
            raise RuntimeError(f"{case.function} ({case.model}) failed: {process.stderr.read()[-3000:]}")
    phases: dict[str, float] = json.loads(line)
    phases["interpreter"] = total - phases.pop("script")
    phases["total"] = total
    return phases


class _Acknowledging(BaseHTTPRequestHandler):
    """OpenSearch as the ingest function's start-up needs it: creating its failure log succeeds."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *_: object) -> None:
        return

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b'{"acknowledged": true, "shards_acknowledged": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = _answer


@contextmanager
def stub_opensearch() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Acknowledging)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run(
    *, models: Sequence[str], repeats: int, python: str, cache: Path, without_bytecode: bool
) -> dict[str, Any]:
    runtime = runtime_packages(python, cache)
    cases = []
    for model in models:
        bundle = build_bundle(model_dir=MODELS[model], cache=cache).path
        cases += [Case(function, model, bundle) for function in (*FUNCTIONS, "baseline")]
        if without_bytecode:
            source_only = build_bundle(model_dir=MODELS[model], cache=cache, bytecode=False).path
            cases += [Case(function, model, source_only, "source") for function in FUNCTIONS]
    samples: dict[Case, list[dict[str, float]]] = {case: [] for case in cases}
    with stub_opensearch() as url:
        for case in cases:  # untimed: the page cache holds the bundle, as on a warm Lambda host
            measure(case, python=python, runtime=runtime, opensearch_url=url)
        for _ in range(repeats):  # in turns, so a busy neighbour slows every row alike
            for case in cases:
                samples[case].append(measure(case, python=python, runtime=runtime, opensearch_url=url))
    rows = []
    for case, runs in samples.items():
        medians = {phase: statistics.median(r[phase] for r in runs) for phase in (*PHASES, "total")}
        rows.append({"function": case.function, "model": case.model, "variant": case.variant, **medians})
    return _report(rows, repeats=repeats, python=python)


def _report(rows: list[dict[str, Any]], *, repeats: int, python: str) -> dict[str, Any]:
    baselines = {row["model"]: row["total"] for row in rows if row["function"] == "baseline"}
    for row in rows:
        row["vs_baseline"] = row["total"] / baselines[row["model"]]
        if row["function"] != "baseline":
            row["goal_s"] = GOAL_S[row["model"]]
            row["goal_met"] = row["total"] <= GOAL_S[row["model"]]
    return {
        "python": python,
        "repeats": repeats,
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "rows": rows,
    }


def table(report: dict[str, Any]) -> str:
    header = f"{'function':<10}{'model':<14}{'bundle':<10}" + "".join(f"{p:>12}" for p in (*PHASES, "total"))
    lines = [header + f"{'x base':>8}  goal"]
    for row in report["rows"]:
        goal = ""
        if "goal_s" in row:
            goal = f"<= {row['goal_s']:g} s: {'met' if row['goal_met'] else 'NOT met'}"
        lines.append(
            f"{row['function']:<10}{row['model']:<14}{row['variant']:<10}"
            + "".join(f"{row[phase]:>12.3f}" for phase in (*PHASES, "total"))
            + f"{row['vs_baseline']:>8.2f}  {goal}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devtools.bench_coldstart", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per row")
    parser.add_argument("--python", help=f"a Python {LAMBDA_PYTHON} interpreter (default: found here)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where bundles are built and kept")
    parser.add_argument(
        "--source-only",
        action="store_true",
        help="also the bundle without bytecode (what a build machine without Python 3.12 deploys)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    python = args.python or lambda_python()
    if python is None:
        print(
            f"no python{LAMBDA_PYTHON} here (Lambda's version, the bundle's wheels): pass --python",
            file=sys.stderr,
        )
        return 1
    models = [model for model in args.models if benchkit.model_is_built(MODELS[model])]
    if not models:
        return 1
    report = run(
        models=models,
        repeats=args.repeats,
        python=python,
        cache=args.cache,
        without_bytecode=args.source_only,
    )
    print(f"seconds, median of {report['repeats']} fresh processes; Python {LAMBDA_PYTHON} at {python}")
    print(table(report))
    benchkit.write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
