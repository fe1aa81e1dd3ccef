"""Whether an invocation has time for another chunk: a batch is cut short rather than timed out.

Lambda ends an invocation at its timeout, and the whole batch then comes back: the keys already indexed
are done again, and a batch too large for its timeout would fail the same way on every delivery. So,
before a chunk starts, the time left must cover a safety margin and three times the pace so far (the
chunk being embedded, this one, and their writes). Keys of the chunks not started are answered
``retry`` (``OUT_OF_TIME``): their messages return to the queue, and the invocation ends in time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MARGIN_S = 3.0
"""Seconds kept for what follows the last chunk: the response, logs and metrics."""


def deadline_in(milliseconds: float) -> float:
    """The deadline ``milliseconds`` from now, on ``TimeBudget``'s clock (a Lambda context's time left)."""
    return time.monotonic() + milliseconds / 1000


class TimeBudget:
    """Decides, chunk by chunk, whether another may start before ``deadline`` (``clock`` seconds)."""

    def __init__(
        self, deadline: float, *, clock: Callable[[], float] = time.monotonic, margin_s: float = MARGIN_S
    ) -> None:
        self._deadline, self._clock, self._margin_s = deadline, clock, margin_s
        self._started_at = clock()

    def allows(self, started: int) -> bool:
        """Whether a chunk may start now, ``started`` chunks having started before it."""
        now = self._clock()
        pace = (now - self._started_at) / started if started else 0.0
        return self._deadline - now > self._margin_s + 3 * pace
