"""The threads a batch's I/O runs on: HEADs, GETs, decodes and checks overlap (S3 and Pillow free the GIL)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

_T = TypeVar("_T")
_R = TypeVar("_R")


class FanOut(Protocol):
    """Runs ``function`` on every item, in parallel where that helps; results in input order."""

    def __call__(self, function: Callable[[_T], _R], items: Sequence[_T], /) -> list[_R]: ...


class ThreadFanOut:
    """A ``FanOut`` over a pool of ``workers`` threads; one item runs on the calling thread."""

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ingest")

    def __call__(self, function: Callable[[_T], _R], items: Sequence[_T], /) -> list[_R]:
        if len(items) < 2:
            return [function(item) for item in items]
        return list(self._pool.map(function, items))

    def close(self) -> None:
        self._pool.shutdown()
