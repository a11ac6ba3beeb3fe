"""The decision: a pure function of the plan, the rollout's state, what was observed and now.

It never expands by default: expansion needs every gate met and every guard positively safe;
harm on a rollback guard rolls back, harm on a pause guard or a sample-ratio mismatch pauses;
a stage with no conclusion by its maximum duration pauses for a person; anything else holds.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from rollwise.core._plan import Action, Guard, GuardKind, Plan, Worse
from rollwise.core._quantities import format_duration
from rollwise.core.judgement._dispersion import NO_DISPERSION
from rollwise.core.judgement._gates import Gate, gates_met, sample_ratio, stage_gates
from rollwise.core.judgement._gauges import judge_gauge
from rollwise.core.judgement._latency import judge_latency
from rollwise.core.judgement._observations import (
    LatencySample,
    Observations,
    SegmentKey,
)
from rollwise.core.judgement._pairing import paired_latencies, paired_rates, unit_segment
from rollwise.core.judgement._verdicts import GuardVerdict, Verdict, judge_rate


class Move(StrEnum):
    """What the controller does at a tick."""

    EXPAND = "expand"
    HOLD = "hold"
    PAUSE = "pause"
    ROLLBACK = "rollback"
    COMPLETE = "complete"


class RolloutStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    ROLLED_BACK = "rolled_back"
    COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class RolloutState:
    """What the decision needs to know of a rollout (the store keeps more)."""

    stage: int
    stage_entered_at: datetime
    status: RolloutStatus = RolloutStatus.RUNNING
    killed: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do now, and why: every guard's verdict and every gate, with numbers."""

    move: Move
    stage: int
    at: datetime
    reasons: tuple[str, ...]
    verdicts: tuple[GuardVerdict, ...] = ()
    segment_verdicts: tuple[GuardVerdict, ...] = ()
    gates: tuple[Gate, ...] = ()
    #: The guard (and segment) whose evidence triggered a rollback or pause.
    trigger: GuardVerdict | None = None

    @property
    def next_stage(self) -> int | None:
        return self.stage + 1 if self.move is Move.EXPAND else None


def harm_tests(plan: Plan, action: Action | None = None) -> int:
    """How many harm tests share a budget (Bonferroni): one per variant-split guard, plus one
    per judged segment value; only the guards whose regression triggers ``action``, if given."""
    return sum(
        1 + len(guard.by) * guard.max_segments
        for guard in plan.guards
        if guard.kind is not GuardKind.GAUGE and (action is None or guard.on_regression is action)
    )


def harm_alpha(plan: Plan, action: Action = Action.ROLLBACK) -> float:
    """Each harm test's level. Rollback guards share the plan's false-rollback rate; pause
    guards share a budget of the same size of their own (a false pause stops the rollout for a
    person, it rolls nothing back), so a pause-only guard costs the rollback guards nothing."""
    return plan.false_rollback_rate / max(harm_tests(plan, action), 1)


