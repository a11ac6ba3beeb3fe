"""Outcomes handed over by the application's threads and attributed by a thread of the SDK's.

Attributing an outcome — re-evaluating each guarding rollout's flag for the context, finding
its row, its latency bucket and its unit's replicate (``Aggregates.add``) — costs 3 to 5 µs.
The application's thread only hands it over: the rollouts it was recorded under (those of the
snapshot served at that moment), the context's values (a shallow copy of a plain dict, which
the application may change once the call returns), the outcomes and the time, appended to a
queue. ``rollwise-attribute`` takes them off the queue in order: woken by the first outcome
handed over to an empty queue, it lets more arrive for ``INTERVAL`` seconds (or until
``WAKE_AT`` are waiting), attributes them, and sleeps again. An idle client's thread wakes once
every ``IDLE`` seconds, not every ``INTERVAL``: a process may hold many clients. A cut
attributes whatever is still waiting first (``Aggregates.cut``), so a flush sends every outcome
recorded before it.

Nothing is dropped here. Memory is bounded by ``LIMIT``: an application thread that finds that
many waiting attributes its own outcomes before it returns, which is what recording cost
before the queue — an application that records faster than one thread can attribute (a loop
that does nothing else, under the GIL) pays for the excess itself. With no thread to attribute
them (not started, or gone: in the child after ``fork``) the same holds from ``WAKE_AT`` on,
and what waits is attributed at the next cut.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from rollwise.sdk._aggregation import Aggregates, Outcome, Recorded
from rollwise.sdk._snapshot import LiveRollout
from rollwise.sdk._throttle import Throttle

#: Outcomes waiting at which the attributing thread stops letting more arrive.
WAKE_AT = 512
#: Outcomes waiting at which the recording thread attributes its own.
LIMIT = 4_096
#: Seconds the attributing thread lets outcomes arrive once the first one is handed over.
INTERVAL = 0.02
#: Seconds an idle attributing thread sleeps between two looks (a missed wake-up costs this).
IDLE = 1.0
#: Outcomes attributed in one hold of the attributing thread's shard.
_SLICE = 1_024

#: Every queue, so that a forked child knows its attributing threads did not come with it.
_ALL: weakref.WeakSet[Deferred] = weakref.WeakSet()


def _forked() -> None:
    for deferred in _ALL:
        deferred.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)


class Deferred:
    """The queue between recording and attribution, and the thread that empties it."""

    def __init__(
        self,
        aggregates: Aggregates,
        log: Throttle,
        *,
        wake_at: int = WAKE_AT,
        limit: int = LIMIT,
        interval: float = INTERVAL,
    ) -> None:
        self._aggregates = aggregates
        self._log = log
        self._clock: Callable[[], float] = aggregates.clock
        self._wake_at = wake_at
        self._limit = max(limit, wake_at)
        self._interval = interval
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="rollwise-attribute", daemon=True)
        aggregates.before_cut = self.attribute_waiting
        self._fresh()
        _ALL.add(self)

    def _fresh(self) -> None:
        self._waiting: deque[Recorded] = deque()
        # Set by an outcome handed over to an empty queue or making ``wake_at`` wait (wakes
        # the thread), and by ``wake_at`` waiting (ends its wait for more to arrive).
        self._arrived = threading.Event()
        self._full = threading.Event()
        # One slice attributed at a time: by the thread, or by a cut.
        self._turn = threading.Lock()
        #: Whether the thread runs (read at each hand-over past ``wake_at``: a flag, since
        #: ``Thread.is_alive`` takes a lock).
        self.running = False

    def after_fork(self) -> None:
        """In a forked child: no thread attributes, the locks may have been held by threads
        that did not come along, and what waited is the parent's to send. Start empty."""
        self._fresh()
        self._aggregates.after_fork()

    def start(self) -> None:
        self.running = True
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Stop the thread (what is still waiting is attributed at the next cut)."""
        self._stopped = True
        self.running = False
        self._arrived.set()
        self._full.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def put(
        self,
        rollouts: Sequence[LiveRollout],
        values: Mapping[str, object],
        outcomes: Sequence[Outcome],
    ) -> None:
        """Hand outcomes over (the application's thread). ``values`` must not change later.
        With ``limit`` waiting, or from ``wake_at`` with no thread to attribute them, they are
        attributed here."""
        waiting = self._waiting
        size = len(waiting)
        if size >= self._wake_at and (size >= self._limit or not self.running):
            self._aggregates.add_all([(rollouts, values, outcomes, self._clock())], self._failed)
            return
        waiting.append((rollouts, values, outcomes, self._clock()))
        # The thread sleeps only once it has found the queue empty: wake it when this one
        # found it empty, or is alone in it now (the thread emptied it meanwhile).
        if size == 0 or len(waiting) == 1:
            self._arrived.set()
        elif size >= self._wake_at and not self._full.is_set():
            self._full.set()
            self._arrived.set()

    def _run(self) -> None:
        while not self._stopped:
            arrived, full = self._arrived, self._full
            arrived.wait(IDLE)
            arrived.clear()
            if self._waiting:
                full.wait(self._interval)  # let more arrive: one attribution for many
                full.clear()
            while self._waiting and not self._stopped:
                self.attribute_waiting()

    def attribute_waiting(self) -> None:
        """Attribute the outcomes waiting when called (not those handed over meanwhile), in
        the order recorded, a slice at a time so that a cut never waits long for another.
        Never raises: an outcome that cannot be attributed is logged (throttled) and
        skipped."""
        left = len(self._waiting)
        while left > 0:
            with self._turn:
                waiting = self._waiting
                taken = [waiting.popleft() for _ in range(min(left, len(waiting), _SLICE))]
                if not taken:
                    return
                self._aggregates.add_all(taken, self._failed)
            left -= len(taken)

    def _failed(self, outcomes: Sequence[Outcome]) -> None:
        metric = outcomes[0][0] if outcomes else "?"
        self._log.warning(
            f"record:{metric}", "metric %s: outcome not recorded", metric, exc_info=True
        )
