"""The exposures a client has served, remembered so that each is shipped to the ledger once.

At most ``max_exposures`` are remembered. Once the server has acknowledged the batch that
carried an exposure it may be forgotten (the oldest first, when room is needed): the server's
ledger keeps a unit's first exposure, so one shipped again after it was forgotten changes nothing
there. Only when ``max_exposures`` exposures are all still waiting for the server is a new one
dropped (counted, and logged, throttled).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence

from rollwise.core import Reason, Resolution, folded_user, unit_text
from rollwise.sdk._snapshot import LiveRollout
from rollwise.sdk._throttle import Throttle

#: Resolutions that say nothing about a rollout's effect, so count for neither side: the kill
#: switch, an instance without the code, a context without the unit, an internal error.
UNATTRIBUTABLE = frozenset(
    {Reason.KILLED, Reason.VERSION_BELOW_MINIMUM, Reason.UNIT_MISSING, Reason.ERROR}
)

#: (rollout, unit text, stage, exposed)
ExposureKey = tuple[int, str, int, bool]


class ExposureMemory:
    """The exposures of one live client: new ones waiting for the next cut (``take``), and
    every one remembered until the server has it and room is needed. Thread-safe."""

    def __init__(
        self, *, max_exposures: int, clock: Callable[[], float], log: Throttle | None
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._log = log
        self._max_exposures = max_exposures
        self._new: list[tuple[ExposureKey, float]] = []
        # Exposures remembered, so that each is shipped once: → whether the server has
        # acknowledged it (then it may be forgotten to make room, oldest first).
        self._seen: dict[ExposureKey, bool] = {}
        self._acknowledged: deque[ExposureKey] = deque()
        self.dropped = 0

    def after_fork(self) -> None:
        """In a forked child: a lock that a thread which did not come along may hold is
        replaced (what is remembered stays: the ledger keeps a unit's first sighting once)."""
        self._lock = threading.Lock()

    @property
    def remembered(self) -> int:
        return len(self._seen)

    def take(self) -> list[tuple[ExposureKey, float]]:
        """The exposures new since the last take, with when each was first seen."""
        with self._lock:
            new, self._new = self._new, []
        return new

    def expose(
        self, rollout: LiveRollout, resolution: Resolution, values: Mapping[str, object]
    ) -> None:
        """Remember that the context's unit was served ``resolution`` under ``rollout``."""
        if resolution.reason in UNATTRIBUTABLE:
            return
        value = values.get(rollout.unit)
        if value is None and rollout.unit == "user":
            value = folded_user(values)
        unit = unit_text(value)
        if unit is None:
            return
        key = (rollout.id, unit, rollout.stage, resolution.variant == rollout.variant)
        if key in self._seen:  # the common case, and safe to read without the lock
            return
        at = self._clock()
        with self._lock:
            if key in self._seen:
                return
            seen, acknowledged = self._seen, self._acknowledged
            while len(seen) >= self._max_exposures and acknowledged:
                forgotten = acknowledged.popleft()
                if seen.get(forgotten):
                    del seen[forgotten]
            if len(seen) < self._max_exposures:
                seen[key] = False
                self._new.append((key, at))
                return
            self.dropped += 1
            dropped = self.dropped
        self._warn(
            "exposures:full",
            "rollwise: %d exposures are waiting for the server; dropped a new one (%d so far)",
            self._max_exposures,
            dropped,
        )

    def acknowledged(self, keys: Iterable[ExposureKey]) -> None:
        """The server has these exposures (it took the batch that carried them): they may be
        forgotten when room is needed."""
        with self._lock:
            seen, acknowledged = self._seen, self._acknowledged
            for key in keys:
                if seen.get(key) is False:
                    seen[key] = True
                    acknowledged.append(key)

    def lost(self, keys: Sequence[ExposureKey], *, refused: bool) -> None:
        """These exposures will not reach the ledger: their batch was dropped (too many were
        waiting) or ``refused`` by the server. Counted, and no longer remembered as shipped, so
        that the unit's next exposure is recorded again — except that a refused batch's are
        only made forgettable: shipped again at once, they could have the next batch refused
        too."""
        if not keys:
            return
        with self._lock:
            self.dropped += len(keys)
            dropped = self.dropped
            seen = self._seen
            for key in keys:
                if seen.get(key) is not False:
                    continue
                if refused:
                    seen[key] = True
                    self._acknowledged.append(key)
                else:
                    del seen[key]
        self._warn(
            "exposures:lost",
            "rollwise: %d exposures were in a batch %s; they are not in the ledger (%d so far)",
            len(keys),
            "the server refused" if refused else "dropped with too many waiting",
            dropped,
        )

    def _warn(self, topic: str, message: str, *args: object) -> None:
        if self._log is not None:
            self._log.warning(topic, message, *args)
