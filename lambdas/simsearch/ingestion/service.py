"""``IngestionService``: a batch of changes through look, decide, load and embed, and verified writes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

from simsearch.errors import NotFoundError, SimsearchError
from simsearch.ingestion.cache import EmbeddingCache
from simsearch.ingestion.changes import EMBEDDING_REUSED, QUERY_UPLOAD, Change, KeyOutcome, Target, targets_of
from simsearch.ingestion.decision import Gone, Index, Present, Refuse, Remove, Rules, Unchanged, decide
from simsearch.ingestion.documents import Loaded, document_for, load
from simsearch.ingestion.failures import FailurePolicy
from simsearch.ingestion.fan_out import ThreadFanOut
from simsearch.ingestion.writer import VerifiedWriter, Write

if TYPE_CHECKING:
    from simsearch.embedder import Embedder
    from simsearch.index.port import FailureLog, VectorIndex
    from simsearch.preprocess import ImageLimits
    from simsearch.storage import ImageStore

DEFAULT_WORKERS = 10  # one per message of a full SQS batch: HEAD, GET and decode overlap


@dataclass
class _Plan:
    """One batch so far: keys to look at, outcomes decided, writes to make, objects to load and embed."""

    to_look: list[Target] = field(default_factory=list)
    outcomes: list[KeyOutcome] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    to_index: list[Present] = field(default_factory=list)

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
        self._writer = VerifiedWriter(index=index, images=images, fan_out=self._fan_out)

    def sync(self, changes: Sequence[Change]) -> list[KeyOutcome]:
        """Bring the index in line with the current state of every key in ``changes``; one outcome per key.

        Look at each key as it is now, decide what it needs, load and embed the objects to index as one
        batch, then write it all and keep only the writes the bucket still agrees with.
        """
        plan = _Plan()
        for target in targets_of(changes):
            if self._rules.ignores(target.key):
                plan.add(target.outcome("skipped", reason=QUERY_UPLOAD))
            else:
                plan.to_look.append(target)
        for found in self._fan_out(self._look, plan.to_look):  # HEAD, and the index's document
            self._decide(found, plan)
        self._embed(self._load(plan), plan)  # GET and decode in parallel, then one inference call
        return plan.outcomes + self._writer.write(plan.writes)  # bulk writes, each checked afterwards

    def close(self) -> None:
        """Release the threads and every part: the model's pool, the index connections, the S3 client."""
        for part in (self._fan_out, self._embedder, self._index, self._log, self._images):
            part.close()

    def _look(self, target: Target) -> Gone | Present | KeyOutcome:
        try:
            obj = self._images.head(target.bucket, target.key)
        except NotFoundError:
            return Gone(target)
        except SimsearchError as error:
            return self._failures.outcome(target, error, etag=None)
        try:
            return Present(target, obj, self._index.get(target.image_id))
        except NotFoundError:
            return Present(target, obj, None)
        except SimsearchError as error:
            return self._failures.outcome(target, error, etag=obj.etag)

    def _decide(self, found: Gone | Present | KeyOutcome, plan: _Plan) -> None:
        if isinstance(found, KeyOutcome):  # the look itself failed
            plan.add(found)
            return
        match decide(found, self._rules):
            case Remove(target=target):
                plan.add(Write.removal(target))
            case Unchanged(found=present):
                plan.add(present.target.outcome("unchanged", etag=present.obj.etag))
            case Refuse(found=present, error=error):
                plan.add(self._failures.give_up(present, error))
            case Index(found=present):
                plan.to_index.append(present)

    def _load(self, plan: _Plan) -> list[Loaded]:
        results = self._fan_out(partial(load, self._images, limits=self._rules.limits), plan.to_index)
        for found, result in zip(plan.to_index, results, strict=True):
            if isinstance(result, SimsearchError):
                plan.add(self._failures.give_up(found, result))
        return [result for result in results if isinstance(result, Loaded)]

    def _embed(self, loaded: list[Loaded], plan: _Plan) -> None:
        embedded = self._cache.embed([(item.sha256, item.image.rgb) for item in loaded])
        for item, result in zip(loaded, embedded, strict=True):
            if isinstance(result.vector, SimsearchError):
                plan.add(self._failures.give_up(item.found, result.vector))
            else:
                document = document_for(item, result.vector, model_id=self._rules.model_id)
                reason = EMBEDDING_REUSED if result.reused else ""
                plan.add(Write.upsert(item.found.target, document, etag=item.found.obj.etag, reason=reason))
