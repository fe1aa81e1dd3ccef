"""What the benchmark commands share: percentiles that work from a single sample up, and keeping a node
off the cores a benchmark measures on."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from devtools.benchkit import percentile
from devtools.opensearch_node import _before_exec


def test_one_sample_is_every_percentile_of_itself() -> None:
    assert percentile([42.0], 50) == percentile([42.0], 95) == 42.0


def test_percentiles_interpolate_between_samples() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert percentile(samples, 50) == pytest.approx(50.5)
    assert percentile(samples, 95) == pytest.approx(95.05)


def test_no_sample_is_an_error_that_says_so() -> None:
    with pytest.raises(ValueError, match="nothing was measured"):
        percentile([], 50)


AFFINITY = "import os, sys; sys.stdout.write(','.join(map(str, sorted(os.sched_getaffinity(0)))))"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU affinity is Linux's")
def test_a_node_kept_on_some_cores_starts_every_process_on_those_cores_only() -> None:
    """The hook ``OpenSearchNode`` runs before exec, tried on a Python child instead of the JVM."""
    core = min(os.sched_getaffinity(0))
    child = subprocess.run(
        [sys.executable, "-c", AFFINITY],
        preexec_fn=_before_exec(frozenset({core})),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert child.stdout == str(core)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="CPU affinity is Linux's")
def test_the_spare_cores_are_the_ones_a_pinned_process_leaves() -> None:
    script = (
        "import os, sys; from devtools import benchkit; os.sched_setaffinity(0, {0}); "
        "spare = benchkit.spare_cores(); sys.stdout.write(repr(sorted(spare) if spare else None))"
    )
    child = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    others = sorted(set(range(os.cpu_count() or 1)) - {0})
    assert child.stdout == repr(others or None)
