"""The controller tick: read (store), decide (core), write (store), tell (listeners).

A tick reads only what changed since the last one (``_tracking.py``: each running rollout's
evidence is kept between ticks and the new aggregates folded in), so its cost follows the new
data, not all data so far. Each rollout is handled on its own: a rollout whose data cannot be
judged is paused, with the error as the reason, and the others tick on. A transition is
persisted with the version it was decided from, so a second controller, or this one after a
restart, cannot apply it twice. When the store is unreachable nothing is decided: the
controller never rolls forward without data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError

from rollwise.control._tracking import READ_CHUNK, READ_SECONDS, Tracked, Tracker
from rollwise.core import GuardKind, Plan, RolloutAction, next_status
from rollwise.core.judgement import (
    Decision,
    GaugeReading,
    Judged,
    Move,
    RolloutState,
    decide,
)
from rollwise.core.judgement._gates import next_gate_change
from rollwise.store import ConflictError, RolloutRecord, Store
from rollwise.store._changes import RunningRollouts, ledger_exposure

logger = logging.getLogger("rollwise.control")

ACTOR = "controller"

#: Called after a transition is persisted: (rollout after the change, the decision).
Listener = Callable[[RolloutRecord, Decision], None]


class Source(Protocol):
    """Where guard counts come from besides SDK batches (``rollwise.sources``): at each tick,
    before judging, it writes what ended since the last one into the store, and names the
    rollouts to pause because it cannot read their counts (id → why)."""

    def poll(
        self, running: Sequence[RolloutRecord], plan_of: Callable[[int], Plan], now: datetime
    ) -> dict[int, str]: ...


#: (rollout as it will be after the change, the decision) → webhook (url, body) rows, written
#: in the transition's own transaction.
Outbox = Callable[[RolloutRecord, Decision], list[tuple[str, bytes]]]


@dataclass(frozen=True, slots=True)
class Outcome:
    rollout_id: int
    flag: str
    decision: Decision
    applied: bool


#: A hold is kept in the decision log at least this often, even when nothing changes.
HOLD_RECORD_EVERY = timedelta(minutes=10)


def _state(rollout: RolloutRecord, killed: bool) -> RolloutState:
    return RolloutState(rollout.stage, rollout.stage_entered_at, rollout.status, killed)


def _signature(decision: Decision) -> tuple[object, ...]:
    """What a hold is waiting for, without the numbers that change at every tick."""
    return (
        tuple((v.metric, v.segment, v.verdict) for v in decision.verdicts),
        tuple((v.metric, v.segment, v.verdict) for v in decision.segment_verdicts),
        tuple((g.name, g.met) for g in decision.gates),
    )


def _stagger(rollout_id: int) -> timedelta:
    """A rollout's place in the hold-keeping period: spread evenly by the golden ratio."""
    return HOLD_RECORD_EVERY * ((rollout_id * 0.6180339887498949) % 1.0)


_MOVES = {
    Move.EXPAND: RolloutAction.EXPAND,
    Move.ROLLBACK: RolloutAction.ROLLBACK,
    Move.PAUSE: RolloutAction.PAUSE,
    Move.COMPLETE: RolloutAction.COMPLETE,
}


