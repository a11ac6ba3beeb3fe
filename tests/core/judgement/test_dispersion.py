"""The dispersion between units: replicates as the SDK ships them, φ from their spread, and the
rate tests' evidence divided by it (docs/judgement.md, "Clustered units")."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from rollwise.core import load_plan
from rollwise.core.judgement import (
    REPLICATE_WINDOW,
    REPLICATES,
    Aggregate,
    AggregateTable,
    Verdict,
    harm_alpha,
    judge_guard,
    parse_replicate,
    replicate_of,
    replicate_segment,
)
from rollwise.core.judgement._dispersion import Replicates, dispersion, side_dispersion

PLAN = load_plan(
    "flag: f\nunit: user\nguards: [{metric: m, kind: rate, tolerance: 10%}]\n"
    "stages: [{name: s0, audience: {percent: 20}}]\n"
)
NOW = datetime(2026, 11, 30, tzinfo=UTC)
USERS = 3000
REPLICATE = np.array([replicate_of(f"user-{index}") for index in range(USERS)])


def test_replicate_segments_round_trip_and_refuse_what_is_not_one() -> None:
    assert [parse_replicate(replicate_segment(k)) for k in range(REPLICATES)] == list(
        range(REPLICATES)
    )
    for text in (
        "~replicate=64", "~replicate=-1", "~replicate=", "~replicate=1x", "tenant=3",
        "~replicate=07", "~replicate=\u00b2", "~replicate=\u0661", "~replicate=100",
    ):  # fmt: skip
        assert parse_replicate(text) is None
    # CRC-32 of the UTF-8 text, as docs/api.md tells another language's SDK to compute it.
    assert replicate_of("user-1") == 2116437524 % 64 == 20
    assert replicate_of("acme") == 96778814 % 64 == 62
    counts = np.bincount(REPLICATE, minlength=REPLICATES)
    assert counts.min() > 0.5 * USERS / REPLICATES  # spread over every replicate


def test_independent_requests_give_a_dispersion_near_one() -> None:
    """Requests split at random over the replicates (each its own unit): φ̂ averages 1 (its
    expectation) and max(1, φ̂), what the tests use, stays within 1.15 on average."""
    rng = np.random.default_rng(7)
    estimates = []
    for _ in range(400):
        n = rng.multinomial(50_000, [1 / REPLICATES] * REPLICATES)
        x = rng.binomial(n, 0.01)
        found = side_dispersion(list(zip(n.tolist(), x.tolist(), strict=True)))
        assert found is not None
        estimates.append(found[0])
    assert 0.95 < float(np.mean(estimates)) < 1.05
    assert float(np.mean(np.maximum(estimates, 1.0))) < 1.15


def test_a_side_with_one_replicate_or_no_events_has_no_estimate() -> None:
    one = [(0, 0)] * REPLICATES
    one[3] = (1000, 10)
    assert side_dispersion(one) is None
    assert side_dispersion([(100, 0)] * REPLICATES) is None
    assert dispersion(one, one).phi == 1.0
    assert not dispersion(one, one).applied


def test_replicates_replace_a_key_and_add_stages_up() -> None:
    replicates = Replicates()
    for k in range(REPLICATES):
        replicates.put("m", 0, True, k, 100, 1)
        replicates.put("m", 0, False, k, 1000, 10)
    first = replicates.of("m")
    replicates.put("m", 0, True, 0, 100, 1)  # the same counts again: replaced, not added
    assert replicates.of("m") == first
    replicates.put("m", 1, True, 0, 100, 60)  # stage 1 adds to replicate 0
    assert replicates.of("m").exposed is not None
    assert replicates.of("m").phi > 10
    assert replicates.of("other") == dispersion([], [])


def _users_run(seed: int, replicates: bool) -> tuple[bool, str]:
    """A day of 15-minute windows from 3,000 users, 20 % exposed: requests per user
    Pareto(1.5), 3 % of clients failing half their requests on both sides, everyone else 1 %:
    an A/A. Judged every two hours and at the end; whether it was ever judged harm."""
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.5, USERS) + 1
    rates = 400 * weights / weights.sum()
    exposed = rng.random(USERS) < 0.2
    failing = np.where(rng.random(USERS) < 0.03, 0.5, 0.01)
    table = AggregateTable()
    totals = {side: np.zeros((REPLICATES, 2), dtype=np.int64) for side in (True, False)}
    guard = PLAN.guards[0]
    verdict = None
    for window in range(96):
        n = rng.poisson(rates)
        x = rng.binomial(n, failing)
        for side, members in ((True, exposed), (False, ~exposed)):
            requests, events = int(n[members].sum()), int(x[members].sum())
            table.put(Aggregate(0, window * 15, side, "", "m", requests, events))
            if not replicates:
                continue
            totals[side][:, 0] += np.bincount(REPLICATE[members], n[members], REPLICATES).astype(
                np.int64
            )
            totals[side][:, 1] += np.bincount(REPLICATE[members], x[members], REPLICATES).astype(
                np.int64
            )
            for k, (count, failed) in enumerate(totals[side].tolist()):
                if count:
                    segment = replicate_segment(k)
                    table.put(Aggregate(0, REPLICATE_WINDOW, side, segment, "m", count, failed))
        if window % 8 == 7:
            verdict, _ = judge_guard(
                guard, table.observations(PLAN, 0), 0, harm_alpha(PLAN), NOW, bounds=False
            )
            if verdict.verdict is Verdict.HARM:
                return True, verdict.sentence
    assert verdict is not None
    return False, verdict.sentence


def test_an_aa_with_heavy_and_broken_users_is_not_judged_harm_once_units_are_counted() -> None:
    """Issue 9 (6): requests judged as independent roll back such A/As far above α; with the
    replicates, φ discounts the evidence and (nearly) none is judged harm. Both sides of this
    are asserted, so the test fails if the world stops showing the defect."""
    seeds = range(40)
    request_level = sum(_users_run(seed, replicates=False)[0] for seed in seeds)
    with_units = [_users_run(seed, replicates=True) for seed in seeds]
    assert request_level >= 4, request_level  # 8 of 40 when written
    assert sum(harmed for harmed, _ in with_units) <= 1
    assert any("units differ (φ = " in sentence for _, sentence in with_units)


@pytest.mark.parametrize("effect", [2.0])
def test_a_real_regression_is_still_caught(effect: float) -> None:
    """Every exposed request fails twice as often (1 % → 2 %), with requests independent and
    the replicates shipped: φ stays near 1 and the guard is judged harm."""
    rng = np.random.default_rng(3)
    table = AggregateTable()
    totals = {side: np.zeros((REPLICATES, 2), dtype=np.int64) for side in (True, False)}
    guard = PLAN.guards[0]
    for window in range(8):
        for side, requests, rate in ((True, 8000, 0.01 * effect), (False, 32000, 0.01)):
            n = rng.multinomial(requests, [1 / REPLICATES] * REPLICATES)
            x = rng.binomial(n, rate)
            table.put(Aggregate(0, window * 15, side, "", "m", int(n.sum()), int(x.sum())))
            totals[side] += np.stack([n, x], axis=1)
            for k, (count, failed) in enumerate(totals[side].tolist()):
                table.put(
                    Aggregate(0, REPLICATE_WINDOW, side, replicate_segment(k), "m", count, failed)
                )
    observations = table.observations(PLAN, 0)
    assert observations.dispersion["m"].phi < 1.5
    verdict, _ = judge_guard(guard, observations, 0, harm_alpha(PLAN), NOW)
    assert verdict.verdict is Verdict.HARM
    assert verdict.dispersion == observations.dispersion["m"].phi


def test_replicate_aggregates_are_never_strata() -> None:
    """A replicate aggregate neither makes a stratum nor counts as exposed samples."""
    table = AggregateTable()
    table.put(Aggregate(0, 60, True, "", "m", 100, 1))
    table.put(Aggregate(0, REPLICATE_WINDOW, True, replicate_segment(5), "m", 100, 1))
    table.put(Aggregate(0, REPLICATE_WINDOW, True, "~unknown=1", "m", 100, 1))
    observations = table.observations(PLAN, 0)
    assert list(observations.rates) == [("m", None)]
    assert [s.window for s in observations.rates[("m", None)]] == [60]
    assert observations.samples == [100]
