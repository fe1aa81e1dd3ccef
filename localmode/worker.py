"""The local SQS event source: long-poll the uploads queue and hand batches to the ingest handler.

It does what Lambda's SQS event source mapping does for ``infra/ingestion.py``, on a thread, until it
is stopped: receive up to a batch, and settle it with ``localmode.harness.deliver``, which deletes every
message the partial batch response does not list in ``batchItemFailures``. A listed message stays in
the queue and comes back after its visibility timeout; so does the whole batch when the handler raises,
and the redrive policy moves what keeps failing to the dead-letter queue.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from localmode.api_gateway import LambdaHandler
from localmode.cloud import LocalCloud
from localmode.harness import Settled, UploadsQueue, deliver

logger = logging.getLogger(__name__)

WAIT_SECONDS = 1  # long polls stay short, so stopping the worker takes at most this long


class QueueWorker:
    """Polls ``cloud``'s uploads queue on a thread and runs ``handler`` on each batch until stopped."""

    def __init__(
        self,
        cloud: LocalCloud,
        handler: LambdaHandler,
        *,
        on_settled: Callable[[Settled], None] | None = None,
    ) -> None:
        self._queue = UploadsQueue(cloud)
        self._handler = handler
        self._on_settled = on_settled
        self._stopping = threading.Event()

    def run(self) -> None:
        """Poll until ``stop``; a failing poll or handler is logged and the loop goes on, as Lambda's does."""
        while not self._stopping.is_set():
            try:
                self.poll_once()
            except Exception:
                logger.exception("the ingest batch failed; its messages return after the visibility timeout")
                self._stopping.wait(WAIT_SECONDS)

    def stop(self) -> None:
        self._stopping.set()

    def poll_once(self) -> Settled | None:
        """Receive one batch and settle it; None when the queue had nothing within ``WAIT_SECONDS``."""
        messages = self._queue.receive(wait_seconds=WAIT_SECONDS)
        if not messages:
            return None
        settled = deliver(self._queue, self._handler, messages)
        if self._on_settled is not None:
            self._on_settled(settled)
        return settled


@contextmanager
def running(worker: QueueWorker) -> Iterator[QueueWorker]:
    """Run ``worker`` on a background thread until the block ends (the current batch finishes first)."""
    thread = threading.Thread(target=worker.run, name="ingest-worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join()
