"""Ingestion: make the index agree with the bucket for every key a change names.

Changes are hints, not instructions. S3 delivers its notifications at least once and in no guaranteed
order, and the queue redelivers, so ingestion does not replay what an event says happened: it looks at
the object as it is now (HEAD) and makes the index match.

- The object exists: index it, unless the index already holds this ETag for this model (``unchanged``).
- The object is gone: remove its document (``removed``; removing what is not there is fine).

So a stale create that arrives after the delete finds nothing and indexes nothing; a delete that
arrives after a re-upload finds the new object and keeps it; a duplicate finds its ETag indexed. The
S3 ``sequencer`` of the newest event announcing the indexed ETag is stored with the document, for
diagnosis only: decisions rest on the current state, since a sequencer knows nothing of events in flight.

A batch goes through one module per step, each small enough to read on its own:

- ``changes``: what ingestion is told (``Change``) and answers (``KeyOutcome``), one target per key;
- ``decision``: what to do with one key, from its object, its document, the model and the limits (pure);
- ``reading``: one index lookup for the batch, then per key a GET (nothing indexed) or a HEAD, the
  decision, and the read and (drafted, bounded) decode of what is to be indexed, keys in parallel;
- ``documents``: an object read and decoded, embedded with the others in one inference call;
- ``cache``: the embedding cache: vectors the index already holds for the same bytes are not computed again;
- ``failures``: the failure policy: retry what is transient, record what is permanent;
- ``writer``: one bulk upsert and one bulk delete, each write checked against the bucket afterwards;
- ``pipeline``: a batch of more than ten keys in chunks, each read and written while its neighbour infers;
- ``time_budget``: whether the invocation has time for another chunk (else its keys retry later);
- ``service``: ``IngestionService.sync``, which runs a batch through those steps.

Where changes come from is not ingestion's concern: the ingest handler reads them from SQS messages of
S3 notifications (and maps outcomes back to the messages to retry), a backfill from a bucket listing.
"""

from simsearch.ingestion.changes import (
    CHANGED_DURING_INGESTION,
    EMBEDDING_REUSED,
    INDEX_WRITE_FAILED,
    OUT_OF_TIME,
    QUERY_UPLOAD,
    Change,
    Ingestion,
    KeyOutcome,
    OutcomeKind,
)
from simsearch.ingestion.service import DEFAULT_WORKERS, IngestionService

__all__ = [
    "CHANGED_DURING_INGESTION",
    "DEFAULT_WORKERS",
    "EMBEDDING_REUSED",
    "INDEX_WRITE_FAILED",
    "OUT_OF_TIME",
    "QUERY_UPLOAD",
    "Change",
    "Ingestion",
    "IngestionService",
    "KeyOutcome",
    "OutcomeKind",
]
