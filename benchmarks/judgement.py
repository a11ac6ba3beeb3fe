#!/usr/bin/env python3
"""Guard judgement under continuous monitoring: rollwise against three comparison judges.

Every run draws one simulated traffic stream (fixed seeds) and feeds the SAME stream to four
judges, each looking at the data at every tick and stopping at its first rollback; the run ends
at the scenario's horizon. For each judge and scenario we report the share of runs rolled back
(a false-rollback rate when the change is within tolerance, the power when it is not) with a
Wilson 95 % interval, and the exposed requests seen before the rollback (mean ± 1.96·sd/√n over
the runs that rolled back, and the 90th percentile).

Judges
------
rollwise
    The real code, not a reimplementation: ``judge_rate`` / ``judge_guard`` / ``judge_latency``
    from ``rollwise.core.judgement``, on a ``Plan`` parsed with ``load_plan``, at
    ``harm_alpha(plan)`` (the plan's false_rollback_rate of 1 %, Bonferroni over guards and
    segments), with cumulative counts of one stage. A HARM verdict is a rollback.
argo-style (Argo Rollouts / Flagger)
    At each check (every tick), the exposed side's metric over the last interval only (that
    tick's counts) against an absolute threshold: error rate > 1.5 % (1.5 × the expected 1 %),
    or p95 latency > 150 ms (1.25 × the known 120 ms). A check with fewer than 20 exposed
    requests is skipped (neither passes nor fails). Rollback after 3 consecutive failing checks.
    (Argo's own ``failureLimit`` counts failures in total, not in a row; "in a row" is the more
    lenient reading, so this judge raises fewer false alarms than a literal Argo template.)
kayenta-style
    At each interval, a two-sided Mann-Whitney U test of the exposed against the baseline
    per-request values over the growing window since the start, at 98 % confidence (p < 0.02),
    re-run every interval; rollback when significant AND the exposed side is worse by more than
    the tolerance (mean rate > baseline × 1.1; median latency > baseline median × 1.1, read
    from the histograms). U is computed in closed form from counts (the 2×2 table for rates,
    tied bucket groups for histograms) with the normal approximation, tie correction and
    continuity correction, as ``scipy.stats.mannwhitneyu(method="asymptotic")`` does.
naive fixed-horizon
    A fixed-sample test re-run at every tick on cumulative counts, to show what that does to the
    false-rollback rate. Rates: one-sided two-proportion z-test of H0 p_T ≤ 1.1 p_C, rollback
    when z > 2.326 (α = 0.01). Latency: one-sided binomial z-test of H0 "at most 5 % of exposed
    requests are slower than 1.1 × the baseline's observed p95" (the baseline p95 treated as
    known), rollback when z > 2.326.

For the tenant scenario the three comparison judges see the pooled traffic, as those tools do;
rollwise judges the guard split ``by: [tenant]`` (whole traffic + one test per tenant).

Scenarios
---------
Exposed share 5 % of requests, error rate 1 %, p95 latency 120 ms (log-normal, σ = 0.5),
tolerance 10 % relative, false_rollback_rate 1 %. rate_aa, rate_aa_boundary (exposed at exactly
the tolerance), rate_2x, tenant_2x (one tenant with 10 % of the traffic doubles its error rate),
latency_aa, latency_better (×0.95), latency_30pct (×1.3). The Wald SPRT reference for the
doubled rate is computed, not hard-coded (see ``sprt_exposed_requests``).

Run i of every scenario draws from ``np.random.SeedSequence(seed).spawn(runs)[i]`` (common
random numbers across scenarios). Prints a table per scenario and writes JSON to
benchmarks/results/judgement.json.

    python benchmarks/judgement.py [--runs N] [--quick] [--seed S] [--workers 2]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
from scipy.special import ndtr

from rollwise.core import load_plan
from rollwise.core._plan import Guard, Plan
from rollwise.core.judgement import (
    LATENCY_BOUNDARIES_MS,
    LATENCY_BUCKETS,
    LatencySample,
    Observations,
    RateSample,
    Tally,
    Verdict,
    harm_alpha,
    judge_guard,
    judge_latency,
    judge_rate,
)
from rollwise.core.simulation._simulator import _lognormal_bucket_probabilities

HERE = Path(__file__).resolve().parent

# --- the simulated world -----------------------------------------------------------------------

EXPOSED_SHARE = 0.05
BASE_RATE = 0.01
P95_MS = 120.0
SIGMA = 0.5
TOLERANCE = 0.10
FALSE_ROLLBACK_RATE = 0.01
Z95 = 1.959963984540054

# --- comparison judges' settings ---------------------------------------------------------------

ARGO_FAILURE_LIMIT = 3
ARGO_RATE_THRESHOLD = 1.5 * BASE_RATE
ARGO_LATENCY_THRESHOLD_MS = 1.25 * P95_MS
ARGO_MIN_REQUESTS = 20
KAYENTA_ALPHA = 0.02
NAIVE_ALPHA = 0.01
NAIVE_Z = NormalDist().inv_cdf(1 - NAIVE_ALPHA)  # 2.326

# --- the reference and the targets -------------------------------------------------------------

SPRT_THETA0 = 1 + TOLERANCE
SPRT_THETA1 = 2.0
SPRT_BETA = 0.05
RATE_2X_MEAN_FACTOR = 1.5  # target: mean ≤ 1.5 × the SPRT reference
TENANT_MEAN_TARGET = 38_000
POWER_TARGET = 0.95

JUDGES = ("rollwise", "argo-style", "kayenta-style", "naive fixed-horizon")
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

TENANTS = ("globex", *(f"tenant-{index:02d}" for index in range(1, 20)))
GLOBEX_SHARE = 0.10
TENANT_SHARES = (GLOBEX_SHARE, *((1 - GLOBEX_SHARE) / 19 for _ in range(19)))

_PLAN_HEAD = """
flag: new-thing
unit: user
variant: on
false_rollback_rate: 1%
stages:
  - name: five-percent
    audience: {percent: 5}
