"""The false-rollback budget: harmonic levels by order of appearance, summing to at most α, and
each segment judged at its own position's level on both paths."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rollwise.core import Action, GuardKind, Plan, load_plan
from rollwise.core.judgement import (
    LATENCY_BUCKETS,
    Aggregate,
    AggregateTable,
    Observations,
    RateSample,
    Tally,
    Verdict,
    harm_alpha,
    harm_budget,
    judge_guard,
    judge_guards,
    judge_rate,
    segment_alpha,
)
from rollwise.core.judgement._pairing import own_ratio, unit_segment
from rollwise.core.judgement._rollout import RolloutEvidence

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "checkout" / "plan.yaml"
NOW = datetime(2026, 1, 5, tzinfo=UTC)


def _plan(guards: str, unit: str = "user") -> Plan:
    return load_plan(
        f"flag: f\nunit: {unit}\nguards:\n{guards}stages:\n  - {{name: a, audience: {{percent: 5}}}}\n"
    )


ONE_BY_TENANT = _plan("  - {metric: errors, kind: rate, tolerance: 10%, by: [tenant]}\n")
PLANS = {
    "plain": _plan("  - {metric: errors, kind: rate, tolerance: 10%}\n"),
    "by tenant": ONE_BY_TENANT,
    "by tenant and region": _plan(
        "  - {metric: errors, kind: rate, tolerance: 10%, by: [tenant, region], max_segments: 7}\n"
    ),
    "several guards": _plan(
        "  - {metric: errors, kind: rate, tolerance: 10%, by: [tenant], max_segments: 5}\n"
        "  - {metric: lat, kind: latency, tolerance: 10%, by: [region, tenant], max_segments: 3}\n"
        "  - {metric: conv, kind: rate, worse: lower, tolerance: 5%, on_regression: pause}\n"
        "  - {metric: drop, kind: rate, tolerance: 5%, by: [tenant], on_regression: pause}\n"
        "  - {metric: queue, kind: gauge, max: 1000}\n"
    ),
    "example": load_plan(EXAMPLE.read_text(), str(EXAMPLE)),
}


def _positions(plan: Plan, action: Action) -> list[tuple[int, float]]:
    """Every harm test the plan may run for ``action``: (position in its guard, level)."""
    tests = []
    alpha = harm_alpha(plan, action)
    for guard in plan.guards:
        if guard.kind is GuardKind.GAUGE or guard.on_regression is not action:
            continue
        tests.append((1, alpha))
        for attribute in range(len(guard.by)):
            for rank in range(guard.max_segments):
                level = segment_alpha(alpha, guard, attribute, rank)
                tests.append((round(alpha / level), level))
    return tests


@pytest.mark.parametrize("name", sorted(PLANS))
@pytest.mark.parametrize("action", [Action.ROLLBACK, Action.PAUSE])
def test_the_levels_of_all_positions_sum_to_at_most_alpha(name: str, action: Action) -> None:
    """Over every test a plan may run (each guard's whole traffic and all its max_segments
    values of each attribute), the levels sum to the false-rollback rate, not more; each guard's
    positions are 1 … T_g, each once."""
    plan = PLANS[name]
    tests = _positions(plan, action)
    if not tests:
        return
    total = math.fsum(level for _, level in tests)
    assert total <= plan.false_rollback_rate * (1 + 1e-12)
    assert total == pytest.approx(plan.false_rollback_rate, rel=1e-12)
    for guard in plan.guards:
        if guard.kind is GuardKind.GAUGE or guard.on_regression is not action:
            continue
        alpha = harm_alpha(plan, action)
        positions = sorted(
            round(alpha / segment_alpha(alpha, guard, attribute, rank))
            for attribute in range(len(guard.by))
            for rank in range(guard.max_segments)
        )
        assert positions == list(range(2, 2 + len(guard.by) * guard.max_segments))


def test_a_plain_plan_keeps_alpha() -> None:
    """One guard without ``by``: H = 1, the whole traffic is tested at α itself."""
    plan = PLANS["plain"]
    assert harm_budget(plan) == 1.0
    assert harm_alpha(plan) == plan.false_rollback_rate


def test_levels_of_one_guard_by_tenant() -> None:
    """``by: [tenant]``, 20 segments: H(21) = 3.645; whole α/3.645, the first tenant α/7.29, the
    third α/14.6, the twentieth α/76.5 (it was α/21 for each of the 21 tests)."""
    plan = ONE_BY_TENANT
    guard = plan.guards[0]
    rate = plan.false_rollback_rate
    whole = harm_alpha(plan)
    assert rate / whole == pytest.approx(3.6454, abs=1e-4)
    assert rate / segment_alpha(whole, guard, 0, 0) == pytest.approx(7.291, abs=1e-3)
    assert rate / segment_alpha(whole, guard, 0, 2) == pytest.approx(14.58, abs=1e-2)
    assert rate / segment_alpha(whole, guard, 0, 19) == pytest.approx(76.55, abs=1e-2)


def test_two_attributes_take_turns() -> None:
    """With ``by: [tenant, region]`` the first region comes right after the first tenant
    (positions 2 and 3), not after all of the tenants."""
    plan = PLANS["by tenant and region"]
    guard = plan.guards[0]
    alpha = harm_alpha(plan)
    assert [
        alpha / segment_alpha(alpha, guard, attribute, rank)
        for rank in range(2)
        for attribute in range(2)
    ] == pytest.approx([2, 3, 4, 5])


def test_the_example_plan() -> None:
    """examples/checkout: the error guard by tenant (H(21)) and the latency guard roll back,
    H = 4.645: the whole traffic at α/4.645, the first tenant at α/9.29 (each test was at α/22);
    the abandon guard pauses alone, at α (as before)."""
    plan = PLANS["example"]
    rate = plan.false_rollback_rate
    assert rate / harm_alpha(plan) == pytest.approx(4.6454, abs=1e-4)
    errors = plan.guards[0]
    assert rate / segment_alpha(harm_alpha(plan), errors, 0, 0) == pytest.approx(9.291, abs=1e-3)
    assert harm_alpha(plan, Action.PAUSE) == rate


# --- judged at the position's level ---------------------------------------------------------

#: Evidence of harm (6.72 nats) between the first tenant's threshold (log 729 = 6.59) and the
#: second's (log 1094 = 7.00), for ``ONE_BY_TENANT``.
BETWEEN = RateSample(Tally(20_000, 286), Tally(380_000, 3_800))
WHOLE = RateSample(Tally(200_000, 2_000), Tally(3_800_000, 38_000))


def test_a_segment_is_judged_at_its_position_level() -> None:
    """Two tenants with the same strata: the first to appear (by name, on a tie) is harm, the
    second, at a level a third smaller, is not yet."""
    plan = ONE_BY_TENANT
    guard = plan.guards[0]
    alpha = harm_alpha(plan)
    rates = {
        ("errors", None): [WHOLE],
        ("errors", ("tenant", "b")): [BETWEEN],
        ("errors", ("tenant", "a")): [BETWEEN],
    }
    overall, segments = judge_guard(guard, Observations(rates=rates), 0, alpha, NOW)
    assert overall.verdict is not Verdict.HARM
    first, second = segments
    assert (first.segment, second.segment) == (("tenant", "a"), ("tenant", "b"))
    assert first.harm_evidence == second.harm_evidence
    assert math.log(1 / segment_alpha(alpha, guard, 0, 0)) <= first.harm_evidence
    assert first.harm_evidence < math.log(1 / segment_alpha(alpha, guard, 0, 1))
    assert (first.verdict, second.verdict) == (Verdict.HARM, Verdict.PENDING)


def test_a_whole_unit_is_judged_against_its_history_at_its_position_level() -> None:
    """``unit: tenant``: the second tenant's own ratio and tests take its position's level
    (``unit_segment``'s α), not the whole traffic's."""
    plan = _plan("  - {metric: errors, kind: rate, tolerance: 10%, by: [tenant]}\n", "tenant")
    guard = plan.guards[0]
    alpha = harm_alpha(plan)
    history = RateSample(Tally(), Tally(50_000, 500), 0, 0)
    exposed = RateSample(Tally(50_000, 600), Tally(), 0, 15)
    rates = {
        ("errors", None): [
            RateSample(Tally(), Tally(500_000, 5_000), 0, 0),
            RateSample(Tally(60_000, 620), Tally(440_000, 4_400), 0, 15),
        ],
        ("errors", ("tenant", "a")): [RateSample(Tally(90_000, 900), Tally(), 0, 0)],
        ("errors", ("tenant", "b")): [history, exposed],
    }
    observations = Observations(rates=rates)
    _, (_, second) = judge_guard(guard, observations, 0, alpha, NOW, unit="tenant")
    raw = rates[("errors", ("tenant", "b"))]

    def judged_at(level: float) -> object:
        series, own = unit_segment(raw, rates[("errors", None)], level, True)
        return judge_rate(guard, series, 0, level, ("tenant", "b"), own=own)

    assert second == judged_at(segment_alpha(alpha, guard, 0, 1))
    assert second != judged_at(alpha)


def test_a_units_own_ratio_is_found_at_the_level_asked_whatever_was_asked_before() -> None:
    """A unit's own ratio is kept between calls for the same history: asked at another level,
    or for a guard where lower is worse, it is found again at that level. The full judgement
    once answered with the ratio of the level first asked (the kept ratio's key lacked the
    level): the incremental judgement, which finds it at its own level, then disagreed with it
    (tests/core/judgement/test_incremental.py, in CI)."""
    whole = [
        RateSample(Tally(), Tally(500_000, 5_000), 0, 0),
        RateSample(Tally(), Tally(480_000, 4_700), 0, 15),
        RateSample(Tally(60_000, 620), Tally(440_000, 4_400), 0, 30),
    ]
    raw = [
        RateSample(Tally(), Tally(50_000, 560), 0, 0),
        RateSample(Tally(), Tally(48_000, 520), 0, 15),
        RateSample(Tally(50_000, 600), Tally(), 0, 30),
    ]
    before = [
        RateSample(Tally(50_000, 560), Tally(450_000, 4_440), 0, 0),
        RateSample(Tally(48_000, 520), Tally(432_000, 4_180), 0, 15),
    ]
    found = {}
    for level in (0.01, 0.0001, 0.01):
        for higher in (True, False):
            _, own = unit_segment(raw, whole, level, higher)
            assert own == own_ratio(before, level, higher), (level, higher)
            found[level, higher] = own
    assert found[0.01, True] != found[0.0001, True]


# --- the incremental judgement agrees ---------------------------------------------------------

WINDOW0 = int(NOW.timestamp() // 60)


def _histogram(slow: int, count: int) -> list[int]:
    """``count`` requests, ``slow`` of them in a bucket of their own above the others."""
    counts = [0] * LATENCY_BUCKETS
    counts[20] = count - slow
    counts[24] = slow
    return counts


def _rate(
    window: int, segment: str, exposed: tuple[int, int], baseline: tuple[int, int]
) -> list[Aggregate]:
    at = WINDOW0 + 15 * window
    rows = [Aggregate(0, at, False, segment, "errors", *baseline)]
    if exposed[0]:
        rows.append(Aggregate(0, at, True, segment, "errors", *exposed))
    return rows


def _latency(window: int, segment: str, slow: int) -> list[Aggregate]:
    at = WINDOW0 + 15 * window
    exposed = _histogram(slow, 4_000)
    baseline = _histogram(200, 40_000)
    return [
        Aggregate(0, at, True, segment, "lat", 4_000, 0, exposed),
        Aggregate(0, at, False, segment, "lat", 40_000, 0, baseline),
    ]


#: Evidence of harm (6.30 nats) between the first tenant's threshold and the second's for the
#: plan below (H = H(4) + 0: log 417 = 6.03 and log 625 = 6.44).
TIED = ((20_000, 284), (380_000, 3_800))
#: Batches, tick by tick: tenants appear in several windows, and late ones reorder them (``a``
#: arrives after ``b`` in ``b``'s first window, ``e`` in an earlier window than all, pushing
#: ``c`` out of the three judged).
STREAM: list[list[Aggregate]] = [
    [*_rate(1, "", (200_000, 2_000), (3_800_000, 38_000)), *_rate(1, "tenant=b", *TIED)],
    [*_rate(1, "tenant=a", *TIED), *_latency(1, "", 200), *_latency(1, "region=x", 260)],
    [*_rate(2, "", (100_000, 1_000), (1_900_000, 19_000)), *_rate(2, "tenant=c", *TIED)],
    [*_rate(0, "tenant=e", (0, 0), (30_000, 300)), *_latency(0, "region=y", 300)],
    [*_rate(2, "tenant=e", (20_000, 290), (380_000, 3_800)), *_latency(2, "region=x", 280)],
    [*_rate(3, "tenant=d", *TIED), *_rate(0, "", (0, 0), (3_000_000, 30_000))],
]


@pytest.mark.parametrize("unit", ["user", "tenant"])
def test_the_incremental_judgement_uses_the_same_levels(unit: str) -> None:
    """``RolloutEvidence`` judges each segment at its position's level as ``judge_guards``
    does, bounds included, while late batches move segments from one rank to another (a kept
    segment's level changes with its rank); with ``unit: user`` the tie of ``a`` and ``b`` is
    decided by the level: whichever is first is harm."""
    plan = load_plan(
        f"flag: f\nunit: {unit}\nstratum: 15m\nguards:\n"
        "  - {metric: errors, kind: rate, tolerance: 10%, by: [tenant], max_segments: 3}\n"
        "  - {metric: lat, kind: latency, tolerance: 10%, by: [region], on_regression: pause}\n"
        "stages:\n  - {name: a, audience: {percent: 5}}\n"
    )
    table = AggregateTable()
    evidence = RolloutEvidence(plan, open_minutes=600)
    harmed_by_tick = []
    for index, batch in enumerate(STREAM):
        now = NOW + timedelta(minutes=15 * (index + 2))
        for aggregate in batch:
            table.put(aggregate)
            evidence.put(aggregate)
        assert not evidence.stale
        full = judge_guards(plan, table.observations(plan, 0), 0, now)
        assert evidence.judged(0, now, bounds=True) == full
        harmed_by_tick.append(
            {v.segment[1] for v in full.segment_verdicts if v.verdict is Verdict.HARM and v.segment}
        )
    if unit == "user":
        # b alone is first; a's late batch ties it and goes first by name; then c, e, d.
        assert harmed_by_tick[0] == {"b"}
        assert "a" in harmed_by_tick[1] and "b" not in harmed_by_tick[1]
