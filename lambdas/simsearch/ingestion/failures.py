"""The failure policy: what a key becomes when a step fails for it.

A transient error (S3 or the index unavailable, the object changing while it was read) becomes a
``retry``: the message comes back and the retry sees the newer state. A permanent one (an invalid or
unsupported image, too large, access denied) is recorded in the ``FailureLog`` (key, ETag, reason,
time) and becomes ``failed``, which acknowledges the message. If the object's older content was
indexed, that document is removed as well, so search never shows a vector of content the object no
longer has. An error the failure log itself cannot take for good is a bug, not bad input: it is raised,
so the batch fails and the dead-letter queue catches what keeps failing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from simsearch.errors import NotFoundError, SimsearchError
from simsearch.index.port import FailureRecord
from simsearch.ingestion.changes import CHANGED_DURING_INGESTION, KeyOutcome, Target
from simsearch.ingestion.writer import Write

if TYPE_CHECKING:
    from simsearch.index.port import FailureLog
    from simsearch.ingestion.decision import Present


class FailurePolicy:
    """Turns a failed step into a retry, or into a recorded failure (and the stale document's removal)."""

    def __init__(self, log: FailureLog) -> None:
        self._log = log

    def give_up(self, found: Present, error: SimsearchError) -> KeyOutcome | Write:
        """The outcome for an existing object that could not be indexed; a removal if its old vector stays."""
        if isinstance(error, NotFoundError):  # gone or replaced since HEAD: the retry sees the new state
            return found.target.outcome("retry", reason=CHANGED_DURING_INGESTION, detail=str(error))
        recorded = self.outcome(found.target, error, etag=found.obj.etag)
        if recorded.kind == "retry" or found.indexed is None:
            return recorded
        return Write.removal(found.target, etag=found.obj.etag, done=recorded)

    def outcome(self, target: Target, error: SimsearchError, *, etag: str | None) -> KeyOutcome:
        """A retry for a transient error; a permanent one is recorded in the failure log first."""
        if error.retryable:
            return target.outcome("retry", reason=error.code, detail=str(error), etag=etag)
        record = FailureRecord(
            key=target.key, etag=etag, reason_code=error.code, message=str(error), at=datetime.now(UTC)
        )
        try:
            self._log.record(record)
        except SimsearchError as log_error:
            if not log_error.retryable:
                raise
            detail = f"{error.code} could not be recorded: {log_error}"
            return target.outcome("retry", reason=log_error.code, detail=detail, etag=etag)
        return target.outcome("failed", reason=error.code, detail=str(error), etag=etag)