class Controller:
    """Judges every running rollout at each tick and applies what it decides.

    ``judge_failures`` counts the rollouts paused because their data could not be judged (see
    ``tick``); ``rebuilds`` how often a rollout's aggregates were read whole (at start, for a
    rollout it starts judging, and after a batch more than ``open_minutes`` late); ``waiting``
    how many running rollouts the last tick had not read yet, and so did not judge: a tick
    reads rollouts whole for ``read_seconds`` at most (``_tracking.py``; None: all at once).
    """

    def __init__(
        self,
        store: Store,
        listeners: list[Listener] | None = None,
        outbox: Outbox | None = None,
        *,
        open_minutes: int | None = None,
        sources: Sequence[Source] = (),
        read_seconds: float | None = READ_SECONDS,
        read_chunk: int = READ_CHUNK,
    ) -> None:
        self.store = store
        self.sources = list(sources)
        self.listeners = listeners or []
        self.outbox = outbox
        self._last_hold: dict[int, tuple[tuple[object, ...], datetime]] = {}
        # Stored plans never change (a new version is a new plan), so parse each once.
        self._plans: dict[int, Plan] = {}
        # Each running rollout's evidence, kept up to date from what changed in the store.
        self._tracker = Tracker(
            store, open_minutes, read_seconds=read_seconds, read_chunk=read_chunk
        )
        self._running = RunningRollouts()
        self.judge_failures = 0

    @property
    def rebuilds(self) -> int:
        return self._tracker.rebuilds

    @property
    def waiting(self) -> int:
        return self._tracker.waiting

    def tick(self, now: datetime) -> list[Outcome]:
        """Judge every running rollout once. Returns what was decided and applied.

        A rollout whose data cannot be judged (judging it raises) is paused, with the error in
        its decision and audit entry, and counted in ``judge_failures``; the others tick on.
        When the store cannot be read, nothing is decided (the error propagates).
        """
        outcomes = []
        holds: list[tuple[int, Decision]] = []
        killed = self.store.kill_switches()
        running = self._running.read(self.store.engine)
        self._forget(running)
        unreadable = self._poll_sources(running, now)
        for rollout in running:
            if rollout.id in unreadable:
                pause = Decision(Move.PAUSE, rollout.stage, now, (unreadable[rollout.id],))
                outcomes.append(self._apply(rollout, pause, now))
        # Rollouts not read yet (after a restart) are read in this order, as time allows:
        # a killed flag's first, then the later stages (more exposed), then the oldest.
        first = sorted(running, key=lambda r: (not killed.get(r.flag, False), -r.stage, r.id))
        failed = self._tracker.refresh(first, self._plan)
        for rollout, error in failed:
            outcomes.append(self._unjudgeable(rollout, error, now))
        unjudged = {rollout.id for rollout, _ in failed} | set(unreadable)
        gauges = self.store.gauge_versions()
        readings: dict[str, tuple[GaugeReading, ...]] = {}
        for rollout in running:
            tracked = self._tracker.tracked.get(rollout.id)
            if tracked is None or rollout.id in unjudged:
                continue
            try:
                outcome = self._judge(
                    rollout, tracked, now, killed.get(rollout.flag, False), holds, gauges, readings
                )
            except SQLAlchemyError:  # the store, not the data: tried again next tick
                logger.exception("rollout %s of flag %s: tick failed", rollout.id, rollout.flag)
                continue
            except Exception as error:
                outcome = self._unjudgeable(rollout, error, now)
            outcomes.append(outcome)
        try:
            self.store.record_decisions(holds)
        except Exception:
            logger.exception("could not keep %d hold decisions", len(holds))
        return outcomes

    def current(self, rollout: RolloutRecord, now: datetime) -> Decision:
        """What the decision would be now, with its bounds, without acting on it: judged from
        scratch on the rollout's observations, which the store follows between calls
        (``Store.followed_observations``), so that a page polling it reads only new rows."""
        plan = self._plan(rollout.plan_id)
        state = _state(rollout, self.store.kill_switches().get(rollout.flag, False))
        observations = self.store.followed_observations(rollout, plan)
        return decide(plan, state, observations, now, rollout.approvals)

    def _poll_sources(self, running: list[RolloutRecord], now: datetime) -> dict[int, str]:
        """Let every source write what it read; the rollouts a source cannot read, with why.
        A source that raises is logged and skipped: it never stops a tick."""
        unreadable: dict[int, str] = {}
        for source in self.sources:
            try:
                unreadable.update(source.poll(running, self._plan, now))
            except Exception:
                logger.exception("source %s failed; its guards are read again next tick", source)
        return unreadable

    def _forget(self, running: list[RolloutRecord]) -> None:
        """Keep nothing of rollouts that stopped running (their plans included)."""
        live = {rollout.id for rollout in running}
        for rollout_id in [r for r in self._last_hold if r not in live]:
            del self._last_hold[rollout_id]
        plans = {rollout.plan_id for rollout in running}
        for plan_id in [p for p in self._plans if p not in plans]:
            del self._plans[plan_id]

    def _plan(self, plan_id: int) -> Plan:
        plan = self._plans.get(plan_id)
        if plan is None:
            plan = self._plans[plan_id] = self.store.parsed_plan(plan_id)
        return plan

    def _verdicts(
        self,
        rollout: RolloutRecord,
        tracked: Tracked,
        now: datetime,
        gauges: Mapping[str, Sequence[GaugeReading]],
        key: tuple[object, ...],
        bounds: bool,
    ) -> Judged:
        """The guards' verdicts, judged again only when the evidence, the stage or a gauge
        changed (verdicts depend on nothing else)."""
        # Only the verdicts without bounds are kept between ticks (a rollout's bounds are found
        # when a decision of it is kept, a few times an hour: not worth their memory).
        known = None if bounds else tracked.judged
        if known is not None and known[0] == key:
            return known[1]
        # Kept decisions show the bounds of what they keep (``decision_evidence`` keeps no
        # pending segment): a pending segment's bounds would be found for nothing.
        judged = tracked.evidence.judged(
            rollout.stage, now, gauges, bounds=bounds, pending_segment_bounds=False
        )
        if tracked.evidence.stale:  # a segment judged now had windows folded already
            failed = self._tracker.reread(rollout)
            if failed:
                raise failed[0][1]
            tracked = self._tracker.tracked[rollout.id]
            judged = tracked.evidence.judged(
                rollout.stage, now, gauges, bounds=bounds, pending_segment_bounds=False
            )
        if not bounds:
            tracked.judged = (key, judged)
        return judged

    def _judge(
        self,
        rollout: RolloutRecord,
        tracked: Tracked,
        now: datetime,
        killed: bool,
        holds: list[tuple[int, Decision]],
        versions: Mapping[str, int],
        readings: dict[str, tuple[GaugeReading, ...]],
    ) -> Outcome:
        plan = tracked.plan
        # Nothing it depends on changed, and time alone changes nothing before ``until``: the
        # last decision stands (and no hold is due to be kept).
        inputs = (
            id(tracked.evidence),  # read whole again: a new evidence, counting versions anew
            tracked.evidence.version,
            tracked.units_version,
            rollout.version,
            killed,
        )
        memo = tracked.decided
        if memo is not None and memo[0] == inputs and (memo[1] is None or now < memo[1]):
            held = self._last_hold.get(rollout.id)
            if held is not None and now - held[1] < HOLD_RECORD_EVERY:
                return Outcome(rollout.id, rollout.flag, memo[2], applied=False)
        metrics = [g.metric for g in plan.guards if g.kind is GuardKind.GAUGE]
        missing = [metric for metric in metrics if metric not in readings]
        if missing:
            readings.update(self.store.gauge_readings(missing))
        gauges = {metric: readings[metric] for metric in metrics}
        key = (
            id(tracked.evidence),
            tracked.evidence.version,
            rollout.stage,
            *(versions.get(metric, 0) for metric in metrics),
        )
        judged = self._verdicts(rollout, tracked, now, gauges, key, bounds=False)
        exposure = ledger_exposure(
            [(stage, exposed, count) for (stage, exposed), count in tracked.units.items()],
            plan,
            rollout.stage,
        )
        observations = tracked.evidence.observations(rollout.stage, exposure, gauges)
        state = _state(rollout, killed)
        # Bounds are for people: computed only for decisions that are kept.
        decision = decide(
            plan, state, observations, now, rollout.approvals, bounds=False, judged=judged
        )

        def kept() -> Decision:
            bounded = self._verdicts(rollout, tracked, now, gauges, key, bounds=True)
            return decide(plan, state, observations, now, rollout.approvals, judged=bounded)

        if decision.move is Move.HOLD and not metrics:  # gauges are read against ``now``
            tracked.decided = (inputs, next_gate_change(plan, state, now), decision)
        else:
            tracked.decided = None
        if decision.move is Move.HOLD:
            # Keep a hold in the decision log when what it waits for changes (which gates,
            # which verdicts), and at least every HOLD_RECORD_EVERY, not at every tick.
            signature = _signature(decision)
            last = self._last_hold.get(rollout.id)
            if last is None or last[0] != signature or now - last[1] >= HOLD_RECORD_EVERY:
                holds.append((rollout.id, kept()))
                # After a start, every rollout keeps a hold at once: their next ones are spread
                # over the period (sooner, never later), not all due at the same tick.
                since = now - _stagger(rollout.id) if last is None else now
                self._last_hold[rollout.id] = (signature, since)
            return Outcome(rollout.id, rollout.flag, decision, applied=False)
        return self._apply(rollout, kept(), now)

    def _unjudgeable(self, rollout: RolloutRecord, error: Exception, now: datetime) -> Outcome:
        """Pause a rollout whose data cannot be judged, loudly: the error is the reason."""
        self.judge_failures += 1
        self._tracker.tracked.pop(rollout.id, None)
        self._last_hold.pop(rollout.id, None)
        logger.error(
            "rollout %s of flag %s: its data cannot be judged; pausing it",
            rollout.id,
            rollout.flag,
            exc_info=error,
        )
        reason = (
            f"its data cannot be judged ({type(error).__name__}: {error}); paused until a "
            "person looks at it"
        )
        return self._apply(rollout, Decision(Move.PAUSE, rollout.stage, now, (reason,)), now)

    def _apply(self, rollout: RolloutRecord, decision: Decision, now: datetime) -> Outcome:
        action = _MOVES[decision.move]
        stage = rollout.stage + 1 if decision.move is Move.EXPAND else None
        notify: list[tuple[str, bytes]] = []
        if self.outbox is not None:
            status = next_status(rollout.status, action) or rollout.status
            expected = replace(
                rollout,
                status=status,
                stage=rollout.stage if stage is None else stage,
                version=rollout.version + 1,
            )
            notify = self.outbox(expected, decision)
        try:
            after = self.store.transition(
                rollout,
                actor=ACTOR,
                action=action,
                now=now,
                stage=stage,
                decision=decision,
                details={"reasons": list(decision.reasons), "stage": rollout.stage},
                notify=notify,
            )
        except ConflictError:  # StaleVersionError included: an operator acted meanwhile
            logger.info(
                "rollout %s of flag %s changed meanwhile; skipped", rollout.id, rollout.flag
            )
            return Outcome(rollout.id, rollout.flag, decision, applied=False)
        self._last_hold.pop(rollout.id, None)
        for listener in self.listeners:
            try:
                listener(after, decision)
            except Exception:
                logger.exception("rollout %s of flag %s: listener failed", rollout.id, rollout.flag)
        return Outcome(rollout.id, rollout.flag, decision, applied=True)
