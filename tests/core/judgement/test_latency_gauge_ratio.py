"""Latency guards (quantile confidence sequences), gauges, sample ratio and segment guards."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np

from rollwise.core import load_plan
from rollwise.core.judgement import (
    LATENCY_BUCKETS,
    GaugeReading,
    LatencySample,
    Observations,
    RateSample,
    Tally,
    Verdict,
    judge_gauge,
    judge_guard,
    judge_latency,
    quantile_bounds,
    sample_ratio_log_evidence,
)
from rollwise.core.simulation._simulator import _lognormal_bucket_probabilities

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
BASE = _lognormal_bucket_probabilities(120.0, 0.5, 1.0, 0.0)
SLOWER = _lognormal_bucket_probabilities(120.0, 0.5, 1.3, 0.0)
FASTER = _lognormal_bucket_probabilities(120.0, 0.5, 0.95, 0.0)


def _plan_guard(guard: str):  # type: ignore[no-untyped-def]
    plan = load_plan(
        f"flag: f\nunit: user\nguards: [{guard}]\nstages: [{{name: a, audience: {{percent: 5}}}}]\n"
    )
    return plan.guards[0]


def test_quantile_bounds_cover_the_true_p95_at_every_look() -> None:
    """Over 300 runs looked at 60 times each, the true p95 (120 ms) leaves the 95 % interval
    in at most 5 % + 3 SE of the runs."""
    misses = 0
    runs = 300
    for stream in np.random.SeedSequence(5).spawn(runs):
        rng = np.random.default_rng(stream)
        counts = np.zeros(LATENCY_BUCKETS, dtype=np.int64)
        for _ in range(60):
            counts += rng.multinomial(200, BASE)
            lower, upper = quantile_bounds(counts.tolist(), 0.95, math.log(2 / 0.05))
            if not lower <= 120.0 <= upper * 1.0001:
                misses += 1
                break
    assert misses / runs <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs)


def _latency_runs(exposed_probabilities: np.ndarray, runs: int, seed: int) -> tuple[float, float]:
    """(share of runs judged harm, mean exposed samples at harm) over 100 looks, ten looks to
    a window (the stratum the store keeps)."""
    guard = _plan_guard("{metric: l, kind: latency, quantile: 0.95, tolerance: 10%}")
    harmed, needed = 0, []
    for stream in np.random.SeedSequence(seed).spawn(runs):
        rng = np.random.default_rng(stream)
        windows: list[LatencySample] = []
        exposed = np.zeros(LATENCY_BUCKETS, dtype=np.int64)
        baseline = np.zeros(LATENCY_BUCKETS, dtype=np.int64)
        for look in range(100):
            if look % 10 == 0:
                exposed[:] = 0
                baseline[:] = 0
                windows.append(LatencySample())
            exposed += rng.multinomial(100, exposed_probabilities)
            baseline += rng.multinomial(1900, BASE)
            windows[-1] = LatencySample(
                tuple(exposed.tolist()), tuple(baseline.tolist()), window=look // 10
            )
            if judge_latency(guard, windows, 0, 0.01).verdict is Verdict.HARM:
                harmed += 1
                needed.append(100 * (look + 1))
                break
    return harmed / runs, (sum(needed) / len(needed) if needed else math.inf)


def test_latency_30_percent_worse_is_caught() -> None:
    """p95 30 % worse with a 10 % tolerance: harm in ≥ 95 % of runs within 10,000 samples."""
    share, _ = _latency_runs(SLOWER, 100, seed=9)
    assert share >= 0.95


def test_latency_unchanged_or_better_is_not_harm() -> None:
    """Unchanged, or 5 % faster: no run judged harm (α = 1 %, 100 runs each)."""
    assert _latency_runs(BASE, 100, seed=10)[0] == 0.0
    assert _latency_runs(FASTER, 100, seed=11)[0] == 0.0


def test_gauge_needs_consecutive_breaches_and_growth_counts() -> None:
    """A gauge is harm after `breaches` readings over the limit in a row; growth per minute
    is judged against a reading at least a minute older."""
    guard = _plan_guard("{metric: q, kind: gauge, max: 1000, breaches: 3}")
    series = [GaugeReading(NOW + timedelta(minutes=i), v) for i, v in enumerate([900, 1200, 1300])]
    assert judge_gauge(guard, series, NOW + timedelta(minutes=5)).verdict is Verdict.PENDING
    series.append(GaugeReading(NOW + timedelta(minutes=3), 1400))
    assert judge_gauge(guard, series, NOW + timedelta(minutes=5)).verdict is Verdict.HARM
    assert judge_gauge(guard, series[:1], NOW + timedelta(minutes=5)).verdict is Verdict.SAFE
    assert judge_gauge(guard, [], NOW).verdict is Verdict.PENDING
    growth = _plan_guard("{metric: q, kind: gauge, max_growth: 50/min, breaches: 2}")
    rising = [GaugeReading(NOW + timedelta(minutes=i), 100.0 * i) for i in range(4)]
    assert judge_gauge(growth, rising, NOW + timedelta(minutes=5)).verdict is Verdict.HARM
    flat = [GaugeReading(NOW + timedelta(minutes=i), 100.0 + i) for i in range(4)]
    assert judge_gauge(growth, flat, NOW + timedelta(minutes=5)).verdict is Verdict.SAFE


def test_sample_ratio_mismatch_is_found_and_a_match_is_not() -> None:
    """4.0 % exposed where 5 % was assigned, over 40,000 units, is a mismatch (e ≥ 1,000);
    the assigned share drawn binomially never is, in 200 draws."""
    assert sample_ratio_log_evidence(1600, 38_400, 0.05) > math.log(1000)
    rng = np.random.default_rng(1)
    for _ in range(200):
        exposed = int(rng.binomial(40_000, 0.05))
        assert sample_ratio_log_evidence(exposed, 40_000 - exposed, 0.05) < math.log(1000)


def test_a_regression_in_one_tenant_is_caught_by_its_segment() -> None:
    """Pooled the change equals the tolerance (pending); split by tenant, globex is harm."""
    plan = load_plan(
        "flag: f\nunit: user\nguards: [{metric: e, kind: rate, tolerance: 10%, by: [tenant]}]\n"
        "stages: [{name: a, audience: {percent: 5}}]\n"
    )
    guard = plan.guards[0]
    globex = RateSample(Tally(10_000, 200), Tally(190_000, 1900))
    others = RateSample(Tally(90_000, 900), Tally(1_710_000, 17_100))
    whole = RateSample(globex.exposed + others.exposed, globex.baseline + others.baseline)
    observations = Observations(
        rates={
            ("e", None): [whole],
            ("e", ("tenant", "globex")): [globex],
            ("e", ("tenant", "acme")): [others],
        }
    )
    overall, segments = judge_guard(guard, observations, 0, 0.01 / 21, NOW)
    assert overall.verdict is not Verdict.HARM
    verdicts = {v.segment: v.verdict for v in segments}
    assert verdicts[("tenant", "globex")] is Verdict.HARM
    assert verdicts[("tenant", "acme")] is not Verdict.HARM
