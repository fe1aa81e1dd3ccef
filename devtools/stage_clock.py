"""Where an ingest handler's time goes: fetch, decode, preprocess, infer, write, verify.

``StageClock.instrument()`` wraps, for the duration of a block, the methods that do each stage's work,
whichever adapter runs them (the moto-backed S3 store or the remote stand-in, OpenSearch, the embedded
index or the stand-in), and records a span for every call made while ``recording()``:

- fetch: S3 HEAD and GET, and the index reads that tell what is indexed already;
- decode: bytes to an upright RGB image (``decode_image`` as ingestion calls it);
- preprocess: an image to the model's tensor (``to_tensor`` as the embedder calls it);
- infer: the ONNX Runtime session's run;
- write: the bulk upsert and delete;
- verify: the HEAD after a write that checks the object is still what was indexed.

Calls overlap (a batch fetches on ten threads), so each stage is reported twice: the time its calls
took, summed over threads, per image (``busy_ms``), and the share of the handler's wall time during
which at least one of its calls was running (``wall_share``); shares of overlapping stages add up to
more than 1. What no stage covers (``other``) is the handler's own work: parsing, deciding, logging.

A benchmark tool, not production code: it patches classes while its block runs.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

STAGES = ("fetch", "decode", "preprocess", "infer", "write", "verify")

Span = tuple[float, float]


@dataclass(frozen=True)
class StageReport:
    """Per stage: busy milliseconds per image (summed over threads) and share of the handler's wall time."""

    images: int
    handler_seconds: float
    busy_ms: dict[str, float]
    wall_share: dict[str, float]
    other_share: float  # of the handler's wall time, in which no stage ran
    exposed_io_ms: float  # per handler run: waiting on S3 or the index while no CPU stage ran


class StageClock:
    """Records spans per stage while ``recording()``; ``report(images)`` sums them up."""

    def __init__(self) -> None:
        self._spans: dict[str, list[Span]] = {stage: [] for stage in (*STAGES, "handler")}
        self._lock = threading.Lock()
        self._written: set[str] = set()
        self._active = False

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record the calls made inside the block as one handler run."""
        self._active = True
        started = time.perf_counter()
        try:
            yield
        finally:
            self._add("handler", started, time.perf_counter())
            self._active = False

    def reset(self) -> None:
        with self._lock:
            for spans in self._spans.values():
                spans.clear()
            self._written.clear()

    def report(self, images: int) -> StageReport:
        handler = _merged(self._spans["handler"])
        wall = sum(end - start for start, end in handler)
        busy = {stage: 1000 * sum(e - s for s, e in self._spans[stage]) / images for stage in STAGES}
        share = {stage: _length(_merged(self._spans[stage])) / wall for stage in STAGES}
        covered = _length(_merged([span for stage in STAGES for span in self._spans[stage]])) / wall
        io = _merged([span for stage in ("fetch", "write", "verify") for span in self._spans[stage]])
        cpu = _merged([span for stage in ("decode", "preprocess", "infer") for span in self._spans[stage]])
        exposed = (_length(io) - _overlap(io, cpu)) / max(1, len(self._spans["handler"]))
        return StageReport(images, wall, busy, share, 1.0 - covered, 1000 * exposed)

    @contextmanager
    def instrument(
        self,
        *,
        stores: Sequence[type],
        indexes: Sequence[type],
        embedders: Sequence[type],
        decoders: Sequence[tuple[Any, str]],
        preprocessors: Sequence[tuple[Any, str]],
    ) -> Iterator[StageClock]:
        """Wrap the stage methods of these classes, and the functions ``(module, name)``, for the block."""
        from simsearch.ids import image_id_for

        def head_stage(_: object, bucket: str, key: str, *__: object, **___: object) -> str:
            image_id = image_id_for(bucket, key)
            with self._lock:
                if image_id in self._written:
                    self._written.discard(image_id)
                    return "verify"
            return "fetch"

        def written(ids: Sequence[str]) -> None:
            with self._lock:
                self._written.update(ids)

        def upserted(_: object, documents: Sequence[Any]) -> None:
            written([document.image_id for document in documents])

        def deleted(_: object, image_ids: Sequence[str]) -> None:
            written(image_ids)

        wraps: list[_Wrap] = [
            *(_Wrap(store, "head", head_stage) for store in stores),
            *(_Wrap(store, name, "fetch") for store in stores for name in ("read", "fetch")),
            *(_Wrap(index, name, "fetch") for index in indexes for name in ("get", "lookup")),
            *(_Wrap(index, "upsert", "write", before=upserted) for index in indexes),
            *(_Wrap(index, "delete", "write", before=deleted) for index in indexes),
            *(_Wrap(embedder, "_run", "infer") for embedder in embedders),
            *(_Wrap(module, name, "decode", function=True) for module, name in decoders),
            *(_Wrap(module, name, "preprocess", function=True) for module, name in preprocessors),
        ]
        with ExitStack() as stack:
            for wrap in wraps:
                stack.enter_context(self._wrapped(wrap))
            yield self

    def _add(self, stage: str, start: float, end: float) -> None:
        with self._lock:
            self._spans[stage].append((start, end))

    @contextmanager
    def _wrapped(self, wrap: _Wrap) -> Iterator[None]:
        owner, name, stage, before = wrap.owner, wrap.name, wrap.stage, wrap.before
        original = getattr(owner, name, None) if wrap.function else vars(owner).get(name)
        if original is None:  # an adapter without this operation: nothing to time
            yield
            return

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self._active:
                return original(*args, **kwargs)
            if before is not None:
                before(*args, **kwargs)
            named = stage if isinstance(stage, str) else stage(*args, **kwargs)
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._add(named, started, time.perf_counter())

        setattr(owner, name, timed)
        try:
            yield
        finally:
            setattr(owner, name, original)


@dataclass(frozen=True)
class _Wrap:
    """``owner.name`` timed as ``stage`` (or the stage a function of the call's arguments names)."""

    owner: Any
    name: str
    stage: str | Callable[..., str]
    function: bool = False  # a module's function, not a class's method
    before: Callable[..., None] | None = None  # told of each call before it runs


def _merged(spans: Sequence[Span]) -> list[Span]:
    """The union of ``spans`` as disjoint spans, in order."""
    merged: list[Span] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _overlap(first: Sequence[Span], second: Sequence[Span]) -> float:
    """How long two unions of disjoint, ordered spans overlap."""
    total, i, j = 0.0, 0, 0
    while i < len(first) and j < len(second):
        start, end = max(first[i][0], second[j][0]), min(first[i][1], second[j][1])
        total += max(0.0, end - start)
        if first[i][1] < second[j][1]:
            i += 1
        else:
            j += 1
    return total


def _length(spans: Sequence[Span]) -> float:
    return sum(end - start for start, end in spans)
