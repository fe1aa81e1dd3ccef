"""What the benchmark commands (``devtools.bench_*``, ``model.bench``) share: inputs, timing and reporting.

Each command measures something else, but they build their inputs, time their work, find an OpenSearch
node and write their JSON the same way; doing that in one place keeps their numbers comparable.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from model.images import SKLEARN_PHOTOS, photograph
from simsearch.preprocess import ImageLimits

MODEL_DIR = Path("build/models/mobilenet_v2")  # the Makefile's MODEL_DIR
LIMITS = ImageLimits.deployed()
"""The deployed defaults, so a benchmark decodes exactly what the functions would accept."""


def model_is_built(model_dir: Path) -> bool:
    """Whether ``make model`` has written ``model_dir``; if not, says so on stderr (``main`` returns 1)."""
    if (model_dir / "manifest.json").is_file():
        return True
    print(f"no model in {model_dir}: build it with `make model`", file=sys.stderr)
    return False


def sample_photos() -> list[bytes]:
    """scikit-learn's two 640x427 sample JPEGs (``model.images.SKLEARN_PHOTOS``): nothing to download."""
    return [photograph(name) for name in SKLEARN_PHOTOS]


def elapsed_seconds(work: Callable[[], object]) -> float:
    """Wall seconds of one call of ``work``."""
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def interleaved(
    works: Mapping[str, Callable[[], object]], *, repeats: int, warm_up: int
) -> dict[str, list[float]]:
    """Seconds of each work, run in turn ``repeats`` times after ``warm_up`` untimed rounds.

    Taking turns within every round makes a busy neighbour on a shared machine slow all the works
    alike, so their ratios hold even when their absolute times drift.
    """
    timings: dict[str, list[float]] = {name: [] for name in works}
    for round_number in range(warm_up + repeats):
        for name, work in works.items():
            seconds = elapsed_seconds(work)
            if round_number >= warm_up:
                timings[name].append(seconds)
    return timings


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation), defined from a single sample up.

    Raises:
        ValueError: there is no sample, so there is nothing to report.
    """
    if not samples:
        raise ValueError("no samples: nothing was measured")
    return float(np.percentile(np.asarray(samples, dtype=np.float64), q))


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux ``VmHWM``).

    Not ``getrusage``'s ``ru_maxrss``: Linux carries that over from the parent across fork and exec, so
    a child spawned by a parent that has just built ResNet50 would report the parent's peak.
    """
    status = Path("/proc/self/status").read_text(encoding="ascii")
    kib = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(kib) / 1024


@contextmanager
def opensearch_url(*, heap: str | None = None, cpus: Collection[int] | None = None) -> Iterator[str]:
    """``OPENSEARCH_URL`` if set, else a node of our own for the run, with ``heap`` if given, on ``cpus``
    if given (``spare_cores``)."""
    if url := os.environ.get("OPENSEARCH_URL"):
        yield url
        return
    from devtools.opensearch_node import OpenSearchNode, fetch  # model.bench never needs a node

    home = fetch()
    node = (
        OpenSearchNode(home=home, cpus=cpus)
        if heap is None
        else OpenSearchNode(home=home, heap=heap, cpus=cpus)
    )
    with node as running:
        yield running.url


def lambda_cpu(memory_mb: int) -> int:
    """Pin this process to the cores a function of ``memory_mb`` gets (``simsearch.embedder.ort_threads``,
    which also sets its inference threads), before any thread starts; returns how many."""
    from simsearch.embedder import ort_threads  # not every benchmark loads ONNX Runtime

    cores = ort_threads(0, lambda_memory_mb=memory_mb, cpu_count=os.cpu_count())
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:cores])
    return cores


def spare_cores() -> frozenset[int] | None:
    """The cores this process is not pinned to (``lambda_cpu``), for a node that should not compete with
    it, as a domain in AWS does not compete with a function; None when there are none to spare."""
    spare = frozenset(range(os.cpu_count() or 1)) - os.sched_getaffinity(0)
    return spare or None


def write_report(path: Path, report: Mapping[str, object]) -> None:
    """Write the report as indented JSON, creating ``build/bench/`` (git ignores it), and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def reset_peak_rss() -> None:
    """Start ``peak_rss_mb`` afresh from the current resident size (Linux ``clear_refs``), if allowed."""
    with contextlib.suppress(OSError):  # not Linux, or not permitted: the peak covers the whole process
        Path("/proc/self/clear_refs").write_text("5", encoding="ascii")
