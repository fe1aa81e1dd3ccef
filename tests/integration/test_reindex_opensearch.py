"""The re-index sequence of tests/unit/test_reindex.py, on the OpenSearch node: pointers are aliases there.

Every test of that module runs here again with ``settings`` naming the node: attach, build beside the
serving index, the gate, the atomic switch under concurrent queries, rollback and cleanup.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from opensearchpy import OpenSearch

from localmode.harness import local_settings
from simsearch.settings import Settings
from tests.unit.test_reindex import *  # noqa: F403 - the same tests, on this module's settings

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(tmp_path: Path, opensearch_url: str, opensearch_client: OpenSearch) -> Iterator[Settings]:
    prefix = f"t{uuid.uuid4().hex[:12]}"
    local = local_settings(model_dir=tmp_path, index_path=tmp_path / "index.sqlite", index_prefix=prefix)
    yield replace(local, opensearch_url=opensearch_url, engine="lucene")
    opensearch_client.indices.delete(index=f"{prefix}-*")