def judge_guard(
    guard: Guard,
    observations: Observations,
    stage: int,
    alpha: float,
    now: datetime,
    bounds: bool = True,
    stages: int = 1,
    unit: str | None = None,
    pending_segment_bounds: bool = True,
) -> tuple[GuardVerdict, list[GuardVerdict]]:
    """The guard's verdict on the whole traffic, and one per judged segment. ``unit`` is the
    plan's: a segment split by it is a whole unit, judged against its own history
    (``unit_segment``). ``pending_segment_bounds=False`` finds no bounds for the rate segments
    that are pending (what a decision keeps does not include them)."""
    if guard.kind is GuardKind.GAUGE:
        return judge_gauge(guard, observations.gauges.get(guard.metric, ()), now), []
    whole_key: tuple[str, SegmentKey] = (guard.metric, None)
    segments: list[GuardVerdict] = []
    if guard.kind is GuardKind.RATE:
        whole = observations.rates.get(whole_key, ())
        dispersion = observations.dispersion.get(guard.metric, NO_DISPERSION)
        overall = judge_rate(
            guard, whole, stage, alpha, bounds=bounds, stages=stages, dispersion=dispersion
        )
        for attribute in guard.by:
            for value in observations.segments(guard.metric, attribute)[: guard.max_segments]:
                key = (attribute, value)
                raw = observations.rates.get((guard.metric, key), ())
                own = None
                if attribute == unit:
                    series, own = unit_segment(raw, whole, alpha, guard.worse is Worse.HIGHER)
                else:
                    series = paired_rates(raw, whole)
                segments.append(
                    judge_rate(
                        guard,
                        series,
                        stage,
                        alpha,
                        key,
                        bounds=bounds,
                        stages=stages,
                        own=own,
                        pending_bounds=pending_segment_bounds,
                        # A whole unit's own history is not a sample of units.
                        dispersion=NO_DISPERSION if attribute == unit else dispersion,
                    )
                )
        return overall, segments
    latency_whole: Sequence[LatencySample] = observations.latencies.get(whole_key, ())
    overall = judge_latency(guard, latency_whole, stage, alpha, stages=stages, bounds=bounds)
    for attribute in guard.by:
        for value in observations.segments(guard.metric, attribute)[: guard.max_segments]:
            key = (attribute, value)
            series_l = paired_latencies(
                observations.latencies.get((guard.metric, key), ()), latency_whole
            )
            segments.append(
                judge_latency(guard, series_l, stage, alpha, key, stages=stages, bounds=bounds)
            )
    return overall, segments


@dataclass(frozen=True, slots=True)
class Judged:
    """Every guard's verdicts for one stage's observations: what ``decide`` weighs."""

    verdicts: tuple[GuardVerdict, ...]
    segment_verdicts: tuple[GuardVerdict, ...]
    #: Per guard: its overall state and the verdict that stands for it (a harmed segment's,
    #: if any).
    guard_states: tuple[tuple[Guard, Verdict, GuardVerdict], ...]


def judge_guards(
    plan: Plan,
    observations: Observations,
    stage: int,
    now: datetime,
    *,
    bounds: bool = True,
    pending_segment_bounds: bool = True,
) -> Judged:
    """Judge every guard of ``plan`` on ``observations`` at ``stage`` (``judge_guard``).

    Depends on the observations (and, for gauges, on readings up to ``now``), not on the
    rollout's timing: a caller may reuse it while the observations have not changed.
    """
    verdicts: list[GuardVerdict] = []
    segment_verdicts: list[GuardVerdict] = []
    guard_states: list[tuple[Guard, Verdict, GuardVerdict]] = []
    for guard in plan.guards:
        alpha = harm_alpha(plan, guard.on_regression)
        overall, segments = judge_guard(
            guard,
            observations,
            stage,
            alpha,
            now,
            bounds,
            stages=len(plan.stages),
            unit=plan.unit,
            pending_segment_bounds=pending_segment_bounds,
        )
        verdicts.append(overall)
        segment_verdicts.extend(segments)
        harmed = [v for v in (overall, *segments) if v.verdict is Verdict.HARM]
        if harmed:
            guard_states.append((guard, Verdict.HARM, harmed[0]))
        else:
            guard_states.append((guard, overall.verdict, overall))
    return Judged(tuple(verdicts), tuple(segment_verdicts), tuple(guard_states))


