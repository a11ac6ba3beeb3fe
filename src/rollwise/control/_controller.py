"""The controller tick: read (store), decide (core), write (store), tell (listeners).

Each rollout is handled on its own: a failure is logged with the rollout and flag it concerns
and does not stop the others. A transition is persisted with the version it was decided from,
so a second controller, or this one after a restart, cannot apply it twice. When the store is
unreachable nothing is decided: the controller never rolls forward without data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from rollwise.core import GuardKind, Plan, RolloutAction, next_status
from rollwise.core.judgement import (
    Decision,
    Judged,
    Move,
    Observations,
    RolloutState,
    RolloutStatus,
    decide,
    judge_guards,
)
from rollwise.store import ConflictError, RolloutRecord, Store

logger = logging.getLogger("rollwise.control")

ACTOR = "controller"

#: Called after a transition is persisted: (rollout after the change, the decision).
Listener = Callable[[RolloutRecord, Decision], None]
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


_MOVES = {
    Move.EXPAND: RolloutAction.EXPAND,
    Move.ROLLBACK: RolloutAction.ROLLBACK,
    Move.PAUSE: RolloutAction.PAUSE,
    Move.COMPLETE: RolloutAction.COMPLETE,
}


class Controller:
    def __init__(
        self,
        store: Store,
        listeners: list[Listener] | None = None,
        outbox: Outbox | None = None,
    ) -> None:
        self.store = store
        self.listeners = listeners or []
        self.outbox = outbox
        self._last_hold: dict[int, tuple[tuple[object, ...], datetime]] = {}
        # Stored plans never change (a new version is a new plan), so parse each once.
        self._plans: dict[int, Plan] = {}
        # Each rollout's observations and guard verdicts as last read and judged: reused while
        # its data and stage are unchanged (verdicts depend on nothing else).
        self._observations: dict[int, tuple[tuple[object, ...], Observations, Judged]] = {}

    def tick(self, now: datetime) -> list[Outcome]:
        """Judge every running rollout once. Returns what was decided and applied."""
        outcomes = []
        holds: list[tuple[int, Decision]] = []
        killed = self.store.kill_switches()
        running = [r for r in self.store.rollouts(live=True) if r.status is RolloutStatus.RUNNING]
        fingerprints = self.store.data_fingerprints([r.id for r in running])
        gauges = self.store.gauge_versions()
        for rollout in running:
            try:
                plan = self._plan(rollout.plan_id)
                # A rollout with gauge guards is read again when one of its gauges moved.
                fingerprint = (
                    *fingerprints.get(rollout.id, ()),
                    *(gauges.get(g.metric, 0) for g in plan.guards if g.kind is GuardKind.GAUGE),
                )
                observations, judged = self._read(rollout, fingerprint, now)
                outcomes.append(
                    self._judge(
                        rollout, now, killed.get(rollout.flag, False), holds, observations, judged
                    )
                )
            except Exception:
                logger.exception("rollout %s of flag %s: tick failed", rollout.id, rollout.flag)
        try:
            self.store.record_decisions(holds)
        except Exception:
            logger.exception("could not keep %d hold decisions", len(holds))
        return outcomes

    def current(self, rollout: RolloutRecord, now: datetime) -> Decision:
        """What the decision would be now, with its bounds, without acting on it."""
        plan = self._plan(rollout.plan_id)
        state = _state(rollout, self.store.kill_switches().get(rollout.flag, False))
        return decide(plan, state, self.store.observations(rollout, plan), now, rollout.approvals)

    def _read(
        self, rollout: RolloutRecord, fingerprint: tuple[int, ...], now: datetime
    ) -> tuple[Observations, Judged]:
        """The rollout's observations and verdicts, read and judged again only when its data
        or stage changed."""
        key = (fingerprint, rollout.stage)
        cached = self._observations.get(rollout.id)
        if cached is not None and cached[0] == key:
            return cached[1], cached[2]
        plan = self._plan(rollout.plan_id)
        observations = self.store.observations(rollout, plan)
        judged = judge_guards(plan, observations, rollout.stage, now, bounds=False)
        self._observations[rollout.id] = (key, observations, judged)
        return observations, judged

    def _plan(self, plan_id: int) -> Plan:
        plan = self._plans.get(plan_id)
        if plan is None:
            plan = self._plans[plan_id] = self.store.parsed_plan(plan_id)
        return plan

    def _judge(
        self,
        rollout: RolloutRecord,
        now: datetime,
        killed: bool,
        holds: list[tuple[int, Decision]],
        observations: Observations,
        judged: Judged,
    ) -> Outcome:
        plan = self._plan(rollout.plan_id)
        state = _state(rollout, killed)
        # Bounds are for people: computed only for decisions that are kept.
        decision = decide(
            plan, state, observations, now, rollout.approvals, bounds=False, judged=judged
        )
        if decision.move is Move.HOLD:
            # Keep a hold in the decision log when what it waits for changes (which gates,
            # which verdicts), and at least every HOLD_RECORD_EVERY, not at every tick.
            signature = _signature(decision)
            last = self._last_hold.get(rollout.id)
            if last is None or last[0] != signature or now - last[1] >= HOLD_RECORD_EVERY:
                holds.append(
                    (rollout.id, decide(plan, state, observations, now, rollout.approvals))
                )
                self._last_hold[rollout.id] = (signature, now)
            return Outcome(rollout.id, rollout.flag, decision, applied=False)
        decision = decide(plan, state, observations, now, rollout.approvals)
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
