"""Fixtures for the ingestion tests: moto S3 + SQS, the real model, and each index backend.

``ingest_settings`` runs a test twice: against the embedded index (no server) and against the
OpenSearch node (``integration`` mark, lucene engine: the test node has no faiss libraries).
``deploy_ingest`` puts settings into the environment as infra would (``Settings.to_env()``) and resets
the handler's composition root, so each test calls the real ``handlers.ingest.handler``. Names are
ingestion-specific so they cannot shadow fixtures of ``tests/conftest.py`` (which has ``model_dir``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from opensearchpy import OpenSearch

from handlers.ingest import handler, service
from simsearch.index import connect_failure_log, connect_index
from simsearch.manifest import ModelManifest
from simsearch.settings import Settings
from tests.factories import REGION, lambda_context
from tests.integration.ingest_world import BUCKET, IndexView, Uploads

Invoke = Callable[[dict[str, Any]], dict[str, Any]]


@pytest.fixture(scope="session")
def model_manifest(model_dir: Path) -> ModelManifest:
    return ModelManifest.load(model_dir)


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.Session]:
    """moto's S3 and SQS, with fake credentials so nothing can reach a real account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield boto3.Session(region_name=REGION)


@pytest.fixture
def uploads(moto_aws: boto3.Session) -> Uploads:
    """The images bucket notifying the queue; the s3:TestEvent of the set-up is left in the queue."""
    return Uploads.create(moto_aws)


@pytest.fixture
def versioned_uploads(moto_aws: boto3.Session) -> Uploads:
    """Like ``uploads``, with versioning on: a delete then leaves a delete marker."""
    return Uploads.create(moto_aws, versioned=True)


@pytest.fixture(params=["embedded", pytest.param("opensearch", marks=pytest.mark.integration)])
def ingest_settings(request: pytest.FixtureRequest, tmp_path: Path, model_dir: Path) -> Iterator[Settings]:
    """Settings for a fresh index of our own, in the embedded store or on the OpenSearch node."""
    prefix = f"t{uuid.uuid4().hex[:12]}"
    local = Settings(
        model_dir=model_dir,
        images_bucket=BUCKET,
        embedded_index_path=tmp_path / "index.sqlite",
        opensearch_auth="none",
        index_prefix=prefix,
        engine="lucene",
        aws_region=REGION,
        ort_threads=2,
    )
    if request.param == "embedded":
        yield local
        return
    client: OpenSearch = request.getfixturevalue("opensearch_client")
    yield replace(local, opensearch_url=request.getfixturevalue("opensearch_url"))
    client.indices.delete(index=f"{prefix}-*")


@pytest.fixture
def deploy_ingest(
    monkeypatch: pytest.MonkeyPatch,
    moto_aws: boto3.Session,  # noqa: ARG001 - the handler's S3 client must be created inside moto
) -> Iterator[Callable[[Settings], Invoke]]:
    """``deploy_ingest(settings)`` gives ``invoke(event) -> response``: the real handler with ``settings``."""

    def deployed(settings: Settings) -> Invoke:
        for name, value in settings.to_env().items():
            monkeypatch.setenv(name, value)
        service.cache_clear()
        return lambda event: handler(event, lambda_context())

    yield deployed
    service.cache_clear()


@pytest.fixture
def ingest(deploy_ingest: Callable[[Settings], Invoke], ingest_settings: Settings) -> Invoke:
    return deploy_ingest(ingest_settings)


@pytest.fixture
def index_view(
    request: pytest.FixtureRequest, ingest_settings: Settings, model_manifest: ModelManifest
) -> IndexView:
    """Reads the index and failure log that ``ingest_settings`` name."""
    if ingest_settings.opensearch_url:
        client: OpenSearch = request.getfixturevalue("opensearch_client")

        def refresh() -> None:
            client.indices.refresh(index=f"{ingest_settings.index_prefix}-*")
    else:

        def refresh() -> None:
            return None

    return IndexView(
        index=connect_index(
            ingest_settings, model_id=model_manifest.model_id, dim=model_manifest.embedding_dim
        ),
        failure_log=connect_failure_log(ingest_settings),
        refresh=refresh,
    )
