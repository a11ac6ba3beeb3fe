"""Flushes are jittered: each wait lies within the interval ± 20 %, and clients started together
drift apart instead of posting in lockstep."""

from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest

from rollwise.sdk._outbox import FLUSH_JITTER, FlushSchedule


def test_waits_vary_within_the_bounds_around_the_interval() -> None:
    """1,000 waits of a seeded 5 s schedule: all within [4 s, 6 s], spread over most of that
    range (a fixed interval, or a jitter a tenth as wide, would fail), with a mean of 5 s."""
    schedule = FlushSchedule(5.0, rng=random.Random(20261130))
    waits = [schedule.next_wait() for _ in range(1000)]
    assert FLUSH_JITTER == 0.2
    assert all(4.0 <= wait <= 6.0 for wait in waits)
    assert min(waits) < 4.1 and max(waits) > 5.9
    assert statistics.pstdev(waits) > 0.5  # uniform on [4, 6]: 0.577
    assert abs(statistics.fmean(waits) - 5.0) < 0.05


def test_the_same_seed_gives_the_same_waits_and_no_jitter_none() -> None:
    """Reproducible with a seeded generator; jitter 0 is the plain interval."""
    first = FlushSchedule(5.0, rng=random.Random(7))
    second = FlushSchedule(5.0, rng=random.Random(7))
    assert [first.next_wait() for _ in range(5)] == [second.next_wait() for _ in range(5)]
    assert {FlushSchedule(5.0, jitter=0.0).next_wait() for _ in range(5)} == {5.0}


def test_clients_started_together_do_not_flush_in_lockstep() -> None:
    """1,000 clients started at the same instant: by their tenth flush, no 100 ms slot holds
    more than 5 % of them (without jitter, all 1,000 would share one)."""
    rng = random.Random(11)
    schedules = [FlushSchedule(5.0, rng=rng) for _ in range(1000)]
    tenth = [sum(schedule.next_wait() for _ in range(10)) for schedule in schedules]
    busiest = max(Counter(int(at * 10) for at in tenth).values())
    assert busiest <= 50, busiest


@pytest.mark.parametrize(("interval", "jitter"), [(0.0, 0.2), (5.0, 1.0), (5.0, -0.1)])
def test_nonsense_schedules_are_refused(interval: float, jitter: float) -> None:
    """A wait must stay positive."""
    with pytest.raises(ValueError, match="interval must be positive"):
        FlushSchedule(interval, jitter)
