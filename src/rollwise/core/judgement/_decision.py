"""The decision: a pure function of the plan, the rollout's state, what was observed and now.

It never expands by default: expansion needs every gate met and every guard positively safe;
harm on a rollback guard rolls back, harm on a pause guard or a sample-ratio mismatch pauses;
a stage with no conclusion by its maximum duration pauses for a person; anything else holds.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from rollwise.core._plan import Action, Guard, GuardKind, Plan, Worse, cumulative_audience
from rollwise.core._quantities import format_duration
from rollwise.core.judgement._evidence import sample_ratio_log_evidence
from rollwise.core.judgement._observations import (
    LatencySample,
    Observations,
    SegmentKey,
)
from rollwise.core.judgement._pairing import paired_latencies, paired_rates, unit_segment
from rollwise.core.judgement._verdicts import (
    GuardVerdict,
    Verdict,
    judge_gauge,
    judge_latency,
    judge_rate,
)

#: Level of the sample-ratio check (its own budget: a mismatch pauses, it never rolls back).
SAMPLE_RATIO_ALPHA = 0.001


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
class Gate:
    """One condition for leaving the stage, with where it stands."""

    name: str
    met: bool
    sentence: str
    current: float | None = None
    required: float | None = None


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
) -> tuple[GuardVerdict, list[GuardVerdict]]:
    """The guard's verdict on the whole traffic, and one per judged segment. ``unit`` is the
    plan's: a segment split by it is a whole unit, judged against its own history
    (``unit_segment``)."""
    if guard.kind is GuardKind.GAUGE:
        return judge_gauge(guard, observations.gauges.get(guard.metric, ()), now), []
    whole_key: tuple[str, SegmentKey] = (guard.metric, None)
    segments: list[GuardVerdict] = []
    if guard.kind is GuardKind.RATE:
        whole = observations.rates.get(whole_key, ())
        overall = judge_rate(guard, whole, stage, alpha, bounds=bounds, stages=stages)
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
                        guard, series, stage, alpha, key, bounds=bounds, stages=stages, own=own
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


def _gates(
    plan: Plan,
    state: RolloutState,
    observations: Observations,
    now: datetime,
    approvals: Collection[str],
) -> list[Gate]:
    stage = plan.stages[state.stage]
    gates: list[Gate] = []
    elapsed = now - state.stage_entered_at
    if stage.bake is not None:
        gates.append(
            Gate(
                "bake",
                elapsed >= stage.bake,
                f"baked {format_duration(elapsed) if elapsed.total_seconds() > 0 else '0s'} of "
                f"{format_duration(stage.bake)}",
                elapsed.total_seconds(),
                stage.bake.total_seconds(),
            )
        )
    if stage.min_samples is not None:
        seen = observations.samples[state.stage] if state.stage < len(observations.samples) else 0
        gates.append(
            Gate(
                "min_samples",
                seen >= stage.min_samples,
                f"{seen:,} of {stage.min_samples:,} exposed samples",
                seen,
                stage.min_samples,
            )
        )
        if stage.min_samples_per is not None:
            per = (
                observations.samples_per[state.stage]
                if state.stage < len(observations.samples_per)
                else {}
            )
            short = {value: count for value, count in per.items() if count < stage.min_samples}
            met = bool(per) and not short
            if not per:
                sentence = f"no {stage.min_samples_per} seen yet"
            elif short:
                worst = min(short, key=lambda v: short[v])
                sentence = (
                    f"{len(short)} {stage.min_samples_per} value(s) below {stage.min_samples:,} "
                    f"exposed samples (fewest: {worst}, {short[worst]:,})"
                )
            else:
                sentence = (
                    f"every {stage.min_samples_per} has {stage.min_samples:,} exposed samples"
                )
            gates.append(Gate("min_samples_per", met, sentence))
    for name in stage.cover:
        window = plan.windows.get(name)
        if window is None:
            gates.append(Gate(f"cover:{name}", False, f"window {name!r} is not defined"))
            continue
        start, end = window.next_span(state.stage_entered_at)
        covered = end <= now
        gates.append(
            Gate(
                f"cover:{name}",
                covered,
                f"spanned {name} ({start:%Y-%m-%d %H:%M}–{end:%H:%M})"
                if covered
                else f"waiting to span {name} (next {start:%Y-%m-%d %H:%M}–{end:%H:%M})",
            )
        )
    if state.stage + 1 < len(plan.stages):
        following = plan.stages[state.stage + 1]
        if following.approval_required:
            approved = following.name in approvals
            gates.append(
                Gate(
                    "approval",
                    approved,
                    f"approved to enter {following.name!r}"
                    if approved
                    else f"waiting for approval to enter {following.name!r}",
                )
            )
    return gates


def _sample_ratio(plan: Plan, state: RolloutState, observations: Observations) -> str | None:
    """The mismatch, as a sentence, when exposure does not match the assigned share."""
    assigned = (cumulative_audience(plan, state.stage).percent or 0.0) / 100
    if not 0 < assigned < 1 or state.stage >= len(observations.exposure):
        return None
    counts = observations.exposure[state.stage]
    evidence = sample_ratio_log_evidence(counts.exposed_units, counts.baseline_units, assigned)
    if evidence < math.log(1 / SAMPLE_RATIO_ALPHA):
        return None
    total = counts.exposed_units + counts.baseline_units
    return (
        f"exposure does not match assignment: {counts.exposed_units / total:.2%} of {total:,} "
        f"units exposed, {assigned:.2%} assigned; check bucketing and instrumentation"
    )


@dataclass(frozen=True, slots=True)
class Judged:
    """Every guard's verdicts for one stage's observations: what ``decide`` weighs."""

    verdicts: tuple[GuardVerdict, ...]
    segment_verdicts: tuple[GuardVerdict, ...]
    #: Per guard: its overall state and the verdict that stands for it (a harmed segment's,
    #: if any).
    guard_states: tuple[tuple[Guard, Verdict, GuardVerdict], ...]


def judge_guards(
    plan: Plan, observations: Observations, stage: int, now: datetime, *, bounds: bool = True
) -> Judged:
    """Judge every guard of ``plan`` on ``observations`` at ``stage``.

    Depends on the observations (and, for gauges, on readings up to ``now``), not on the
    rollout's timing: a caller may reuse it while the observations have not changed.
    """
    verdicts: list[GuardVerdict] = []
    segment_verdicts: list[GuardVerdict] = []
    guard_states: list[tuple[Guard, Verdict, GuardVerdict]] = []
    for guard in plan.guards:
        alpha = harm_alpha(plan, guard.on_regression)
        overall, segments = judge_guard(
            guard, observations, stage, alpha, now, bounds, stages=len(plan.stages), unit=plan.unit
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
    gates = _gates(plan, state, observations, now, approvals)

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
    mismatch = _sample_ratio(plan, state, observations)
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
