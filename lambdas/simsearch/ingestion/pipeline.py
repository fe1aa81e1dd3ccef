"""A large batch in chunks through three overlapping stages: read (I/O, decoding), embed, write (I/O).

While chunk k is embedded on the calling thread, chunk k+1 is read and chunk k-1 written on two
other threads, so the model, the one stage that keeps the CPU busy, waits for S3 and the index only
before the first chunk and after the last. A batch of one chunk (a full SQS batch of ten keys is one)
runs on the calling thread alone, one stage after the other, exactly as an unchunked batch would.

Chunks are independent: a key belongs to one chunk, and each chunk is decided, embedded and written
on its own, so the overlap changes when things happen, never what.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

_C = TypeVar("_C")  # a chunk
_P = TypeVar("_P")  # a chunk's plan, read
_O = TypeVar("_O")  # an outcome
_T = TypeVar("_T")

CHUNK = 10
"""Keys per chunk, so per inference call: a full SQS batch is one chunk, embedded in one call."""


def chunked(items: Sequence[_C], size: int = CHUNK) -> list[Sequence[_C]]:
    """``items`` in consecutive chunks of ``size`` (the last may be shorter); none for no items."""
    return [items[start : start + size] for start in range(0, len(items), size)]


class Pipeline:
    """Runs chunks through ``read``, ``embed`` and ``write``, overlapping neighbouring chunks."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ingest-pipeline")

    def run(
        self,
        chunks: Sequence[_C],
        *,
        read: Callable[[_C], _P],
        embed: Callable[[_P], None],
        write: Callable[[_P], list[_O]],
    ) -> list[_O]:
        """Every chunk's outcomes, in chunk order. An error in any stage is raised once nothing of the
        batch is still running (so no write outlives the call that failed)."""
        if len(chunks) <= 1:
            outcomes: list[_O] = []
            for chunk in chunks:
                plan = read(chunk)
                embed(plan)
                outcomes += write(plan)
            return outcomes
        pending: list[Future[Any]] = []
        try:
            return self._overlapped(chunks, read=read, embed=embed, write=write, pending=pending)
        finally:
            wait(pending)

    def close(self) -> None:
        self._pool.shutdown()

    def _overlapped(
        self,
        chunks: Sequence[_C],
        *,
        read: Callable[[_C], _P],
        embed: Callable[[_P], None],
        write: Callable[[_P], list[_O]],
        pending: list[Future[Any]],
    ) -> list[_O]:
        def track(future: Future[_T]) -> Future[_T]:
            pending.append(future)
            return future

        outcomes: list[_O] = []
        reading = track(self._pool.submit(read, chunks[0]))
        writing: Future[list[_O]] | None = None
        for position in range(len(chunks)):
            plan = reading.result()
            if position + 1 < len(chunks):
                reading = track(self._pool.submit(read, chunks[position + 1]))
            embed(plan)
            if writing is not None:
                outcomes += writing.result()
            writing = track(self._pool.submit(write, plan))
        if writing is not None:
            outcomes += writing.result()
        return outcomes
