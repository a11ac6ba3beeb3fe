"""The controller tick: read (store), decide (core), write (store), tell (listeners).

Each rollout is handled on its own: a failure is logged with the rollout and flag it concerns
and does not stop the others. A transition is persisted with the version it was decided from,
so a second controller, or this one after a restart, cannot apply it twice. When the store is
unreachable nothing is decided: the controller never rolls forward without data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from rollwise.core.judgement import Decision, Move, RolloutState, RolloutStatus, decide
from rollwise.store import RolloutRecord, StaleVersionError, Store

logger = logging.getLogger("rollwise.control")

ACTOR = "controller"

#: Called after a transition is persisted: (rollout after the change, the decision).
Listener = Callable[[RolloutRecord, Decision], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    rollout_id: int
    flag: str
    decision: Decision
    applied: bool


_MOVES = {
    Move.EXPAND: "rollout.expand",
    Move.ROLLBACK: "rollout.rollback",
    Move.PAUSE: "rollout.pause",
    Move.COMPLETE: "rollout.complete",
}


class Controller:
    def __init__(self, store: Store, listeners: list[Listener] | None = None) -> None:
        self.store = store
        self.listeners = listeners or []
        self._last_hold: dict[int, tuple[str, ...]] = {}

    def tick(self, now: datetime) -> list[Outcome]:
        """Judge every running rollout once. Returns what was decided and applied."""
        outcomes = []
        for rollout in self.store.rollouts(live=True):
            if rollout.status is not RolloutStatus.RUNNING:
                continue
            try:
                outcomes.append(self._judge(rollout, now))
            except Exception:
                logger.exception("rollout %s of flag %s: tick failed", rollout.id, rollout.flag)
        return outcomes

    def _judge(self, rollout: RolloutRecord, now: datetime) -> Outcome:
        plan = self.store.parsed_plan(rollout.plan_id)
        killed = self.store.kill_switches().get(rollout.flag, False)
        state = RolloutState(rollout.stage, rollout.stage_entered_at, rollout.status, killed)
        observations = self.store.observations(rollout, plan)
        decision = decide(plan, state, observations, now, rollout.approvals)
        if decision.move is Move.HOLD:
            # Keep a hold in the decision log when what it waits for changes, not every tick.
            if self._last_hold.get(rollout.id) != decision.reasons:
                self.store.record_decision(rollout.id, decision)
                self._last_hold[rollout.id] = decision.reasons
            return Outcome(rollout.id, rollout.flag, decision, applied=False)
        changes: dict[str, object] = {}
        if decision.move is Move.EXPAND:
            changes["stage"] = rollout.stage + 1
        else:
            changes["status"] = {
                Move.ROLLBACK: RolloutStatus.ROLLED_BACK,
                Move.PAUSE: RolloutStatus.PAUSED,
                Move.COMPLETE: RolloutStatus.COMPLETED,
            }[decision.move]
        try:
            after = self.store.transition(
                rollout,
                actor=ACTOR,
                action=_MOVES[decision.move],
                now=now,
                decision=decision,
                details={"reasons": list(decision.reasons), "stage": rollout.stage},
                **changes,  # type: ignore[arg-type]
            )
        except StaleVersionError:
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
