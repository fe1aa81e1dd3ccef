"""A large batch in chunks through three overlapping stages: read (I/O, decoding), embed, write (I/O).

While chunk k is embedded on the calling thread, chunk k+1 is read and chunk k-1 written on two
other threads, so the model, the one stage that keeps the CPU busy, waits for S3 and the index only
before the first chunk and after the last. A batch of one chunk (a full SQS batch of ten keys is one)
runs on the calling thread alone, one stage after the other, exactly as an unchunked batch would.

Chunks are independent: a key belongs to one chunk, and each chunk is decided, embedded and written
on its own, so the overlap changes when things happen, never what; and a batch can stop between two
chunks (``may_start``) when its time runs short, the rest answered without being touched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any, Generic, TypeVar

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
        may_start: Callable[[int], bool] | None = None,
        skip: Callable[[_C], list[_O]] | None = None,
    ) -> list[_O]:
        """Every chunk's outcomes, in chunk order. An error in any stage is raised once nothing of the
        batch is still running (so no write outlives the call that failed).

        ``may_start(n)``, asked before each chunk with the number of chunks started so far, may cut the
        batch short: the chunks from the first it refuses on are not read, and answer ``skip(chunk)``.
        """
        if (may_start is None) != (skip is None):
            raise TypeError("may_start and skip go together: a chunk not started must still be answered")
        if not chunks:
            return []
        stop = _Stop(may_start, skip)
        if not stop.may_start(0):
            return stop.skipped(chunks)
        if len(chunks) == 1:
            plan = read(chunks[0])
            embed(plan)
            return write(plan)
        pending: list[Future[Any]] = []
        try:
            return self._overlapped(chunks, read=read, embed=embed, write=write, stop=stop, pending=pending)
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
        stop: _Stop[_C, _O],
        pending: list[Future[Any]],
    ) -> list[_O]:
        def track(future: Future[_T]) -> Future[_T]:
            pending.append(future)
            return future

        outcomes: list[_O] = []
        reading: Future[_P] | None = track(self._pool.submit(read, chunks[0]))
        writing: Future[list[_O]] | None = None
        started = 1
        while reading is not None:
            plan = reading.result()
            reading = None
            if started < len(chunks) and stop.may_start(started):
                reading = track(self._pool.submit(read, chunks[started]))
                started += 1
            embed(plan)
            if writing is not None:
                outcomes += writing.result()
            writing = track(self._pool.submit(write, plan))
        if writing is not None:
            outcomes += writing.result()
        return outcomes + stop.skipped(chunks[started:])


class _Stop(Generic[_C, _O]):
    """``Pipeline.run``'s ``may_start`` and ``skip``; without them every chunk starts."""

    def __init__(
        self, may_start: Callable[[int], bool] | None, skip: Callable[[_C], list[_O]] | None
    ) -> None:
        self._may_start, self._skip = may_start, skip

    def may_start(self, started: int) -> bool:
        return self._may_start is None or self._may_start(started)

    def skipped(self, chunks: Sequence[_C]) -> list[_O]:
        if not chunks or self._skip is None:
            return []
        return [outcome for chunk in chunks for outcome in self._skip(chunk)]
