"""Session fixtures for every test folder: a real OpenSearch node, started only when a test asks for it.

Unit-only runs never touch these fixtures, so they start no JVM and stay fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from opensearchpy import OpenSearch

from devtools.opensearch_node import OpenSearchNode, fetch


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
def opensearch_client(opensearch_url: str) -> Iterator[OpenSearch]:
    """An opensearch-py client for ``opensearch_url``; closed at session end."""
    client = OpenSearch(hosts=[opensearch_url], timeout=30)
    yield client
    client.close()
