"""``IngestionService``: a batch of changes through look, decide, load and embed, and verified writes."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from simsearch.errors import SimsearchError
from simsearch.ingestion.cache import EmbeddingCache
from simsearch.ingestion.changes import (
    EMBEDDING_REUSED,
    OUT_OF_TIME,
    QUERY_UPLOAD,
    Change,
    KeyOutcome,
    Target,
    targets_of,
)
from simsearch.ingestion.decision import Index, Present, Refuse, Remove, Rules, Unchanged
from simsearch.ingestion.documents import Loaded, document_for
from simsearch.ingestion.failures import FailurePolicy
from simsearch.ingestion.fan_out import ThreadFanOut
from simsearch.ingestion.pipeline import CHUNK, Pipeline, chunked
from simsearch.ingestion.reading import Read, Reader
from simsearch.ingestion.time_budget import TimeBudget
from simsearch.ingestion.writer import VerifiedWriter, Write
from simsearch.manifest import manifest_of
from simsearch.preprocess import draft_min_side

if TYPE_CHECKING:
    from simsearch.embedder import Embedder
    from simsearch.index.port import FailureLog, Vector, VectorIndex
    from simsearch.preprocess import ImageLimits
    from simsearch.storage import ImageStore

DEFAULT_WORKERS = 2 * CHUNK
"""I/O threads: one per key of the chunk being read (HEAD or GET, then decode) and one per key of the
chunk being checked after its write, since the pipeline overlaps the two."""

DECODE_SLOTS = max(1, min(os.cpu_count() or 1, 4))
"""Images decoded at once: decoding is CPU work, so more than the cores only holds more pixels."""


@dataclass
class _Plan:
    """One chunk so far: outcomes decided, writes to make, objects loaded and waiting to be embedded."""

    outcomes: list[KeyOutcome] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    loaded: list[Loaded] = field(default_factory=list)
    known: dict[str, Vector] = field(default_factory=dict)  # the embedding cache's vectors for ``loaded``

    def add(self, step: KeyOutcome | Write) -> None:
        if isinstance(step, KeyOutcome):
            self.outcomes.append(step)
        else:
            self.writes.append(step)


class IngestionService:
    """Keeps the vector index in step with an image bucket (see ``simsearch.ingestion``)."""

    def __init__(
        self,
        *,
        images: ImageStore,
        embedder: Embedder,
        index: VectorIndex,
        failures: FailureLog,
        limits: ImageLimits,
        query_upload_prefix: str,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        self._images, self._embedder, self._index, self._log = images, embedder, index, failures
        self._rules = Rules(
            model_id=embedder.model_id, limits=limits, query_upload_prefix=query_upload_prefix
        )
        self._failures = FailurePolicy(failures)
        self._cache = EmbeddingCache(index=index, embedder=embedder)
        self._fan_out = ThreadFanOut(workers)
        self._reader = Reader(
            images=images,
            index=index,
            rules=self._rules,
            failures=self._failures,
            fan_out=self._fan_out,
            min_side=_draft_side(embedder),
            decode_slots=DECODE_SLOTS,
        )
        self._writer = VerifiedWriter(index=index, images=images, fan_out=self._fan_out)
        self._pipeline = Pipeline()

    def sync(self, changes: Sequence[Change], *, deadline: float | None = None) -> list[KeyOutcome]:
        """Bring the index in line with the current state of every key in ``changes``; one outcome per key.

        Look at each key as it is now, decide what it needs, load and embed the objects to index as one
        batch, then write it all and keep only the writes the bucket still agrees with. A batch of more
        than ``pipeline.CHUNK`` keys goes in chunks whose reads and writes overlap the inference of
        their neighbours (``simsearch.ingestion.pipeline``). With a ``deadline`` (``time.monotonic``),
        chunks that would not finish in time are not started (``simsearch.ingestion.time_budget``).
        """
        skipped: list[KeyOutcome] = []
        to_look: list[Target] = []
        for target in targets_of(changes):
            if self._rules.ignores(target.key):
                skipped.append(target.outcome("skipped", reason=QUERY_UPLOAD))
            else:
                to_look.append(target)
        chunks = chunked(to_look)
        if deadline is None:
            return skipped + self._pipeline.run(chunks, read=self._read, embed=self._embed, write=self._write)
        budget = TimeBudget(deadline)
        return skipped + self._pipeline.run(
            chunks,
            read=self._read,
            embed=self._embed,
            write=self._write,
            may_start=budget.allows,
            skip=_out_of_time,
        )

    def close(self) -> None:
        """Release the threads and every part: the model's pool, the index connections, the S3 client."""
        self._pipeline.close()
        for part in (self._fan_out, self._embedder, self._index, self._log, self._images):
            part.close()

    def _read(self, chunk: Sequence[Target]) -> _Plan:
        """Look (HEAD or GET, and one index lookup), decide, and load (GET, decode) every key of ``chunk``."""
        plan = _Plan()
        reads = self._reader.read(chunk)
        for read in reads:
            self._decide(read, plan)
        for read in reads:  # after every look's outcome, as when looks and loads were two passes
            if isinstance(read.loaded, SimsearchError) and isinstance(read.found, Present):
                plan.add(self._failures.give_up(read.found, read.loaded))
            elif isinstance(read.loaded, Loaded):
                plan.loaded.append(read.loaded)
        plan.known = self._cache.lookup({item.sha256 for item in plan.loaded})
        return plan

    def _decide(self, read: Read, plan: _Plan) -> None:
        match read.decision:
            case None:  # the look itself failed
                if isinstance(read.found, KeyOutcome):
                    plan.add(read.found)
            case Remove(target=target):
                plan.add(Write.removal(target))
            case Unchanged(found=present):
                plan.add(present.target.outcome("unchanged", etag=present.obj.etag))
            case Refuse(found=present, error=error):
                plan.add(self._failures.give_up(present, error))
            case Index():
                pass  # loaded already; see ``_read``

    def _embed(self, plan: _Plan) -> None:
        loaded, plan.loaded = plan.loaded, []  # the images are not needed past this call
        embedded = self._cache.embed([(item.sha256, item.image.rgb) for item in loaded], known=plan.known)
        for item, result in zip(loaded, embedded, strict=True):
            if isinstance(result.vector, SimsearchError):
                plan.add(self._failures.give_up(item.found, result.vector))
            else:
                document = document_for(item, result.vector, model_id=self._rules.model_id)
                reason = EMBEDDING_REUSED if result.reused else ""
                plan.add(Write.upsert(item.found.target, document, etag=item.found.obj.etag, reason=reason))

    def _write(self, plan: _Plan) -> list[KeyOutcome]:
        return plan.outcomes + self._writer.write(plan.writes)  # bulk writes, each checked afterwards


def _out_of_time(chunk: Sequence[Target]) -> list[KeyOutcome]:
    detail = "the invocation had no time left for this key; it comes back with its message"
    return [target.outcome("retry", reason=OUT_OF_TIME, detail=detail) for target in chunk]


def _draft_side(embedder: Embedder) -> int | None:
    """The shorter side a JPEG may be drafted to for ``embedder``'s model; None (decode in full) when
    the embedder says nothing of its preprocessing."""
    manifest = manifest_of(embedder)
    return draft_min_side(manifest) if manifest is not None else None
