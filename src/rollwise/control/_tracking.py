"""Each running rollout's evidence, kept up to date from the store's changes: what a controller
tick judges, read at a cost that grows with what changed since the last tick.

When the controller starts (and for a rollout it starts judging), a rollout's aggregates are read
whole, once, and its units counted; from then on each tick reads only the rows written since
the last one (``rollwise.store._changes``) and folds them into the rollout's
``RolloutEvidence``. A batch so late that it changes a latency window already folded makes the
evidence ``stale``: that rollout's aggregates are read whole again. A rollout that stops running
is forgotten, so the memory held follows the running rollouts only.

Reading whole is bounded per tick (``read_seconds``): after a restart with thousands of
rollouts, each tick reads a few more, in the order it is given (the controller puts killed
flags' rollouts and later stages first), and judges those it holds, instead of one tick that
judges nothing until every rollout is read (about 48 ms a rollout with three days of hourly
data in 21 segments). The rows a rollout not read yet gets meanwhile are in its whole read.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import SQLAlchemyError

from rollwise.core import Plan
from rollwise.core.judgement import Decision, Judged
from rollwise.core.judgement._rollout import RolloutEvidence
from rollwise.store import RolloutRecord, Store
from rollwise.store._changes import (
    ChangeCursor,
    change_cursor,
    changes,
    rollout_aggregates,
    unit_counts,
)

logger = logging.getLogger("rollwise.control")

#: Seconds a tick spends at most reading rollouts whole (once one chunk is read), and how many
#: rollouts a chunk reads together. This bounds the reading only: the tick then judges what it
#: holds, the rollouts just read included, so a tick after a restart lasts longer than this.
READ_SECONDS = 2.0
READ_CHUNK = 20


@dataclass
class Tracked:
    """One running rollout as the controller keeps it between ticks."""

    plan: Plan
    evidence: RolloutEvidence
    #: Units first seen per (stage, exposed then): the sample-ratio check's input.
    units: Counter[tuple[int, bool]] = field(default_factory=Counter)
    #: The last verdicts (without bounds) and what they were judged from.
    judged: tuple[tuple[object, ...], Judged] | None = None
    #: Bumped when ``units`` changes.
    units_version: int = 0
    #: The last decision, what it was decided from, and until when time alone cannot change it.
    decided: tuple[tuple[object, ...], datetime | None, Decision] | None = None


class Tracker:
    """The running rollouts' evidence. ``refresh`` brings it up to date; a rollout whose data
    cannot be folded in is reported, with the exception, and dropped."""

    def __init__(
        self,
        store: Store,
        open_minutes: int | None = None,
        *,
        read_seconds: float | None = READ_SECONDS,
        read_chunk: int = READ_CHUNK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.open_minutes = open_minutes
        self.tracked: dict[int, Tracked] = {}
        self.cursor: ChangeCursor | None = None
        #: How many times a rollout's aggregates were read whole (start, new rollouts, late
        #: batches): what a restart costs, and how often the open horizon was too short.
        self.rebuilds = 0
        #: Seconds a tick spends reading new rollouts whole, at least one chunk (None: all).
        self.read_seconds = read_seconds
        self.read_chunk = read_chunk
        self._clock = clock
        #: Running rollouts left to read whole at the last refresh: not judged yet.
        self.waiting = 0

    def refresh(
        self, running: Sequence[RolloutRecord], plan_of: Callable[[int], Plan]
    ) -> list[tuple[RolloutRecord, Exception]]:
        """Forget rollouts that stopped; read new ones whole; fold in what changed. Raises if
        the store cannot be read (nothing is judged then); returns the rollouts whose data could
        not be judged."""
        live = {rollout.id for rollout in running}
        for gone in [rollout_id for rollout_id in self.tracked if rollout_id not in live]:
            del self.tracked[gone]
        failed: list[tuple[RolloutRecord, Exception]] = []
        if self.cursor is None:
            self.cursor = change_cursor(self.store.engine)
        new = [rollout for rollout in running if rollout.id not in self.tracked]
        started = self._clock()
        for at in range(0, len(new), self.read_chunk):
            spent = self._clock() - started
            if at and self.read_seconds is not None and spent >= self.read_seconds:
                logger.info("%d rollout(s) wait to be read whole at the next tick", len(new) - at)
                break
            failed += self._read_whole(new[at : at + self.read_chunk], plan_of, self.cursor)
        found = changes(self.store.engine, self.cursor)
        self.cursor = found.cursor
        by_id = {rollout.id: rollout for rollout in running}
        stale: list[RolloutRecord] = []
        for rollout_id, aggregates in found.aggregates.items():
            tracked = self.tracked.get(rollout_id)
            if tracked is None:
                continue  # not running (or failed above)
            try:
                tracked.evidence.put_all(aggregates)
            except Exception as exc:  # its data cannot be judged
                failed.append((by_id[rollout_id], exc))
                del self.tracked[rollout_id]
                continue
            if tracked.evidence.stale:
                stale.append(by_id[rollout_id])
        for rollout_id, units in found.units.items():
            tracked = self.tracked.get(rollout_id)
            if tracked is not None:
                tracked.units.update(units)
                tracked.units_version += 1
        if stale:
            failed += self._reread(stale)
        unjudgeable = {rollout.id for rollout, _ in failed}
        self.waiting = sum(r.id not in self.tracked and r.id not in unjudgeable for r in running)
        return failed

    def reread(self, rollout: RolloutRecord) -> list[tuple[RolloutRecord, Exception]]:
        """Read a rollout's aggregates whole again (its evidence went stale while judging)."""
        return self._reread([rollout])

    def _evidence(self, plan: Plan) -> RolloutEvidence:
        return RolloutEvidence(plan, open_minutes=self.open_minutes)

    def _read_whole(
        self,
        rollouts: Sequence[RolloutRecord],
        plan_of: Callable[[int], Plan],
        cursor: ChangeCursor,
    ) -> list[tuple[RolloutRecord, Exception]]:
        by_id = {rollout.id: rollout for rollout in rollouts}
        failed: list[tuple[RolloutRecord, Exception]] = []
        fresh: dict[int, Tracked] = {}
        for rollout in rollouts:
            try:
                plan = plan_of(rollout.plan_id)
            except SQLAlchemyError:
                logger.exception("rollout %s of flag %s: cannot read its plan", *_names(rollout))
                continue  # the store, not the data: tried again next tick
            except Exception as exc:
                failed.append((rollout, exc))
                continue
            fresh[rollout.id] = Tracked(plan, self._evidence(plan))
        counts = unit_counts(self.store.engine, list(fresh), cursor)
        for rollout_id, aggregates in rollout_aggregates(self.store.engine, list(fresh)):
            try:
                fresh[rollout_id].evidence.put_all(aggregates)
            except Exception as exc:
                failed.append((by_id[rollout_id], exc))
                del fresh[rollout_id]
        for rollout_id, tracked in fresh.items():
            tracked.units = counts.get(rollout_id, Counter())
            self.tracked[rollout_id] = tracked
        self.rebuilds += len(fresh)
        return failed

    def _reread(self, rollouts: Sequence[RolloutRecord]) -> list[tuple[RolloutRecord, Exception]]:
        failed: list[tuple[RolloutRecord, Exception]] = []
        by_id = {rollout.id: rollout for rollout in rollouts}
        for rollout in rollouts:
            tracked = self.tracked[rollout.id]
            tracked.evidence = self._evidence(tracked.plan)
            tracked.judged = tracked.decided = None
        for rollout_id, aggregates in rollout_aggregates(self.store.engine, list(by_id)):
            try:
                self.tracked[rollout_id].evidence.put_all(aggregates)
            except Exception as exc:
                failed.append((by_id[rollout_id], exc))
                del self.tracked[rollout_id]
        self.rebuilds += len(rollouts)
        logger.info("read %d rollout(s) whole again after a late batch", len(rollouts))
        return failed


def _names(rollout: RolloutRecord) -> tuple[int, str]:
    return rollout.id, rollout.flag