def decide(
    plan: Plan,
    state: RolloutState,
    observations: Observations,
    now: datetime,
    approvals: Collection[str] = (),
    *,
    bounds: bool = True,
    judged: Judged | None = None,
) -> Decision:
    """What the controller should do at ``now``.

    ``approvals`` holds the names of stages a person has approved entering. ``bounds=False``
    skips the confidence bounds shown to people (the simulator's hot loop does not need them).
    ``judged`` is ``judge_guards``' result for these observations, when the caller kept it.
    """
    stage_index = state.stage
    if state.killed and state.status is not RolloutStatus.ROLLED_BACK:
        return Decision(Move.ROLLBACK, stage_index, now, ("the kill switch is on",))
    if state.status is not RolloutStatus.RUNNING:
        return Decision(Move.HOLD, stage_index, now, (f"the rollout is {state.status.value}",))

    if judged is None:
        judged = judge_guards(plan, observations, stage_index, now, bounds=bounds)
    verdicts, segment_verdicts, guard_states = (
        judged.verdicts,
        judged.segment_verdicts,
        judged.guard_states,
    )
    gates = stage_gates(plan, state, observations, now, approvals)

    def decision(
        move: Move, reasons: Sequence[str], trigger: GuardVerdict | None = None
    ) -> Decision:
        return Decision(
            move,
            stage_index,
            now,
            tuple(reasons),
            tuple(verdicts),
            tuple(segment_verdicts),
            tuple(gates),
            trigger,
        )

    for guard, verdict, detail in guard_states:
        if verdict is Verdict.HARM and guard.on_regression is Action.ROLLBACK:
            return decision(Move.ROLLBACK, [detail.sentence], detail)
    for _, verdict, detail in guard_states:
        if verdict is Verdict.HARM:
            return decision(Move.PAUSE, [detail.sentence], detail)
    mismatch = sample_ratio(plan, state, observations)
    if mismatch is not None:
        return decision(Move.PAUSE, [mismatch])

    waiting = [gate.sentence for gate in gates if not gate.met]
    if not plan.guards:
        # The server refuses such plans; one that got in some other way still never leaves its
        # first stage: with nothing measured, nothing can show a stage is safe.
        waiting.append("the plan has no guard: nothing can show this stage is safe")
    waiting += [
        detail.sentence for _, verdict, detail in guard_states if verdict is not Verdict.SAFE
    ]
    if not waiting:
        if stage_index == len(plan.stages) - 1:
            return decision(Move.COMPLETE, ["the last stage is done and every guard is safe"])
        following = plan.stages[stage_index + 1].name
        return decision(
            Move.EXPAND, [f"every gate is met and every guard is safe: on to {following!r}"]
        )
    limit = plan.max_stage_duration
    if limit is not None and now - state.stage_entered_at >= limit:
        return decision(
            Move.PAUSE,
            [
                f"no conclusion after {format_duration(limit)} (max_stage_duration): a person "
                f"must decide; still waiting for: {'; '.join(waiting)}"
            ],
        )
    return decision(Move.HOLD, waiting)


class GuardStates(Protocol):
    """What ``decide_move`` asks of the guards, by their index in the plan."""

    def harmed(self, index: int) -> bool:
        """Whether the guard is ``harm``, overall or in any judged segment."""

    def verdict(self, index: int) -> Verdict:
        """The guard's overall verdict (asked only of guards that are not harmed)."""


def decide_move(
    plan: Plan,
    state: RolloutState,
    observations: Observations,
    now: datetime,
    approvals: Collection[str],
    guards: GuardStates,
) -> Move:
    """``decide(...).move``, asking the guards no more than the move needs: harm first, then
    safety only when every gate is met (segments are never asked for safety: a guard stands
    for its overall verdict unless a segment is harmed). The simulator asks this at every
    tick, and ``decide`` for the decision that ends a run."""
    if state.killed and state.status is not RolloutStatus.ROLLED_BACK:
        return Move.ROLLBACK
    if state.status is not RolloutStatus.RUNNING:
        return Move.HOLD
    indexes = range(len(plan.guards))
    rolls_back = [plan.guards[i].on_regression is Action.ROLLBACK for i in indexes]
    if any(guards.harmed(i) for i in indexes if rolls_back[i]):
        return Move.ROLLBACK
    if any(guards.harmed(i) for i in indexes if not rolls_back[i]):
        return Move.PAUSE
    if sample_ratio(plan, state, observations) is not None:
        return Move.PAUSE
    if (
        plan.guards
        and gates_met(plan, state, observations, now, approvals)
        and all(guards.verdict(i) is Verdict.SAFE for i in indexes)
    ):
        return Move.COMPLETE if state.stage == len(plan.stages) - 1 else Move.EXPAND
    limit = plan.max_stage_duration
    if limit is not None and now - state.stage_entered_at >= limit:
        return Move.PAUSE
    return Move.HOLD
