"""Ingestion into every index that takes writes: one ``IngestionService`` per index, each with its model.

Normally one index takes writes. While a re-index runs, two do (the serving one and the one being
filled), and every upload and delete must reach both, each embedded with its own index's model: the
writing pointer is read on every batch, so a batch started after a re-index began writes both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from simsearch.errors import NotFoundError
from simsearch.ingestion.service import DEFAULT_WORKERS, IngestionService

if TYPE_CHECKING:
    from simsearch.index.port import FailureLog
    from simsearch.ingestion.changes import Change, KeyOutcome
    from simsearch.preprocess import ImageLimits
    from simsearch.storage import ImageStore
    from simsearch.targets import CollectionTargets, Target


class CollectionIngestion:
    """``sync`` keeps every writing index in step with the bucket; ``into`` fills one index (a backfill)."""

    def __init__(
        self,
        targets: CollectionTargets,
        *,
        images: ImageStore,
        failures: FailureLog,
        limits: ImageLimits,
        query_upload_prefix: str,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        self._targets = targets
        self._images, self._failures = images, failures
        self._limits, self._query_upload_prefix, self._workers = limits, query_upload_prefix, workers
        self._services: dict[str, IngestionService] = {}

    def sync(self, changes: Sequence[Change], *, deadline: float | None = None) -> list[KeyOutcome]:
        """Bring every writing index in line with ``changes``; one outcome per key and index."""
        return [
            outcome
            for target in self._targets.writing()
            for outcome in self._service(target).sync(changes, deadline=deadline)
        ]

    def into(self, name: str) -> IngestionService:
        """The ingestion of the writing index ``name`` alone (``NotFoundError`` if it takes no writes)."""
        writing = {info.name: info for info in self._targets.collection.pointed("writing")}
        if name not in writing:
            raise NotFoundError(f"index {name!r} takes no writes: start a re-index into it first")
        return self._service(self._targets.target(writing[name]))

    def close(self) -> None:
        for service in self._services.values():
            service.close()
        self._targets.close()

    def _service(self, target: Target) -> IngestionService:
        name = target.index.name
        if name not in self._services:
            self._services[name] = IngestionService(
                images=self._images,
                embedder=target.embedder,
                index=target.index,
                failures=self._failures,
                limits=self._limits,
                query_upload_prefix=self._query_upload_prefix,
                workers=self._workers,
            )
        return self._services[name]
