"""The time budget of an ingest invocation: another chunk starts only if it can finish in time."""

from __future__ import annotations

from simsearch.ingestion.time_budget import TimeBudget


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_chunk_starts_while_the_time_left_covers_the_margin_and_three_chunks_at_the_pace_so_far() -> None:
    clock = Clock()
    budget = TimeBudget(clock.now + 20, clock=clock, margin_s=3)
    assert budget.allows(0)  # 20 s left, nothing measured yet
    clock.now += 2  # one chunk took 2 s: 18 s left > 3 + 3 x 2
    assert budget.allows(1)
    clock.now += 10  # three chunks in 12 s: 8 s left < 3 + 3 x 4
    assert not budget.allows(3)


def test_with_less_than_the_margin_left_not_even_the_first_chunk_starts() -> None:
    clock = Clock()
    assert not TimeBudget(clock.now + 2.9, clock=clock, margin_s=3).allows(0)
    assert TimeBudget(clock.now + 3.1, clock=clock, margin_s=3).allows(0)
