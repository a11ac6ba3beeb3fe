"""The decision: every move, for the reasons the design gives, with its evidence."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from rollwise.core import Action, load_plan
from rollwise.core.judgement import (
    Exposure,
    GaugeReading,
    Move,
    Observations,
    RateSample,
    RolloutState,
    RolloutStatus,
    Tally,
    decide,
    harm_budget,
)

PLAN = load_plan(
    """
flag: new-checkout
unit: user
max_stage_duration: 2d
guards:
  - {metric: errors, kind: rate, tolerance: 10%, by: [tenant], max_segments: 5}
  - {metric: abandoned, kind: rate, tolerance: 10%, on_regression: pause}
  - {metric: queue, kind: gauge, max: 1000, breaches: 2, on_regression: pause}
stages:
  - name: canary
    audience: {percent: 5}
    bake: 1h
    min_samples: 1000
    min_samples_per: traffic_type
    cover: [nightly]
  - name: quarter
    audience: {percent: 25}
    approval: required
    min_samples: 1000
windows:
  nightly: {cron: "0 2 * * *", duration: 30m}
"""
)
ENTERED = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
LATER = ENTERED + timedelta(hours=4)  # bake over, nightly window (02:00-02:30) spanned
SAFE = RateSample(Tally(2_000_000, 20_000), Tally(38_000_000, 380_000))
BAD = RateSample(Tally(20_000, 600), Tally(380_000, 3_800))


def _observations(
    errors: RateSample = SAFE, abandoned: RateSample = SAFE, **changes: object
) -> Observations:
    fields: dict[str, object] = {
        "rates": {("errors", None): [errors], ("abandoned", None): [abandoned]},
        "gauges": {"queue": [GaugeReading(LATER, 100.0)]},
        "exposure": [Exposure(500, 9500)],
        "samples": [2_000_000],
        "samples_per": [{"card": 1_500_000, "invoice": 5_000}],
    }
    fields.update(changes)
    return Observations(**fields)  # type: ignore[arg-type]


def _decide(
    observations: Observations,
    now: datetime = LATER,
    approvals: tuple[str, ...] = ("quarter",),
    **state: object,
):  # type: ignore[no-untyped-def]
    return decide(
        PLAN,
        RolloutState(**{"stage": 0, "stage_entered_at": ENTERED, **state}),
        observations,
        now,
        approvals,
    )  # type: ignore[arg-type]


def test_expands_when_every_gate_is_met_and_every_guard_is_safe() -> None:
    """All gates met, all guards safe → expand, naming the next stage."""
    decision = _decide(_observations())
    assert decision.move is Move.EXPAND, decision.reasons
    assert decision.next_stage == 1
    assert "on to 'quarter'" in decision.reasons[0]
    assert {gate.name for gate in decision.gates} == {
        "bake",
        "min_samples",
        "min_samples_per",
        "cover:nightly",
        "approval",
    }
    assert all(gate.met for gate in decision.gates)


def test_completes_after_the_last_stage() -> None:
    """The last stage, safe and met → complete."""
    later = replace(SAFE, stage=1)
    observations = _observations(
        samples=[2_000_000, 2_000_000],
        rates={("errors", None): [SAFE, later], ("abandoned", None): [SAFE, later]},
        exposure=[Exposure(500, 9500), Exposure(2500, 7500)],
    )
    decision = _decide(observations, stage=1)
    assert decision.move is Move.COMPLETE, decision.reasons


def test_harm_on_a_rollback_guard_rolls_back_with_the_evidence() -> None:
    """A regression on a rollback guard → rollback, with the guard as trigger and numbers."""
    decision = _decide(_observations(errors=BAD))
    assert decision.move is Move.ROLLBACK
    assert decision.trigger is not None and decision.trigger.metric == "errors"
    assert decision.trigger.exposed == Tally(20_000, 600)
    assert decision.trigger.lower is not None and decision.trigger.lower > 1.1
    assert "errors is worse than tolerated: 3% exposed vs 1% baseline" in decision.reasons[0]


def test_harm_in_one_segment_rolls_back() -> None:
    """Harm confined to one tenant's segment is enough to roll back."""
    rates = {
        ("errors", None): [SAFE],
        ("errors", ("tenant", "globex")): [BAD],
        ("abandoned", None): [SAFE],
    }
    decision = _decide(_observations(rates=rates))
    assert decision.move is Move.ROLLBACK
    assert decision.trigger is not None and decision.trigger.segment == ("tenant", "globex")
    assert "for tenant globex" in decision.reasons[0]


