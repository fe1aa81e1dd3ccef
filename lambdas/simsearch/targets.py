"""Which index a request reads or writes, and with which model: decided from the collection's pointers.

A ``Target`` is an index and the embedder of the model whose vectors it holds; both come from the same
``IndexInfo``, so an index is never searched or written with another model's vectors. Queries ask
``Serving`` once per request; ingestion asks ``Writing`` once per batch (two targets while a re-index
runs). ``Serving`` remembers the answer for a few seconds: a query that uses an answer a switch has
just made stale still searches a consistent pair (the previous index with its own model).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from simsearch.errors import IndexUnavailableError

if TYPE_CHECKING:
    from simsearch.embedder import Embedder
    from simsearch.index.port import IndexCollection, IndexInfo, VectorIndex
    from simsearch.models import ModelStore

SERVING_TTL_S = 10.0
"""How long a query function trusts the serving pointer it read: a switch reaches every query by then."""


@dataclass(frozen=True)
class Target:
    index: VectorIndex
    embedder: Embedder


class Serving(Protocol):
    def current(self) -> Target: ...

    def close(self) -> None: ...


class FixedServing:
    """One index and one model, always (tests, the evaluation, tools that hold an index themselves)."""

    def __init__(self, target: Target) -> None:
        self._target = target

    def current(self) -> Target:
        return self._target

    def close(self) -> None:
        for part in (self._target.embedder, self._target.index):
            part.close()


class CollectionTargets:
    """Targets from a collection's pointers, each index with its own model (``ModelStore``)."""

    def __init__(
        self,
        collection: IndexCollection,
        models: ModelStore,
        *,
        ttl_s: float = SERVING_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._collection = collection
        self._models = models
        self._ttl_s = ttl_s
        self._clock = clock
        self._handles: dict[str, VectorIndex] = {}
        self._serving: tuple[float, Target] | None = None
        self._lock = threading.Lock()

    @property
    def collection(self) -> IndexCollection:
        return self._collection

    def current(self) -> Target:
        """The serving index and its model (read again once ``ttl_s`` has passed)."""
        with self._lock:
            if self._serving is None or self._clock() - self._serving[0] > self._ttl_s:
                serving = next(iter(self._collection.pointed("serving")), None)
                if serving is None:
                    raise IndexUnavailableError(
                        "no index serves queries yet: the deployment's bootstrap makes one"
                    )
                self._serving = (self._clock(), self.target(serving))
            return self._serving[1]

    def writing(self) -> list[Target]:
        """Every index that takes writes now, each with its model (read on every call)."""
        writing = self._collection.pointed("writing")
        if not writing:
            raise IndexUnavailableError("no index takes writes yet: the deployment's bootstrap makes one")
        return [self.target(info) for info in writing]

    def target(self, info: IndexInfo) -> Target:
        if info.name not in self._handles:
            self._handles[info.name] = self._collection.index(info)
        return Target(self._handles[info.name], self._models.embedder(info))

    def close(self) -> None:
        self._models.close()
        self._collection.close()
