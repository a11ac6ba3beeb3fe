"""Clocks: all time comes from one that is passed in (DESIGN: Time)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """Wall-clock time, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to: for tests."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> datetime:
        with self._lock:
            self._now += delta
            return self._now


class ScaledClock:
    """Simulated time that runs ``speed`` times faster than the wall clock, from ``start``:
    what lets the demo play a day-long plan in minutes. The speed may change while it runs
    (``set_speed``); simulated time stays continuous and never goes back."""

    def __init__(self, start: datetime, speed: float) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self._lock = threading.Lock()
        self._anchor = start
        self._speed = speed
        self._origin = time.monotonic()

    @property
    def speed(self) -> float:
        return self._speed

    def now(self) -> datetime:
        with self._lock:
            elapsed = time.monotonic() - self._origin
            return self._anchor + timedelta(seconds=elapsed * self._speed)

    def set_speed(self, speed: float) -> None:
        """From now on, run ``speed`` times faster than the wall clock."""
        if speed <= 0:
            raise ValueError("speed must be positive")
        with self._lock:
            wall = time.monotonic()
            self._anchor += timedelta(seconds=(wall - self._origin) * self._speed)
            self._origin = wall
            self._speed = speed