def test_harm_on_a_pause_guard_or_a_gauge_pauses() -> None:
    """A pause guard's regression, or a gauge over its limit twice in a row → pause."""
    assert _decide(_observations(abandoned=BAD)).move is Move.PAUSE
    readings = [GaugeReading(LATER - timedelta(minutes=1), 1500.0), GaugeReading(LATER, 1600.0)]
    decision = _decide(_observations(gauges={"queue": readings}))
    assert decision.move is Move.PAUSE
    assert "1.6e+03 > max 1e+03" in decision.reasons[0] or "1600 > max 1000" in decision.reasons[0]


def test_sample_ratio_mismatch_pauses_with_the_reason() -> None:
    """Exposure that does not match assignment pauses and says so."""
    decision = _decide(_observations(exposure=[Exposure(300, 9700)]))
    assert decision.move is Move.PAUSE
    assert decision.reasons[0].startswith(
        "exposure does not match assignment: 3.00% of 10,000 units exposed, 5.00% assigned"
    )


def test_kill_switch_rolls_back_and_stopped_rollouts_hold() -> None:
    """Killed → rollback whatever the data; a paused rollout holds."""
    assert _decide(_observations(), killed=True).move is Move.ROLLBACK
    paused = _decide(_observations(), status=RolloutStatus.PAUSED)
    assert paused.move is Move.HOLD and paused.reasons == ("the rollout is paused",)


def test_each_unmet_gate_holds_and_is_named() -> None:
    """Bake, samples, per-value samples, window and approval each hold the stage alone."""
    early = _decide(_observations(), now=ENTERED + timedelta(minutes=30))
    assert early.move is Move.HOLD
    assert any("baked 30m of 1h" in reason for reason in early.reasons)
    assert any("waiting to span nightly" in reason for reason in early.reasons)
    few = _decide(_observations(samples=[999]))
    assert few.move is Move.HOLD and any("999 of 1,000 exposed samples" in r for r in few.reasons)
    rare = _decide(_observations(samples_per=[{"card": 5000, "invoice": 12}]))
    assert rare.move is Move.HOLD and any("fewest: invoice, 12" in r for r in rare.reasons)
    unapproved = _decide(_observations(), approvals=())
    assert unapproved.move is Move.HOLD
    assert "waiting for approval to enter 'quarter'" in unapproved.reasons


def test_pending_guards_hold_and_never_expand_by_default() -> None:
    """Too little evidence holds; past max_stage_duration it pauses for a person."""
    thin = RateSample(Tally(2000, 20), Tally(38000, 380))
    holding = _decide(_observations(errors=thin))
    assert holding.move is Move.HOLD
    assert any("errors: not conclusive yet" in r for r in holding.reasons)
    overdue = _decide(_observations(errors=thin), now=ENTERED + timedelta(days=2))
    assert overdue.move is Move.PAUSE
    assert overdue.reasons[0].startswith("no conclusion after 2d (max_stage_duration)")


def test_alpha_is_shared_across_guards_and_segments() -> None:
    """errors (1 + 5 segments: H(6) = 2.45) rolls back alone; abandoned (H(1) = 1) pauses, in
    a budget of its own; gauges take no share."""
    assert harm_budget(PLAN) == pytest.approx(1 + 1 / 2 + 1 / 3 + 1 / 4 + 1 / 5 + 1 / 6)
    assert harm_budget(PLAN, Action.PAUSE) == 1.0


def test_a_plan_without_guards_never_leaves_its_stage() -> None:
    """The server refuses such plans; one that got in anyway holds at every stage, even the
    last at 100 %, however long it has baked: nothing measured shows a stage is safe."""
    unguarded = replace(PLAN, guards=())
    for stage, percent_stage in ((0, "canary"), (1, "quarter")):
        decision = decide(
            unguarded,
            RolloutState(stage, ENTERED),
            _observations(
                rates={},
                gauges={},
                samples=[2_000_000, 2_000_000],
                samples_per=[{"card": 1_500_000, "invoice": 5_000}, {}],
                exposure=[Exposure(500, 9500), Exposure(2500, 7500)],
            ),
            LATER,
            ("quarter",),
        )
        assert decision.move is Move.HOLD, (percent_stage, decision.reasons)
        assert any("the plan has no guard" in reason for reason in decision.reasons)