guards:
"""
RATE_PLAN = (
    _PLAN_HEAD
    + """
  - metric: errors
    kind: rate
    worse: higher
    tolerance: 10%
    on_regression: rollback
"""
)
TENANT_PLAN = (
    _PLAN_HEAD
    + """
  - metric: errors
    kind: rate
    worse: higher
    tolerance: 10%
    by: [tenant]
    max_segments: 20
    on_regression: rollback
"""
)
LATENCY_PLAN = (
    _PLAN_HEAD
    + """
  - metric: latency
    kind: latency
    quantile: p95
    tolerance: 10%
    on_regression: rollback
"""
)


@dataclass(frozen=True)
class Scenario:
    name: str
    kind: str  # rate, tenant or latency
    description: str
    factor: float  # exposed error-rate multiple, or exposed latency scale
    horizon_exposed: int  # expected exposed requests at the horizon (all tenants)
    requests_per_tick: int
    regression: bool  # whether the change is worse than tolerated (power, not false rollbacks)

    @property
    def exposed_per_tick(self) -> float:
        return self.requests_per_tick * EXPOSED_SHARE

    @property
    def ticks(self) -> int:
        return round(self.horizon_exposed / self.exposed_per_tick)


SCENARIOS = (
    Scenario("rate_aa", "rate", "error rate 1% vs 1% (no change)", 1.0, 200_000, 1_000, False),
    Scenario(
        "rate_aa_boundary",
        "rate",
        "exposed error rate 1.1% (exactly at the 10% tolerance)",
        1.1,
        200_000,
        1_000,
        False,
    ),
    Scenario("rate_2x", "rate", "exposed error rate 1% -> 2%", 2.0, 200_000, 1_000, True),
    Scenario(
        "tenant_2x",
        "tenant",
        "20 tenants; globex (10% of traffic) 1% -> 2% on its exposed side only; pooled change "
        "= the tolerance",
        2.0,
        400_000,
        4_000,
        True,
    ),
    Scenario("latency_aa", "latency", "latency unchanged (p95 120 ms)", 1.0, 100_000, 8_000, False),
    Scenario(
        "latency_better",
        "latency",
        "exposed latency x0.95 (better)",
        0.95,
        100_000,
        8_000,
        False,
    ),
    Scenario(
        "latency_30pct",
        "latency",
        "exposed latency x1.3 (p95 30% worse)",
        1.3,
        100_000,
        8_000,
        True,
    ),
)
BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


# --- the Wald SPRT reference -------------------------------------------------------------------


def sprt_exposed_requests(alpha: float, share: float = EXPOSED_SHARE) -> dict[str, float]:
    """Wald's expected sample size of the SPRT of θ0 = 1.1 against θ1 = 2, in exposed requests.

    Per failure event (either side), x_T | x ~ Bernoulli(p(θ)) with p(θ) = θr / (θr + 1) and
    r = share / (1 - share). Under θ1, E[N] events = [(1-β) ln((1-β)/α) + β ln(β/(1-α))] / KL,
    KL = KL(Bern(p1) || Bern(p0)); exposed requests = E[N] / events per exposed request (both
    sides' failures per exposed request under θ1).
    """
    r = share / (1 - share)

    def p(theta: float) -> float:
        return theta * r / (theta * r + 1)

    p0, p1 = p(SPRT_THETA0), p(SPRT_THETA1)
    kl = p1 * math.log(p1 / p0) + (1 - p1) * math.log((1 - p1) / (1 - p0))
    beta = SPRT_BETA
    events = ((1 - beta) * math.log((1 - beta) / alpha) + beta * math.log(beta / (1 - alpha))) / kl
    per_exposed = (share * BASE_RATE * SPRT_THETA1 + (1 - share) * BASE_RATE) / share
    return {
        "alpha": alpha,
        "beta": beta,
        "theta0": SPRT_THETA0,
        "theta1": SPRT_THETA1,
        "kl_per_event": kl,
        "expected_events": events,
        "events_per_exposed_request": per_exposed,
        "exposed_requests": events / per_exposed,
    }


def sprt_references() -> dict[str, dict[str, float]]:
    whole = sprt_exposed_requests(FALSE_ROLLBACK_RATE)
    segment = sprt_exposed_requests(FALSE_ROLLBACK_RATE / 20)
    # Exposed requests of the one tenant, scaled to exposed requests over all tenants.
    segment["globex_exposed_requests"] = segment["exposed_requests"]
    segment["exposed_requests"] = segment["exposed_requests"] / GLOBEX_SHARE
    return {"rate_2x": whole, "tenant_2x": segment}


# --- closed-form statistics for the comparison judges -----------------------------------------

_UPPER = np.array([*LATENCY_BOUNDARIES_MS, math.inf])
_LOWER = np.array([0.0, *LATENCY_BOUNDARIES_MS])
_FIRST_MS = LATENCY_BOUNDARIES_MS[0]
_GROWTH = LATENCY_BOUNDARIES_MS[1] / LATENCY_BOUNDARIES_MS[0]


def mann_whitney_p(exposed: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Two-sided Mann-Whitney p-values from counts per ordered value, one row per tick.

    ``exposed`` and ``baseline`` are (ticks, values) counts; equal values are one tie group
    with the average rank. Normal approximation with tie and continuity correction (scipy's
    asymptotic method). A row without variance (e.g. no events yet) gets p = 1.
    """
    a = exposed.astype(np.float64)
    b = baseline.astype(np.float64)
    c = a + b
    n1, n2 = a.sum(axis=1), b.sum(axis=1)
    n = n1 + n2
    ranks = np.cumsum(c, axis=1) - c + (c + 1) / 2
    u1 = (a * ranks).sum(axis=1) - n1 * (n1 + 1) / 2
    ties = (c**3 - c).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
        z = (np.abs(u1 - n1 * n2 / 2) - 0.5) / np.sqrt(variance)
        p = np.minimum(1.0, 2 * ndtr(-z))
    result: np.ndarray = np.where((variance > 0) & np.isfinite(z), p, 1.0)
    return result


def histogram_quantiles(counts: np.ndarray, quantile: float) -> np.ndarray:
    """``rollwise``'s ``histogram_quantile`` for every row at once (NaN for an empty row)."""
    total = counts.sum(axis=1)
    cumulative = np.cumsum(counts, axis=1)
    bucket = np.argmax(cumulative >= quantile * total[:, None], axis=1)
    low, high = _LOWER[bucket], _UPPER[bucket]
    with np.errstate(invalid="ignore"):
        middle = np.sqrt(np.maximum(low, _FIRST_MS / _GROWTH) * high)
    value = np.where(np.isinf(high), low, middle)
    result: np.ndarray = np.where(total > 0, value, np.nan)
    return result


def first_true(mask: np.ndarray) -> int:
    index = int(np.argmax(mask))
    return index if mask.size and mask[index] else -1


def first_consecutive(fail: np.ndarray, skip: np.ndarray, limit: int = ARGO_FAILURE_LIMIT) -> int:
    """The tick of the ``limit``-th failing check in a row (skipped checks do not count)."""
    checked = np.flatnonzero(~skip)
    failed = fail[checked].astype(np.int64)
    if failed.size < limit:
        return -1
    runs = np.convolve(failed, np.ones(limit, dtype=np.int64), mode="valid")
    hits = np.flatnonzero(runs == limit)
    return int(checked[hits[0] + limit - 1]) if hits.size else -1


# --- the comparison judges, on one run's stream ------------------------------------------------


def argo_rate(n_t: np.ndarray, x_t: np.ndarray) -> int:
    """Argo/Flagger-style: the last interval's exposed error rate against 1.5 %."""
    skip = n_t < ARGO_MIN_REQUESTS
    with np.errstate(divide="ignore", invalid="ignore"):
        fail = x_t / np.maximum(n_t, 1) > ARGO_RATE_THRESHOLD
    return first_consecutive(fail & ~skip, skip)


def kayenta_rate(cn_t: np.ndarray, cx_t: np.ndarray, cn_c: np.ndarray, cx_c: np.ndarray) -> int:
    """Kayenta-style: Mann-Whitney on the growing window, p < 0.02 and worse than tolerated."""
    exposed = np.stack([cn_t - cx_t, cx_t], axis=1)
    baseline = np.stack([cn_c - cx_c, cx_c], axis=1)
    p = mann_whitney_p(exposed, baseline)
    worse = cx_t * cn_c > (1 + TOLERANCE) * cx_c * cn_t  # exposed mean > baseline mean × 1.1
    return first_true((p < KAYENTA_ALPHA) & worse)


def naive_rate(cn_t: np.ndarray, cx_t: np.ndarray, cn_c: np.ndarray, cx_c: np.ndarray) -> int:
    """Fixed-horizon z-test of H0 p_T ≤ 1.1 p_C at α = 0.01, re-run on every tick."""
    theta0 = 1 + TOLERANCE
    with np.errstate(divide="ignore", invalid="ignore"):
        p_t = cx_t / cn_t
        p_c = cx_c / cn_c
        se = np.sqrt(p_t * (1 - p_t) / cn_t + theta0**2 * p_c * (1 - p_c) / cn_c)
        z = (p_t - theta0 * p_c) / se
    return first_true(np.nan_to_num(z, nan=-np.inf, posinf=np.inf) > NAIVE_Z)


def argo_latency(e_tick: np.ndarray) -> int:
    """Argo/Flagger-style: the last interval's exposed p95 against 150 ms."""
    n_t = e_tick.sum(axis=1)
    skip = n_t < ARGO_MIN_REQUESTS
    fail = np.nan_to_num(histogram_quantiles(e_tick, 0.95)) > ARGO_LATENCY_THRESHOLD_MS
    return first_consecutive(fail & ~skip, skip)


def kayenta_latency(e_cum: np.ndarray, c_cum: np.ndarray) -> int:
    """Kayenta-style: Mann-Whitney on the histograms, p < 0.02 and median worse than 1.1×."""
    p = mann_whitney_p(e_cum, c_cum)
    worse = np.nan_to_num(histogram_quantiles(e_cum, 0.5)) > (1 + TOLERANCE) * np.nan_to_num(
        histogram_quantiles(c_cum, 0.5), nan=np.inf
    )
    return first_true((p < KAYENTA_ALPHA) & worse)


def naive_latency(e_cum: np.ndarray, c_cum: np.ndarray) -> int:
    """Fixed-horizon test that more than 5 % of exposed requests exceed 1.1 × baseline p95.

    Only buckets entirely above the bound count as slower (conservative at the edge).
    """
    bound = (1 + TOLERANCE) * histogram_quantiles(c_cum, 0.95)
    first_slow = np.searchsorted(_LOWER, np.nan_to_num(bound, nan=np.inf), side="left")
    cumulative = np.concatenate(
        [np.zeros((e_cum.shape[0], 1), dtype=e_cum.dtype), np.cumsum(e_cum, axis=1)], axis=1
    )
    n_t = cumulative[:, -1].astype(np.float64)
    fast = np.take_along_axis(cumulative, first_slow[:, None], axis=1)[:, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        tail = (n_t - fast) / n_t
        z = (tail - 0.05) / np.sqrt(0.05 * 0.95 / n_t)
    return first_true(np.nan_to_num(z, nan=-np.inf) > NAIVE_Z)


# --- rollwise, on one run's stream -------------------------------------------------------------


@functools.cache
def plans() -> dict[str, Plan]:
    return {
        "rate": load_plan(RATE_PLAN, "benchmark rate plan"),
        "tenant": load_plan(TENANT_PLAN, "benchmark tenant plan"),
        "latency": load_plan(LATENCY_PLAN, "benchmark latency plan"),
    }


def rollwise_rate(guard: Guard, alpha: float, cumulative: Sequence[list[int]]) -> int:
    cn_t, cx_t, cn_c, cx_c = cumulative
    for tick in range(len(cn_t)):
        sample = RateSample(Tally(cn_t[tick], cx_t[tick]), Tally(cn_c[tick], cx_c[tick]))
        verdict = judge_rate(guard, [sample], 0, alpha, None, bounds=False)
        if verdict.verdict is Verdict.HARM:
            return tick
    return -1


def rollwise_tenant(
    guard: Guard, alpha: float, cumulative: Sequence[np.ndarray], tenants: Sequence[str]
) -> tuple[int, str]:
    """What ``decide`` does for the guard: ``judge_guard`` on the whole and every tenant.

    Returns the rollback tick (-1: none) and what triggered it ("whole" or the tenant)."""
    cn_t, cx_t, cn_c, cx_c = (array.tolist() for array in cumulative)
    totals = [array.sum(axis=1).tolist() for array in cumulative]
    metric = guard.metric
    for tick in range(len(cn_t)):
        rates = {
            (metric, None): [
                RateSample(
                    Tally(totals[0][tick], totals[1][tick]),
                    Tally(totals[2][tick], totals[3][tick]),
                )
            ]
        }
        row_nt, row_xt, row_nc, row_xc = cn_t[tick], cx_t[tick], cn_c[tick], cx_c[tick]
        for index, tenant in enumerate(tenants):
            rates[(metric, ("tenant", tenant))] = [
                RateSample(Tally(row_nt[index], row_xt[index]), Tally(row_nc[index], row_xc[index]))
            ]
        overall, segments = judge_guard(
            guard, Observations(rates=rates), 0, alpha, NOW, bounds=False
        )
        harmed = [v for v in (overall, *segments) if v.verdict is Verdict.HARM]
        if harmed:
            return tick, ",".join(v.segment[1] if v.segment else "whole" for v in harmed)
    return -1, ""


def rollwise_latency(guard: Guard, alpha: float, e_cum: np.ndarray, c_cum: np.ndarray) -> int:
    exposed, baseline = e_cum.tolist(), c_cum.tolist()
    for tick in range(len(exposed)):
        sample = LatencySample(tuple(exposed[tick]), tuple(baseline[tick]))
        if judge_latency(guard, [sample], 0, alpha).verdict is Verdict.HARM:
            return tick
    return -1


# --- one run of each kind ------------------------------------------------------------------------


@functools.cache
def latency_probabilities(scale: float) -> np.ndarray:
    probabilities = _lognormal_bucket_probabilities(P95_MS, SIGMA, scale, 0.0)
    assert probabilities.shape == (LATENCY_BUCKETS,)
    return probabilities


def run_rate(scenario: Scenario, rng: np.random.Generator) -> tuple[list[int], np.ndarray, str]:
    ticks, requests = scenario.ticks, scenario.requests_per_tick
    n_t = rng.binomial(requests, EXPOSED_SHARE, size=ticks)
    n_c = requests - n_t
    x_t = rng.binomial(n_t, BASE_RATE * scenario.factor)
    x_c = rng.binomial(n_c, BASE_RATE)
    cumulative = [np.cumsum(array) for array in (n_t, x_t, n_c, x_c)]
    plan = plans()["rate"]
    alpha = harm_alpha(plan)
    stops = [
        rollwise_rate(plan.guards[0], alpha, [array.tolist() for array in cumulative]),
        argo_rate(n_t, x_t),
        kayenta_rate(*cumulative),
        naive_rate(*cumulative),
    ]
    return stops, cumulative[0], ""


def run_tenant(scenario: Scenario, rng: np.random.Generator) -> tuple[list[int], np.ndarray, str]:
    ticks, requests = scenario.ticks, scenario.requests_per_tick
    shares = np.array(TENANT_SHARES)
    per_tenant = rng.multinomial(requests, shares, size=ticks)  # (ticks, tenants)
    n_t = rng.binomial(per_tenant, EXPOSED_SHARE)
    n_c = per_tenant - n_t
    rates_t = np.full(len(TENANTS), BASE_RATE)
    rates_t[0] = BASE_RATE * scenario.factor  # globex only
    x_t = rng.binomial(n_t, rates_t)
    x_c = rng.binomial(n_c, BASE_RATE)
    cumulative = [np.cumsum(array, axis=0) for array in (n_t, x_t, n_c, x_c)]
    pooled = [array.sum(axis=1) for array in cumulative]
    plan = plans()["tenant"]
    tick, trigger = rollwise_tenant(plan.guards[0], harm_alpha(plan), cumulative, TENANTS)
    stops = [
        tick,
        argo_rate(n_t.sum(axis=1), x_t.sum(axis=1)),
        kayenta_rate(*pooled),
        naive_rate(*pooled),
    ]
    return stops, pooled[0], trigger


def run_latency(scenario: Scenario, rng: np.random.Generator) -> tuple[list[int], np.ndarray, str]:
    ticks, requests = scenario.ticks, scenario.requests_per_tick
    n_t = rng.binomial(requests, EXPOSED_SHARE, size=ticks)
    n_c = requests - n_t
    e_tick = rng.multinomial(n_t, latency_probabilities(scenario.factor))
    c_tick = rng.multinomial(n_c, latency_probabilities(1.0))
    e_cum, c_cum = np.cumsum(e_tick, axis=0), np.cumsum(c_tick, axis=0)
    plan = plans()["latency"]
    stops = [
        rollwise_latency(plan.guards[0], harm_alpha(plan), e_cum, c_cum),
        argo_latency(e_tick),
        kayenta_latency(e_cum, c_cum),
        naive_latency(e_cum, c_cum),
    ]
    return stops, np.cumsum(n_t), ""


RUNNERS: dict[str, Callable[[Scenario, np.random.Generator], tuple[list[int], np.ndarray, str]]] = {
    "rate": run_rate,
    "tenant": run_tenant,
    "latency": run_latency,
}


def run_chunk(
    task: tuple[str, int, int, int, int],
) -> tuple[str, int, np.ndarray, np.ndarray, list[str], float]:
    """Runs [start, stop) of a scenario: per run and judge, the rollback tick (-1: none) and
    the exposed requests seen by then (the horizon's when there was none); what triggered
    rollwise's rollback (tenant scenario); and the CPU seconds spent."""
    cpu = time.process_time()
    name, seed, runs, start, stop = task
    scenario = BY_NAME[name]
    children = np.random.SeedSequence(seed).spawn(runs)[start:stop]
    ticks = np.full((stop - start, len(JUDGES)), -1, dtype=np.int64)
    exposed = np.zeros((stop - start, len(JUDGES)), dtype=np.int64)
    triggers: list[str] = []
    for row, child in enumerate(children):
        stops, cumulative_exposed, trigger = RUNNERS[scenario.kind](
            scenario, np.random.default_rng(child)
        )
        triggers.append(trigger)
        for column, tick in enumerate(stops):
            ticks[row, column] = tick
            exposed[row, column] = cumulative_exposed[tick if tick >= 0 else -1]
    return name, start, ticks, exposed, triggers, time.process_time() - cpu


# --- summaries -----------------------------------------------------------------------------------


def wilson(successes: int, total: int, z: float = Z95) -> tuple[float, float]:
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def summarize(ticks: np.ndarray, exposed: np.ndarray) -> dict[str, Any]:
    rolled = ticks >= 0
    count, total = int(rolled.sum()), int(ticks.size)
    low, high = wilson(count, total)
    result: dict[str, Any] = {
        "rolled_back": count,
        "runs": total,
        "share": count / total,
        "share_ci95": [low, high],
        "mean_exposed_before_rollback": None,
        "mean_exposed_ci95": None,
        "p90_exposed_before_rollback": None,
        "median_exposed_before_rollback": None,
    }
    if count:
        values = exposed[rolled].astype(np.float64)
        mean = float(values.mean())
        half = Z95 * float(values.std(ddof=1)) / math.sqrt(count) if count > 1 else math.nan
        result.update(
            mean_exposed_before_rollback=mean,
            mean_exposed_ci95=[mean - half, mean + half] if count > 1 else None,
            p90_exposed_before_rollback=float(np.percentile(values, 90)),
            median_exposed_before_rollback=float(np.median(values)),
        )
    return result


def check(
    what: str, value: float | None, target: float, at_most: bool, unit: str
) -> dict[str, Any]:
    def show(number: float) -> str:
        return f"{number:.2%}" if unit == "share" else f"{number:,.0f}"

    if value is None:
        return {"what": what, "target": target, "value": None, "met": False, "text": "no data"}
    met = value <= target if at_most else value >= target
    relation = "<=" if at_most else ">="
    if met:
        text = f"met ({show(value)} {relation} {show(target)})"
    else:
        gap = abs(value - target)
        gap_text = f"{gap * 100:.2f} pp" if unit == "share" else f"{gap:,.0f}"
        text = f"MISSED by {gap_text} ({show(value)}, target {relation} {show(target)})"
    return {
        "what": what,
        "target": target,
        "at_most": at_most,
        "value": value,
        "met": met,
        "text": text,
    }


def targets(name: str, rollwise: dict[str, Any], sprt: dict[str, dict[str, float]]) -> list[Any]:
    share, mean = rollwise["share"], rollwise["mean_exposed_before_rollback"]
    if name in ("rate_aa", "rate_aa_boundary", "latency_aa", "latency_better"):
        return [check("false-rollback rate", share, FALSE_ROLLBACK_RATE, True, "share")]
    if name == "rate_2x":
        limit = RATE_2X_MEAN_FACTOR * sprt["rate_2x"]["exposed_requests"]
        return [
            check("power by the horizon", share, POWER_TARGET, False, "share"),
            check("mean exposed requests before rollback (1.5 x SPRT)", mean, limit, True, "n"),
        ]
    if name == "tenant_2x":
        return [
            check("power by the horizon", share, POWER_TARGET, False, "share"),
            check(
                "mean total exposed requests before rollback", mean, TENANT_MEAN_TARGET, True, "n"
            ),
        ]
    return [check("power by the horizon", share, POWER_TARGET, False, "share")]


def print_table(scenario: Scenario, entry: dict[str, Any]) -> None:
    tick = f"{scenario.requests_per_tick:,} requests (~{scenario.exposed_per_tick:g} exposed)"
    total = " in total (all tenants)" if scenario.kind == "tenant" else ""
    print(
        f"\n{scenario.name}: {scenario.description}\n  horizon {scenario.horizon_exposed:,} "
        f"exposed requests{total} = {scenario.ticks:,} ticks of {tick}; {entry['runs']} runs"
    )
    header = ["judge", "rolled back", "95% CI", "mean exposed before rollback", "p90"]
    rows = []
    for judge in JUDGES:
        figures = entry["judges"][judge]
        low, high = figures["share_ci95"]
        mean = figures["mean_exposed_before_rollback"]
        if mean is None:
            mean_text, p90_text = "-", "-"
        else:
            interval = figures["mean_exposed_ci95"]
            mean_text = (
                f"{mean:,.0f} ± {mean - interval[0]:,.0f}" if interval else f"{mean:,.0f} (n=1)"
            )
            p90_text = f"{figures['p90_exposed_before_rollback']:,.0f}"
        rows.append(
            [
                judge,
                f"{figures['share']:.1%} ({figures['rolled_back']}/{figures['runs']})",
                f"[{low:.1%}, {high:.1%}]",
                mean_text,
                p90_text,
            ]
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("  " + "  ".join(cells))
    if "sprt_reference_exposed" in entry:
        print(
            f"  Wald SPRT reference (theta 1.1 vs 2, alpha {entry['sprt_alpha']:g}, beta 0.05): "
            f"{entry['sprt_reference_exposed']:,.0f} exposed requests{total}"
        )
    if scenario.kind == "tenant":
        print("  argo/kayenta/naive judge the pooled traffic: pooled exposed rate 1.1% = tolerance")
        shown = ", ".join(
            f"{k} {v}" for k, v in entry.get("rollwise_rollback_triggers", {}).items()
        )
        print(f"  rollwise rollbacks triggered by: {shown or 'none'}")
    if scenario.kind in ("rate", "tenant"):
        failing = math.floor(ARGO_RATE_THRESHOLD * scenario.exposed_per_tick) + 1
        print(
            f"  argo-style checks one tick (~{scenario.exposed_per_tick:g} exposed requests) "
            f"against {ARGO_RATE_THRESHOLD:.1%}: {failing} error(s) in a tick fail it"
        )
    for target in entry["targets"]:
        print(f"  rollwise {target['what']}: {target['text']}")


# --- main ----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description="rollwise judgement vs comparison judges")
    parser.add_argument("--runs", type=int, default=1000, help="runs per scenario (1000)")
    parser.add_argument("--quick", action="store_true", help="200 runs per scenario")
    parser.add_argument("--seed", type=int, default=20260105)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=25, help="runs per task")
    parser.add_argument("--scenarios", nargs="*", default=[s.name for s in SCENARIOS])
    parser.add_argument("--output", default=str(HERE / "results" / "judgement.json"))
    args = parser.parse_args()
    runs = 200 if args.quick else args.runs
    chosen = [BY_NAME[name] for name in args.scenarios]
    started = time.perf_counter()

    tasks = [
        (scenario.name, args.seed, runs, start, min(start + args.chunk, runs))
        for scenario in chosen
        for start in range(0, runs, args.chunk)
    ]
    ticks = {s.name: np.zeros((runs, len(JUDGES)), dtype=np.int64) for s in chosen}
    exposed = {s.name: np.zeros((runs, len(JUDGES)), dtype=np.int64) for s in chosen}
    cpu_seconds = dict.fromkeys(ticks, 0.0)
    triggers: dict[str, Counter[str]] = {name: Counter() for name in ticks}
    done = 0
    if args.workers > 1:
        with get_context("fork").Pool(args.workers) as pool:
            for name, start, chunk_ticks, chunk_exposed, chunk_triggers, cpu in pool.imap_unordered(
                run_chunk, tasks
            ):
                cpu_seconds[name] += cpu
                triggers[name].update(t for t in chunk_triggers if t)
                ticks[name][start : start + len(chunk_ticks)] = chunk_ticks
                exposed[name][start : start + len(chunk_ticks)] = chunk_exposed
                done += 1
                print(f"\r{done}/{len(tasks)} tasks", end="", file=sys.stderr, flush=True)
    else:
        for task in tasks:
            name, start, chunk_ticks, chunk_exposed, chunk_triggers, cpu = run_chunk(task)
            cpu_seconds[name] += cpu
            triggers[name].update(t for t in chunk_triggers if t)
            ticks[name][start : start + len(chunk_ticks)] = chunk_ticks
            exposed[name][start : start + len(chunk_ticks)] = chunk_exposed
    print(file=sys.stderr)
    elapsed = time.perf_counter() - started

    sprt = sprt_references()
    alphas = {kind: harm_alpha(plan) for kind, plan in plans().items()}
    results: dict[str, Any] = {}
    print(
        "Guard judgement under continuous monitoring: share of runs rolled back (Wilson 95% CI),"
        "\nexposed requests before rollback over the runs that rolled back (mean ± 1.96·sd/√n, "
        "p90). Every judge sees the same streams; a tick is one check."
    )
    for scenario in chosen:
        entry: dict[str, Any] = {
            "description": scenario.description,
            "kind": scenario.kind,
            "regression": scenario.regression,
            "factor": scenario.factor,
            "runs": runs,
            "ticks": scenario.ticks,
            "requests_per_tick": scenario.requests_per_tick,
            "expected_exposed_per_tick": scenario.exposed_per_tick,
            "horizon_exposed_requests": scenario.horizon_exposed,
            "rollwise_harm_alpha": alphas[scenario.kind],
            "cpu_seconds_all_workers": cpu_seconds[scenario.name],
            "judges": {
                judge: summarize(ticks[scenario.name][:, i], exposed[scenario.name][:, i])
                for i, judge in enumerate(JUDGES)
            },
        }
        if triggers[scenario.name]:
            entry["rollwise_rollback_triggers"] = dict(triggers[scenario.name].most_common())
        if scenario.name in sprt:
            entry["sprt_reference_exposed"] = sprt[scenario.name]["exposed_requests"]
            entry["sprt_alpha"] = sprt[scenario.name]["alpha"]
        entry["targets"] = targets(scenario.name, entry["judges"]["rollwise"], sprt)
        results[scenario.name] = entry
        print_table(scenario, entry)
    missed = [
        f"{name}: {target['what']}: {target['text']}"
        for name, entry in results.items()
        for target in entry["targets"]
        if not target["met"]
    ]
    print(f"\nrollwise targets missed: {len(missed)}")
    for line in missed:
        print(f"  {line}")
    print(f"elapsed: {elapsed:.1f} s ({args.workers} worker(s), {runs} runs per scenario)")

    document = {
        "benchmark": "judgement",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seed": args.seed,
        "seeding": "run i of every scenario: np.random.default_rng("
        "np.random.SeedSequence(seed).spawn(runs)[i])",
        "runs": runs,
        "workers": args.workers,
        "elapsed_seconds": elapsed,
        "settings": {
            "exposed_share": EXPOSED_SHARE,
            "base_error_rate": BASE_RATE,
            "latency_p95_ms": P95_MS,
            "latency_sigma": SIGMA,
            "tolerance_relative": TOLERANCE,
            "false_rollback_rate": FALSE_ROLLBACK_RATE,
            "tenants": dict(zip(TENANTS, TENANT_SHARES, strict=True)),
            "argo": {
                "failure_limit_consecutive": ARGO_FAILURE_LIMIT,
                "rate_threshold": ARGO_RATE_THRESHOLD,
                "latency_p95_threshold_ms": ARGO_LATENCY_THRESHOLD_MS,
                "min_requests_per_check": ARGO_MIN_REQUESTS,
            },
            "kayenta": {"alpha_two_sided": KAYENTA_ALPHA, "tolerance": TOLERANCE},
            "naive": {"alpha_one_sided": NAIVE_ALPHA, "z": NAIVE_Z, "tolerance": TOLERANCE},
            "rollwise_plans": {"rate": RATE_PLAN, "tenant": TENANT_PLAN, "latency": LATENCY_PLAN},
        },
        "sprt_reference": sprt,
        "scenarios": results,
        "targets_missed": missed,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
