"""The judgement in the conditions production has: level changes at a stage boundary, share and
base rate moving inside an hour, evidence carried across stages. Each test is a simulation with
a fixed seed whose bound fails on the method it replaced (issue 9's measurements in brackets)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from rollwise.core import load_plan
from rollwise.core.judgement import (
    HARM_ALTERNATIVES,
    LatencySample,
    RateSample,
    Tally,
    Verdict,
    harm_log_evidence,
    judge_latency,
    judge_rate,
    rate_log_evidence,
)
from rollwise.core.simulation._simulator import _lognormal_bucket_probabilities

THETA0 = 1.1
ALPHA = 0.01


def _guard(text: str):  # type: ignore[no-untyped-def]
    plan = load_plan(
        f"flag: f\nunit: user\nguards: [{text}]\nstages: [{{name: a, audience: {{percent: 5}}}}]\n"
    )
    return plan.guards[0]


def _latency_runs_harmed(seed: int, runs: int, shares: tuple[float, float], scale: float) -> int:
    """Runs judged harm: 12 hours of 15-minute windows, the p95 of everyone 100 ms in the first
    stage and 150 ms in the second, the exposed share per stage, the exposed side × ``scale``."""
    guard = _guard("{metric: l, kind: latency, quantile: 0.95, tolerance: 10%}")
    levels = [_lognormal_bucket_probabilities(p95, 0.5, 1.0, 0.0) for p95 in (100.0, 150.0)]
    exposed_levels = [_lognormal_bucket_probabilities(p, 0.5, scale, 0.0) for p in (100.0, 150.0)]
    harmed = 0
    for stream in np.random.SeedSequence(seed).spawn(runs):
        rng = np.random.default_rng(stream)
        strata: list[LatencySample] = []
        for window in range(48):
            stage = 0 if window < 24 else 1
            n = int(rng.poisson(6000))
            n_t = int(rng.binomial(n, shares[stage]))
            exposed = rng.multinomial(n_t, exposed_levels[stage])
            baseline = rng.multinomial(n - n_t, levels[stage])
            strata.append(
                LatencySample(tuple(exposed.tolist()), tuple(baseline.tolist()), stage, window)
            )
            if judge_latency(guard, strata, stage, ALPHA, stages=2).verdict is Verdict.HARM:
                harmed += 1
                break
    return harmed


def test_latency_level_and_share_changing_at_a_stage_boundary_is_no_regression() -> None:
    """A/A whose exposed share and latency level both change at a stage boundary (5 % at
    100 ms p95 → 25 % at 150 ms, for everyone), judged every 15-minute window over 12 hours:
    at most 2 of 100 runs harm (pooled histograms: 36.5 % of runs)."""
    assert _latency_runs_harmed(21, 100, (0.05, 0.25), 1.0) <= 2


def test_latency_judged_per_window_still_sees_a_slower_exposed_side() -> None:
    """The same stage change with the exposed side 30 % slower throughout (tolerance 10 %):
    every run is judged harm."""
    assert _latency_runs_harmed(22, 30, (0.05, 0.25), 1.3) == 30


def _regimes(window_minutes: int, rng: np.random.Generator) -> list[RateSample]:
    """One day in which the exposed share and the base rate change together every 30 minutes
    (2 % exposed at 0.5 % ↔ 8 % at 1.5 %), cut into strata of ``window_minutes``."""
    strata: dict[int, list[int]] = {}
    for minute in range(24 * 60):
        quiet = minute % 60 < 30
        share, rate = (0.02, 0.005) if quiet else (0.08, 0.015)
        n = int(rng.poisson(2000))
        n_t = int(rng.binomial(n, share))
        counts = strata.setdefault(minute // window_minutes, [0, 0, 0, 0])
        counts[0] += n_t
        counts[1] += int(rng.binomial(n_t, rate))
        counts[2] += n - n_t
        counts[3] += int(rng.binomial(n - n_t, rate))
    return [
        RateSample(Tally(c[0], c[1]), Tally(c[2], c[3]), 0, window)
        for window, c in sorted(strata.items())
    ]


def test_a_stratum_short_enough_to_follow_half_hour_regimes_keeps_its_level() -> None:
    """With 15-minute strata, an A/A whose share and base rate change together every half
    hour is judged harm in at most 2 of 60 runs; the same data in hourly strata (the old fixed
    window) is judged harm in most runs."""
    guard = _guard("{metric: e, kind: rate, tolerance: 10%}")
    hourly = quarter = 0
    for stream in np.random.SeedSequence(23).spawn(60):
        rng = np.random.default_rng(stream)
        state = rng.bit_generator.state
        hourly += judge_rate(guard, _regimes(60, rng), 0, ALPHA, bounds=False).verdict is (
            Verdict.HARM
        )
        rng.bit_generator.state = state
        quarter += judge_rate(guard, _regimes(15, rng), 0, ALPHA, bounds=False).verdict is (
            Verdict.HARM
        )
    assert quarter <= 2
    assert hourly >= 30


def _detection(
    evidence: Callable[[list[RateSample]], float], clean_minutes: int, seed: int
) -> float:
    """Mean exposed requests, from the start of the regressed stage, until ``evidence`` of harm
    crosses log(1/α): a clean stage at 5 % for ``clean_minutes``, then 1 % → 2 % at 25 %."""
    needed = []
    for stream in np.random.SeedSequence(seed).spawn(40):
        rng = np.random.default_rng(stream)
        finished: list[RateSample] = []
        label = (0, 0)
        current = [0, 0, 0, 0]
        counted = 0
        for minute in range(clean_minutes + 1200):
            stage = 0 if minute < clean_minutes else 1
            share, factor = (0.05, 1.0) if stage == 0 else (0.25, 2.0)
            if (stage, minute // 15) != label:
                if current[0] + current[2]:
                    finished.append(RateSample(Tally(*current[:2]), Tally(*current[2:]), *label))
                current, label = [0, 0, 0, 0], (stage, minute // 15)
            n = int(rng.poisson(2000 if stage == 0 else 400))  # about 100 exposed a look
            n_t = int(rng.binomial(n, share))
            current[0] += n_t
            current[1] += int(rng.binomial(n_t, 0.01 * factor))
            current[2] += n - n_t
            current[3] += int(rng.binomial(n - n_t, 0.01))
            counted += n_t if stage == 1 else 0
            partial = RateSample(Tally(*current[:2]), Tally(*current[2:]), *label)
            if stage == 1 and evidence([*finished, partial]) >= math.log(1 / ALPHA):
                needed.append(counted)
                break
        else:
            needed.append(math.inf)
    return sum(needed) / len(needed)


def test_a_regression_after_a_clean_stage_is_caught_as_fast_as_without_one() -> None:
    """After a clean day at 5 %, a doubled error rate at 25 % is caught within 1.3× the exposed
    requests it takes with no clean stage before (evidence carried as a debt with the earlier
    grid: more than 3×, up to 19× in issue 9's measurements)."""
    restarted = lambda samples: harm_log_evidence(samples, THETA0, HARM_ALTERNATIVES, 5)  # noqa: E731
    without = _detection(restarted, 0, seed=24)
    after_a_day = _detection(restarted, 24 * 60, seed=24)
    assert after_a_day <= 1.3 * without
    # The method it replaced: one whole-rollout process, with the earlier grid.
    carried = lambda samples: rate_log_evidence(samples, THETA0, (1.15, 1.4, 1.8, 2.4, 3.2, 4.5))  # noqa: E731
    assert _detection(carried, 24 * 60, seed=24) > 3 * without
