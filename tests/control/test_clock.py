"""Clocks: a scaled clock runs faster than the wall clock, and changing its speed keeps
simulated time continuous."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from rollwise.control import ScaledClock

START = datetime(2026, 11, 26, 20, 0, tzinfo=UTC)


def test_a_scaled_clock_runs_speed_times_faster() -> None:
    """After a short wall-clock wait, simulated time moved at least speed × that wait."""
    clock = ScaledClock(START, 1000.0)
    wall = time.monotonic()
    time.sleep(0.05)
    elapsed = (clock.now() - START).total_seconds()
    assert elapsed >= 1000 * 0.05 * 0.99
    assert elapsed <= 1000 * (time.monotonic() - wall) + 1


def test_changing_the_speed_never_moves_time_back_or_jumps() -> None:
    """set_speed keeps now() continuous: the reading after it is no earlier than before and
    only a little later, then time runs at the new speed."""
    clock = ScaledClock(START, 10_000.0)
    time.sleep(0.02)
    before = clock.now()
    clock.set_speed(1.0)
    after = clock.now()
    assert before <= after < before + timedelta(seconds=5)
    time.sleep(0.02)
    assert clock.now() - after < timedelta(seconds=1)
    assert clock.speed == 1.0


def test_a_speed_must_be_positive() -> None:
    """Zero or negative speeds are refused, at creation and when changed."""
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(START, 0)
    with pytest.raises(ValueError, match="positive"):
        ScaledClock(START, 1.0).set_speed(-2)
