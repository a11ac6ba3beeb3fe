"""The observations of the rollouts people are looking at, kept up to date from the store's
changes: what the API judges "now" and the rollout page draws, at a cost that follows the data
written since the last read instead of everything the rollout ever received.

``Store.observations`` reads a rollout's aggregates whole: about 50,000 rows after a day and a
half of the example plan (15-minute windows, a segment per tenant), 1.2 to 2 s of a server's
CPU, at every poll of the rollout page — twice (its status and its series), every few seconds,
in the process that also takes the SDKs' batches. ``FollowedObservations`` reads a rollout
whole the first time it is asked for, then only its rows written since (the controller's change
cursor, ``_changes.py``, narrowed to the one rollout), and puts them into the same
``AggregateTable``: a row read again replaces what it held, so the result is what a whole read
gives (a test checks it on random batches). It follows the ``keep`` rollouts read most
recently, and forgets a rollout nobody asked for in ``idle`` seconds: memory follows what is
being looked at, and a read finds its rows by their version (the index on ``seq``), whose cost
is every rollout's rows written since the last read — a few seconds' worth while a page polls,
never hours' worth.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa

from rollwise.core import Plan
from rollwise.core.judgement import AggregateTable, Observations
from rollwise.store._changes import (
    ChangeCursor,
    UnitCounts,
    change_cursor,
    changes,
    ledger_exposure,
    rollout_aggregates,
    unit_counts,
)
from rollwise.store._records import RolloutRecord

#: Rollouts followed at once: the ones the last people's pages asked for. One costs about 9 MB
#: with 48 hours of the example plan's windows and 120 tenants (27,000 rows; tracemalloc).
FOLLOWED = 32
#: Seconds after its last read that a rollout is forgotten (read whole when asked again).
IDLE = 60.0


@dataclass
class _Followed:
    """One rollout as read so far. ``cursor`` is None until its first (whole) read."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    table: AggregateTable = field(default_factory=AggregateTable)
    units: UnitCounts = field(default_factory=Counter)
    cursor: ChangeCursor | None = None
    #: When it was last asked for (``clock``).
    asked: float = 0.0


class FollowedObservations:
    """Per rollout, its aggregates and unit counts as of the last read. Thread-safe: the server
    answers requests from a thread pool, and two reads of one rollout take turns."""

    def __init__(
        self,
        engine: sa.Engine,
        keep: int = FOLLOWED,
        idle: float = IDLE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.keep = keep
        self.idle = idle
        self._clock = clock
        self._lock = threading.Lock()
        self._followed: OrderedDict[int, _Followed] = OrderedDict()
        #: Whole reads so far (a rollout's first read, or again after it was forgotten).
        self.whole_reads = 0

    def __len__(self) -> int:
        """How many rollouts are followed."""
        return len(self._followed)

    def observations(self, rollout: RolloutRecord, plan: Plan) -> Observations:
        """``rollout``'s strata and exposure, as ``Store.observations`` reads them whole
        (without gauges), after reading what was written since the last call."""
        now = self._clock()
        with self._lock:
            followed = self._followed.get(rollout.id)
            if followed is None or now - followed.asked > self.idle:
                followed = self._followed[rollout.id] = _Followed()
            followed.asked = now
            self._followed.move_to_end(rollout.id)
            # Oldest first: forget beyond ``keep``, and the idle.
            while self._followed:
                oldest = next(iter(self._followed.values()))
                if len(self._followed) <= self.keep and now - oldest.asked <= self.idle:
                    break
                self._followed.popitem(last=False)
        with followed.lock:
            if followed.cursor is None:
                self._read_whole(rollout.id, followed)
            else:
                self._read_changes(rollout.id, followed, followed.cursor)
            rows = [(stage, exposed, count) for (stage, exposed), count in followed.units.items()]
            exposure = ledger_exposure(rows, plan, rollout.stage)
            # Built under the lock: the observations hold snapshots (tuples) of the table's
            # strata, which the next call changes.
            return followed.table.observations(plan, rollout.stage, exposure)

    def _read_whole(self, rollout_id: int, followed: _Followed) -> None:
        # The cursor first: rows written while reading are read whole now and again next time
        # (a row read again replaces itself); units below it are counted here, the rest then.
        cursor = change_cursor(self.engine)
        for _, aggregates in rollout_aggregates(self.engine, [rollout_id]):
            followed.table.put_all(aggregates)  # a new one: read whole only once
        followed.units = unit_counts(self.engine, [rollout_id], cursor)[rollout_id]
        followed.cursor = cursor
        self.whole_reads += 1

    def _read_changes(self, rollout_id: int, followed: _Followed, cursor: ChangeCursor) -> None:
        found = changes(self.engine, cursor, rollout_id=rollout_id)
        followed.table.put_all(found.aggregates.get(rollout_id, ()))
        followed.units.update(found.units.get(rollout_id, Counter()))
        followed.cursor = found.cursor
