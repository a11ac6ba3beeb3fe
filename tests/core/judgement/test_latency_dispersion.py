"""A latency guard's tail test discounted by the dispersion between units, as a rate's is: the
replicates count requests beyond the tail point the SDK reads from its own baseline
(docs/judgement.md, "Clustered units")."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from rollwise.core import load_plan
from rollwise.core.judgement import (
    LATENCY_BUCKETS,
    REPLICATE_WINDOW,
    REPLICATES,
    Aggregate,
    AggregateTable,
    Verdict,
    harm_alpha,
    judge_guard,
    replicate_of,
    replicate_segment,
    replicated_metrics,
    tail_quantiles,
)
from rollwise.core.simulation._simulator import _lognormal_bucket_probabilities
from rollwise.sdk._tails import tail_point

PLAN = load_plan(
    "flag: f\nunit: user\n"
    "guards: [{metric: lat, kind: latency, quantile: 0.95, tolerance: 2%}]\n"
    "stages: [{name: s0, audience: {percent: 20}}]\n"
)
NOW = datetime(2026, 11, 30, tzinfo=UTC)
USERS = 3000
REPLICATE = np.array([replicate_of(f"user-{index}") for index in range(USERS)])
SHAPES = {
    (exposed, slow): _lognormal_bucket_probabilities(
        120.0, 0.5, (3.0 if slow else 1.0) * (scale if exposed else 1.0), 0.0
    )
    for scale in (1.0,)
    for exposed in (True, False)
    for slow in (True, False)
}


def test_the_tail_metrics_and_their_quantiles() -> None:
    """The SDK is told the highest quantile of a metric's guards with a tolerance; a latency
    guard with only a ``max`` (no baseline to compare with) or another source has none."""
    plan = load_plan(
        "flag: f\nunit: user\nguards:\n"
        "  - {metric: lat, kind: latency, quantile: 0.5, tolerance: 10%}\n"
        "  - {metric: lat, kind: latency, quantile: 0.99, tolerance: 20%}\n"
        "  - {metric: slow, kind: latency, quantile: 0.9, max: 300ms}\n"
        "  - {metric: err, kind: rate, tolerance: 10%}\n"
        "stages: [{name: s0, audience: {percent: 20}}]\n"
    )
    assert tail_quantiles(plan) == {"lat": 0.99}
    assert replicated_metrics(plan) == frozenset({"lat", "err"})


def test_the_tail_point_is_the_quantiles_bucket_once_enough_is_seen() -> None:
    histogram = [0] * LATENCY_BUCKETS
    histogram[10] = 380
    assert tail_point(histogram, 0.95) is None  # 400 needed for a p95
    histogram[50] = 19
    histogram[60] = 1
    assert tail_point(histogram, 0.95) == 10  # 380 of 400 at or below bucket 10
    histogram[50] = 40
    assert tail_point(histogram, 0.95) == 50


def _users_run(seed: int, replicates: bool) -> tuple[bool, str]:
    """A day of 15-minute windows from 3,000 users, 20 % exposed: requests per user
    Pareto(1.5), 3 % of clients three times slower on both sides: an A/A for a p95 guard with
    a 2 % tolerance. Judged every two hours; whether it was ever judged harm."""
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.5, USERS) + 1
    rates = 400 * weights / weights.sum()
    exposed = rng.random(USERS) < 0.2
    slow = rng.random(USERS) < 0.03
    table = AggregateTable()
    totals = {side: np.zeros((REPLICATES, 2), dtype=np.int64) for side in (True, False)}
    seen = np.zeros(LATENCY_BUCKETS, dtype=np.int64)  # the SDK's baseline in the stage
    verdict = None
    for window in range(96):
        point = tail_point(seen.tolist(), 0.95)
        n = rng.poisson(rates)
        for side in (True, False):
            histogram = np.zeros(LATENCY_BUCKETS, dtype=np.int64)
            beyond = np.zeros(USERS, dtype=np.int64)
            for kind in (True, False):
                members = (exposed == side) & (slow == kind)
                shape = SHAPES[side, kind]
                # Each user's requests beyond the point, then each part's buckets given its count.
                cut = -1 if point is None else point
                beyond[members] = rng.binomial(n[members], max(0.0, 1 - shape[: cut + 1].sum()))
                above = int(beyond[members].sum())
                below = int(n[members].sum()) - above
                if below:
                    histogram[: cut + 1] += rng.multinomial(
                        below, shape[: cut + 1] / shape[: cut + 1].sum()
                    )
                if above:
                    histogram[cut + 1 :] += rng.multinomial(
                        above, shape[cut + 1 :] / shape[cut + 1 :].sum()
                    )
            table.put(
                Aggregate(
                    0, window * 15, side, "", "lat", int(histogram.sum()), 0, histogram.tolist()
                )
            )
            if not side:
                seen += histogram
            if not replicates or point is None:
                continue
            members = exposed == side
            totals[side][:, 0] += np.bincount(REPLICATE[members], n[members], REPLICATES).astype(
                np.int64
            )
            totals[side][:, 1] += np.bincount(
                REPLICATE[members], beyond[members], REPLICATES
            ).astype(np.int64)
            for k, (count, slower) in enumerate(totals[side].tolist()):
                if count:
                    segment = replicate_segment(k)
                    table.put(Aggregate(0, REPLICATE_WINDOW, side, segment, "lat", count, slower))
        if window % 8 == 7:
            verdict, _ = judge_guard(
                PLAN.guards[0], table.observations(PLAN, 0), 0, harm_alpha(PLAN), NOW, bounds=False
            )
            if verdict.verdict is Verdict.HARM:
                return True, verdict.sentence
    assert verdict is not None
    return False, verdict.sentence


def test_an_aa_with_heavy_users_and_slow_clients_is_not_judged_harm_once_units_are_counted() -> (
    None
):
    """Issue 9 (6), for latency: a tail test on requests judged as independent finds harm in
    such A/As far above α; with the replicates, φ discounts it and (nearly) none is judged
    harm. Both sides are asserted, so the test fails if the world stops showing the defect."""
    seeds = range(40)
    request_level = sum(_users_run(seed, replicates=False)[0] for seed in seeds)
    with_units = [_users_run(seed, replicates=True) for seed in seeds]
    assert request_level >= 3, request_level  # 5 of 40 when written
    assert sum(harmed for harmed, _ in with_units) <= 1
    assert any("units differ (φ = " in sentence for _, sentence in with_units)
