"""Warnings that do not flood the application's log when a problem repeats."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("rollwise.sdk")


class Throttle:
    """Logs a warning per topic at most once per ``interval`` seconds, and says how many
    similar warnings it held back meanwhile."""

    def __init__(
        self,
        log: logging.Logger = logger,
        *,
        interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, topic: str, message: str, *args: object, exc_info: bool = False) -> None:
        now = self._clock()
        with self._lock:
            last = self._last.get(topic)
            if last is not None and now - last < self._interval:
                self._held[topic] = self._held.get(topic, 0) + 1
                return
            self._last[topic] = now
            held = self._held.pop(topic, 0)
        if held:
            message += " (%d similar warnings held back)"
            args = (*args, held)
        self._log.warning(message, *args, exc_info=exc_info)
