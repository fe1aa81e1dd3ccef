"""The vector index port, and the one place that picks its adapter from the settings.

Nothing here is imported eagerly: the CDK app imports ``simsearch.index.naming`` and
``simsearch.index.mapping`` (standard library only) and must not pull in numpy through this package;
the Lambda bundle ships opensearch-py but not faiss; local mode need not import opensearch-py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simsearch.index.port import (
        Document,
        FailureLog,
        FailureRecord,
        Filters,
        Hit,
        ImageMetadata,
        IndexCollection,
        IndexedImage,
        IndexInfo,
        Pointers,
        Vector,
        VectorIndex,
        WriteResult,
    )
    from simsearch.settings import Settings

__all__ = [
    "Document",
    "FailureLog",
    "FailureRecord",
    "Filters",
    "Hit",
    "ImageMetadata",
    "IndexCollection",
    "IndexInfo",
    "IndexedImage",
    "Pointers",
    "Vector",
    "VectorIndex",
    "WriteResult",
    "connect_collection",
    "connect_failure_log",
    "connect_index",
]


def __getattr__(name: str) -> object:
    """The port's names, imported on first use (PEP 562)."""
    if name in __all__:
        return getattr(importlib.import_module("simsearch.index.port"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def connect_index(settings: Settings, *, model_id: str, dim: int) -> VectorIndex:
    """OpenSearch when ``settings.opensearch_url`` is set, else the embedded index at its path."""
    if settings.opensearch_url:
        from simsearch.index.opensearch import OpenSearchIndex

        return OpenSearchIndex.connect(settings, model_id=model_id, dim=dim)
    from simsearch.index.embedded import EmbeddedIndex

    return EmbeddedIndex.connect(settings, model_id=model_id, dim=dim)


def connect_collection(settings: Settings) -> IndexCollection:
    """The deployment's indexes and pointers, in whichever store ``connect_index`` picks."""
    if settings.opensearch_url:
        from simsearch.index.opensearch_collection import OpenSearchCollection

        return OpenSearchCollection.connect(settings)
    from simsearch.index.embedded import EmbeddedCollection

    return EmbeddedCollection.connect(settings)


def connect_failure_log(settings: Settings) -> FailureLog:
    """Where ingestion records failures: beside the vectors, in whichever store ``connect_index`` picks."""
    if settings.opensearch_url:
        from simsearch.index.opensearch import OpenSearchFailureLog

        return OpenSearchFailureLog.connect(settings)
    from simsearch.index.embedded import EmbeddedFailureLog

    return EmbeddedFailureLog.open(settings.embedded_index_path)
