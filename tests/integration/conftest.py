"""Fixtures for the ingestion tests: moto S3 + SQS, the real model, and each index backend.

``ingest_settings`` runs a test twice: against the embedded index (no server) and against the
OpenSearch node (``integration`` mark, lucene engine: the test node has no faiss libraries).
``deploy_ingest`` deploys the handlers with settings through ``localmode.harness.deployed``, as the
CDK app would configure them, so each test calls the real ``handlers.ingest.handler``. Names are
ingestion-specific so they cannot shadow fixtures of ``tests/conftest.py`` (which has ``model_dir``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws
from opensearchpy import OpenSearch

from localmode.cloud import LocalCloud, provision
from localmode.harness import deployed, environment, local_settings
from simsearch.index import connect_failure_log, connect_index
from simsearch.manifest import ModelManifest
from simsearch.settings import Settings
from tests.factories import REGION
from tests.integration.ingest_world import BUCKET, IndexView, Uploads

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture(scope="session")
def model_manifest(model_dir: Path) -> ModelManifest:
    return ModelManifest.load(model_dir)


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    """moto's S3 and SQS in this process, the bucket notifying the queue as infra wires them.

    Its credentials and region are in the environment, so clients the code under test creates reach it
    too; the s3:TestEvent of the set-up is left in the queue.
    """
    with mock_aws():
        cloud = provision("", bucket=BUCKET, region=REGION)
        with environment({**cloud.env, "AWS_PROFILE": None}):
            yield cloud


@pytest.fixture
def uploads(cloud: LocalCloud) -> Uploads:
    return Uploads.of(cloud)


@pytest.fixture
def versioned_uploads(cloud: LocalCloud) -> Uploads:
    """Like ``uploads``, with versioning on: a delete then leaves a delete marker."""
    return Uploads.of(cloud, versioned=True)


@pytest.fixture(params=["embedded", pytest.param("opensearch", marks=pytest.mark.integration)])
def ingest_settings(request: pytest.FixtureRequest, tmp_path: Path, model_dir: Path) -> Iterator[Settings]:
    """Settings for a fresh index of our own, in the embedded store or on the OpenSearch node."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    local = local_settings(
        model_dir=model_dir, index_path=tmp_path / "index.sqlite", index_prefix=prefix, ort_threads=2
    )
    if request.param == "embedded":
        yield local
        return
    client: OpenSearch = request.getfixturevalue("opensearch_client")
    yield replace(local, opensearch_url=request.getfixturevalue("opensearch_url"))
    client.indices.delete(index=f"{prefix}-*")


@pytest.fixture
def deploy_ingest(cloud: LocalCloud) -> Iterator[Callable[[Settings], Invoke]]:
    """``deploy_ingest(settings)`` gives ``invoke(event) -> response``: the real handler with ``settings``."""
    with ExitStack() as deployments:
        yield lambda settings: deployments.enter_context(deployed(settings, cloud=cloud)).invoke_ingest


@pytest.fixture
def ingest(deploy_ingest: Callable[[Settings], Invoke], ingest_settings: Settings) -> Invoke:
    return deploy_ingest(ingest_settings)


@pytest.fixture
def index_view(
    request: pytest.FixtureRequest, ingest_settings: Settings, model_manifest: ModelManifest
) -> Iterator[IndexView]:
    """Reads the index and failure log that ``ingest_settings`` name."""
    if ingest_settings.opensearch_url:
        client: OpenSearch = request.getfixturevalue("opensearch_client")

        def refresh() -> None:
            client.indices.refresh(index=f"{ingest_settings.index_prefix}-*")
    else:

        def refresh() -> None:
            return None

    view = IndexView(
        index=connect_index(
            ingest_settings, model_id=model_manifest.model_id, dim=model_manifest.embedding_dim
        ),
        failure_log=connect_failure_log(ingest_settings),
        refresh=refresh,
    )
    yield view
    view.index.close()
    view.failure_log.close()
