"""The gates of leaving a stage (bake time, samples, windows to span, approval) and the
sample-ratio check: what a decision weighs besides the guards."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from rollwise.core._plan import Plan, cumulative_audience
from rollwise.core._quantities import format_duration
from rollwise.core.judgement._bernoulli import sample_ratio_log_evidence
from rollwise.core.judgement._observations import Observations

if TYPE_CHECKING:
    from rollwise.core.judgement._decision import RolloutState

#: Level of the sample-ratio check (its own budget: a mismatch pauses, it never rolls back).
SAMPLE_RATIO_ALPHA = 0.001


@dataclass(frozen=True, slots=True)
class Gate:
    """One condition for leaving the stage, with where it stands."""

    name: str
    met: bool
    sentence: str
    current: float | None = None
    required: float | None = None


def stage_gates(
    plan: Plan,
    state: RolloutState,
    observations: Observations,
    now: datetime,
    approvals: Collection[str],
) -> list[Gate]:
    """Every condition of leaving the stage, with where it stands and a sentence."""
    return [
        Gate(name, met, sentence(), *numbers)
        for name, met, sentence, numbers in _checks(plan, state, observations, now, approvals)
    ]


def gates_met(
    plan: Plan,
    state: RolloutState,
    observations: Observations,
    now: datetime,
    approvals: Collection[str],
) -> bool:
    """Whether every gate of ``stage_gates`` is met (without their sentences)."""
    return all(met for _, met, _, _ in _checks(plan, state, observations, now, approvals))


_Check = tuple[str, bool, Callable[[], str], tuple[float, float] | tuple[()]]


def _checks(
    plan: Plan,
    state: RolloutState,
    observations: Observations,
    now: datetime,
    approvals: Collection[str],
) -> Iterator[_Check]:
    """Each gate in order: (name, met, its sentence when asked, (current, required) or ())."""
    stage = plan.stages[state.stage]
    elapsed = now - state.stage_entered_at
    bake = stage.bake
    if bake is not None:
        yield (
            "bake",
            elapsed >= bake,
            lambda: (
                f"baked {format_duration(elapsed) if elapsed.total_seconds() > 0 else '0s'} of "
                f"{format_duration(bake)}"
            ),
            (elapsed.total_seconds(), bake.total_seconds()),
        )
    needed = stage.min_samples
    if needed is not None:
        seen = observations.samples[state.stage] if state.stage < len(observations.samples) else 0
        yield (
            "min_samples",
            seen >= needed,
            lambda: f"{seen:,} of {needed:,} exposed samples",
            (seen, needed),
        )
        attribute = stage.min_samples_per
        if attribute is not None:
            per = (
                observations.samples_per[state.stage]
                if state.stage < len(observations.samples_per)
                else {}
            )
            short = {value: count for value, count in per.items() if count < needed}

            def sentence() -> str:
                if not per:
                    return f"no {attribute} seen yet"
                if short:
                    worst = min(short, key=lambda v: short[v])
                    return (
                        f"{len(short)} {attribute} value(s) below {needed:,} exposed samples "
                        f"(fewest: {worst}, {short[worst]:,})"
                    )
                return f"every {attribute} has {needed:,} exposed samples"

            yield "min_samples_per", bool(per) and not short, sentence, ()
    for name in stage.cover:
        yield _cover(plan, name, state, now)
    if state.stage + 1 < len(plan.stages):
        following = plan.stages[state.stage + 1]
        if following.approval_required:
            approved = following.name in approvals
            yield (
                "approval",
                approved,
                lambda: (
                    f"approved to enter {following.name!r}"
                    if approved
                    else f"waiting for approval to enter {following.name!r}"
                ),
                (),
            )


def _cover(plan: Plan, name: str, state: RolloutState, now: datetime) -> _Check:
    window = plan.windows.get(name)
    if window is None:
        return f"cover:{name}", False, lambda: f"window {name!r} is not defined", ()
    start, end = window.next_span(state.stage_entered_at)
    covered = end <= now

    def sentence() -> str:
        if covered:
            return f"spanned {name} ({start:%Y-%m-%d %H:%M}–{end:%H:%M})"
        return f"waiting to span {name} (next {start:%Y-%m-%d %H:%M}–{end:%H:%M})"

    return f"cover:{name}", covered, sentence, ()


def sample_ratio(plan: Plan, state: RolloutState, observations: Observations) -> str | None:
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


def next_gate_change(plan: Plan, state: RolloutState, now: datetime) -> datetime | None:
    """The first moment after ``now`` at which time alone changes what ``decide`` weighs: a bake
    ending, a ``cover`` window spanned, ``max_stage_duration`` reached (None: never). Until then,
    with the same observations and state, the decision's move and gates stay as they are."""
    stage = plan.stages[state.stage]
    moments = []
    if stage.bake is not None:
        moments.append(state.stage_entered_at + stage.bake)
    for name in stage.cover:
        window = plan.windows.get(name)
        if window is not None:
            moments.append(window.next_span(state.stage_entered_at)[1])
    if plan.max_stage_duration is not None:
        moments.append(state.stage_entered_at + plan.max_stage_duration)
    later = [moment for moment in moments if moment > now]
    return min(later) if later else None
