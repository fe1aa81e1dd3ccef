"""Look at a batch's keys and load what must be indexed, in as few round trips as each key needs.

One index read (``VectorIndex.lookup``, a multi-get) tells what is indexed for every key of the
batch. Then each key, on a thread of its own, as soon as its own answers are in:

- nothing indexed for it (a new upload, the common case): one GET (``ImageStore.fetch``) brings the
  object's headers and its bytes at once, as a HEAD and a read of the version it saw would;
- a document indexed: a HEAD, and a read (``If-Match`` the ETag seen) only when the decision is to
  index it again, so a duplicate notification costs no download.

Then the key is decided (``decision.decide``, pure) and, if it is to be indexed, decoded: at most
``decode_slots`` at once, each a JPEG drafted to what the model needs (``min_side``), so a batch of
phone photos never holds ten full-resolution images. A key is decided and decoded while others are
still being fetched.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from simsearch.errors import NotFoundError, SimsearchError
from simsearch.ingestion.changes import KeyOutcome, Target
from simsearch.ingestion.decision import Decision, Gone, Index, Present, Remove, Rules, decide
from simsearch.ingestion.documents import Loaded, load

if TYPE_CHECKING:
    from simsearch.index.port import IndexedImage, VectorIndex
    from simsearch.ingestion.failures import FailurePolicy
    from simsearch.ingestion.fan_out import FanOut
    from simsearch.storage import ImageStore


@dataclass(frozen=True, slots=True)
class Read:
    """One key after reading: what its look found (or the outcome of a look that failed), what was
    decided, and for a key to index, the loaded image or the error that stopped it."""

    found: Gone | Present | KeyOutcome
    decision: Decision | None = None
    loaded: Loaded | SimsearchError | None = None


class Reader:
    """Reads the keys of a batch (see the module docstring); ``read`` answers one ``Read`` per key."""

    def __init__(
        self,
        *,
        images: ImageStore,
        index: VectorIndex,
        rules: Rules,
        failures: FailurePolicy,
        fan_out: FanOut,
        min_side: int | None,
        decode_slots: int,
    ) -> None:
        self._images, self._index, self._rules = images, index, rules
        self._failures, self._fan_out = failures, fan_out
        gate = threading.BoundedSemaphore(decode_slots)
        self._load = partial(load, images, limits=rules.limits, min_side=min_side, gate=gate)

    def read(self, targets: Sequence[Target]) -> list[Read]:
        """Every key's look, decision and load, in the order of ``targets``."""
        if not targets:
            return []
        try:
            indexed, failed = self._index.lookup([target.image_id for target in targets]), None
        except NotFoundError:  # no index yet: nothing is indexed (the write will say what is wrong)
            indexed, failed = {}, None
        except SimsearchError as error:  # each key reports it, with the ETag its HEAD finds
            indexed, failed = {}, error
        return self._fan_out(partial(self._read, indexed=indexed, failed=failed), targets)

    def _read(
        self, target: Target, *, indexed: Mapping[str, IndexedImage], failed: SimsearchError | None
    ) -> Read:
        document = indexed.get(target.image_id)
        if document is None and failed is None:
            return self._read_unindexed(target)
        try:
            obj = self._images.head(target.bucket, target.key)
        except NotFoundError:
            return Read(Gone(target), Remove(target))
        except SimsearchError as error:
            return Read(self._failures.outcome(target, error, etag=None))
        if failed is not None:
            return Read(self._failures.outcome(target, failed, etag=obj.etag))
        return self._decided(Present(target, obj, document))

    def _read_unindexed(self, target: Target) -> Read:
        """One GET for headers and bytes: nothing indexed means nothing to keep, so the bytes are needed."""
        try:
            obj, data = self._images.fetch(target.bucket, target.key, max_bytes=self._rules.limits.max_bytes)
        except NotFoundError:
            return Read(Gone(target), Remove(target))
        except SimsearchError as error:
            return Read(self._failures.outcome(target, error, etag=None))
        return self._decided(Present(target, obj, None), data=data)

    def _decided(self, found: Present, *, data: bytes | None = None) -> Read:
        decision = decide(found, self._rules)
        if not isinstance(decision, Index):
            return Read(found, decision)
        return Read(found, decision, self._load(found, data=data))
