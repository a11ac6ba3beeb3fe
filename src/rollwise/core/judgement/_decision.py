"""The decision: a pure function of the plan, the rollout's state, what was observed and now.

It never expands by default: expansion needs every gate met and every guard positively safe;
harm on a rollback guard rolls back, harm on a pause guard or a sample-ratio mismatch pauses;
a stage with no conclusion by its maximum duration pauses for a person; anything else holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator, Sequence
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


def harmonic(n: int) -> float:
    """H(n) = 1 + 1/2 + … + 1/n, the harmonic number (0 for n = 0)."""
    return math.fsum(1 / position for position in range(1, n + 1))


def guard_positions(guard: Guard) -> int:
    """T_g, the harm tests a guard may run: the whole traffic, then ``max_segments`` values of
    each attribute it splits by (the tests beyond them are never run)."""
    return 1 + len(guard.by) * guard.max_segments


def harm_budget(plan: Plan, action: Action = Action.ROLLBACK) -> float:
    """H = Σ H(T_g) over the guards whose regression triggers ``action`` (gauges test nothing):
    what the false-rollback rate is divided by (``harm_alpha``)."""
    return math.fsum(
        harmonic(guard_positions(guard))
        for guard in plan.guards
        if guard.kind is not GuardKind.GAUGE and guard.on_regression is action
    )


def harm_alpha(plan: Plan, action: Action = Action.ROLLBACK) -> float:
    """The level of each guard's whole-traffic harm test: α / H (``harm_budget``).

    The harm tests of a guard take the positions p = 1, 2, …, T_g — the whole traffic first,
    then its segments in order of appearance (``segment_alpha``) — and the test at position p
    runs at α / (p·H). Over all the guards, Σ_g Σ_p α / (p·H) = α: a union bound over
    e-processes (Ville's inequality for each: P(sup_t E_t ≥ 1/α_p) ≤ α_p), with the levels a
    summable sequence rather than equal shares (Bonferroni with weights, as for e-values in
    Vovk & Wang, "E-values: calibration, combination and applications", Ann. Statist. 49,
    2021). Positions that never fill are unspent: reserving them costs each test log H nats
    of evidence (H(21) ≈ 3.65 for ``by: [tenant]``, 20 segments), where equal shares cost
    log T (T = 21) whether the segments exist or not.

    Rollback guards share the plan's false-rollback rate; pause guards share a budget of the
    same size of their own (a false pause stops the rollout for a person, it rolls nothing
    back), so a pause-only guard costs the rollback guards nothing. Without any such guard the
    level is α itself.
    """
    budget = harm_budget(plan, action)
    return plan.false_rollback_rate / budget if budget else plan.false_rollback_rate


def segment_alpha(alpha: float, guard: Guard, attribute: int, rank: int) -> float:
    """The level of a segment's harm test, given its guard's whole-traffic level ``alpha``
    (``harm_alpha``): ``alpha / p`` at position p = 2 + rank·A + attribute, where ``attribute``
    is the index of its attribute in ``guard.by`` (A of them) and ``rank`` its value's place in
    order of first appearance (``Observations.segments``, 0 first). The attributes take turns,
    so a second attribute's first value is not pushed behind all of the first's.
    """
    return alpha / (2 + rank * len(guard.by) + attribute)


def judged_segments(
    guard: Guard, segments: Callable[[str, str], Sequence[str]], alpha: float
) -> Iterator[tuple[tuple[str, str], float]]:
    """Each segment of ``guard`` judged now, with its level (``segment_alpha``): per attribute,
    the first ``max_segments`` values in order of appearance, as ``segments(metric,
    attribute)`` lists them (``Observations.segments``, or the incremental evidence's)."""
    for index, attribute in enumerate(guard.by):
        values = segments(guard.metric, attribute)[: guard.max_segments]
        for rank, value in enumerate(values):
            yield (attribute, value), segment_alpha(alpha, guard, index, rank)


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
    """The guard's verdict on the whole traffic, and one per judged segment: the first
    ``max_segments`` values of each attribute of ``by`` in order of appearance.

    ``alpha`` is the whole traffic's level (``harm_alpha``); each segment is judged at its
    position's (``segment_alpha``). ``unit`` is the plan's: a segment split by it is a whole
    unit, judged against its own history (``unit_segment``, which splits the segment's level).
    ``pending_segment_bounds=False`` finds no bounds for the rate segments that are pending
    (what a decision keeps does not include them)."""
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
        for key, level in judged_segments(guard, observations.segments, alpha):
            raw = observations.rates.get((guard.metric, key), ())
            own = None
            whole_unit = key[0] == unit
            if whole_unit:
                series, own = unit_segment(raw, whole, level, guard.worse is Worse.HIGHER)
            else:
                series = paired_rates(raw, whole)
            segments.append(
                judge_rate(
                    guard,
                    series,
                    stage,
                    level,
                    key,
                    bounds=bounds,
                    stages=stages,
                    own=own,
                    pending_bounds=pending_segment_bounds,
                    # A whole unit's own history is not a sample of units.
                    dispersion=NO_DISPERSION if whole_unit else dispersion,
                )
            )
        return overall, segments
    latency_whole: Sequence[LatencySample] = observations.latencies.get(whole_key, ())
    tails = observations.dispersion.get(guard.metric, NO_DISPERSION)
    overall = judge_latency(
        guard, latency_whole, stage, alpha, stages=stages, bounds=bounds, dispersion=tails
    )
    for key, level in judged_segments(guard, observations.segments, alpha):
        series_l = paired_latencies(
            observations.latencies.get((guard.metric, key), ()), latency_whole
        )
        segments.append(
            judge_latency(guard, series_l, stage, level, key, stages, bounds, dispersion=tails)
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
