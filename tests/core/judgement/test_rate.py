"""Rate guards: anytime-valid under continuous monitoring, powerful against real regressions.

Every statistical claim here is a simulation with a fixed seed and a bound that the method
would fail if it were wrong; the naive fixed-horizon test re-run at every tick is run on the
same streams to show that the bounds can tell a valid method from an invalid one.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rollwise.core import load_plan
from rollwise.core.judgement import RateSample, Tally, Verdict, judge_rate

ALPHA = 0.05  # a level the test can check with a few hundred runs


def _guard(text: str = "tolerance: 10%", worse: str = "higher"):  # type: ignore[no-untyped-def]
    plan = load_plan(
        f"flag: f\nunit: user\nguards: [{{metric: e, kind: rate, worse: {worse}, {text}}}]\n"
        "stages: [{name: a, audience: {percent: 5}}]\n"
    )
    return plan.guards[0]


def _naive_z_rejects(n_t: int, x_t: int, n_c: int, x_c: int, theta0: float) -> bool:
    """A one-sided two-proportion z-test of p_T <= theta0 * p_C at ALPHA: valid once, not when
    re-run at every tick."""
    if not x_c or not n_t:
        return False
    p_t, p_c = x_t / n_t, x_c / n_c
    variance = p_t * (1 - p_t) / n_t + theta0**2 * p_c * (1 - p_c) / n_c
    return variance > 0 and (p_t - theta0 * p_c) / math.sqrt(variance) > 1.6449


def _stream(
    rng: np.random.Generator, p_t: float, p_c: float, ticks: int, shares: list[float]
) -> list[list[RateSample]]:
    """Cumulative per-stage samples after each tick; the stage (and exposed share) changes
    evenly over ``shares``; the baseline rate follows a daily-like swing."""
    per_stage = ticks // len(shares)
    n = [[0, 0, 0, 0] for _ in shares]
    history = []
    for tick in range(ticks):
        stage = min(tick // per_stage, len(shares) - 1)
        swing = 1 + 0.5 * math.sin(tick / 15)
        requests = 2000
        exposed = rng.binomial(requests, shares[stage])
        n[stage][0] += exposed
        n[stage][1] += rng.binomial(exposed, min(p_t * swing, 1))
        n[stage][2] += requests - exposed
        n[stage][3] += rng.binomial(requests - exposed, p_c * swing)
        history.append([RateSample(Tally(a, b), Tally(c, d)) for a, b, c, d in n[: stage + 1]])
    return history


def _false_alarms(
    p_t: float, p_c: float, shares: list[float], runs: int, seed: int
) -> tuple[float, float]:
    guard = _guard()
    rollwise = naive = 0
    for stream in np.random.SeedSequence(seed).spawn(runs):
        rng = np.random.default_rng(stream)
        flagged_r = flagged_n = False
        for samples in _stream(rng, p_t, p_c, 120, shares):
            stage = len(samples) - 1
            if not flagged_r:
                verdict = judge_rate(guard, samples, stage, ALPHA, bounds=False)
                flagged_r = verdict.verdict is Verdict.HARM
            if not flagged_n:
                totals = [
                    sum(getattr(getattr(s, side), f) for s in samples)
                    for side in ("exposed", "baseline")
                    for f in ("requests", "events")
                ]
                flagged_n = _naive_z_rejects(*totals, theta0=1.1)
        rollwise += flagged_r
        naive += flagged_n
    return rollwise / runs, naive / runs


def test_false_alarms_at_the_tolerance_boundary_stay_below_alpha_when_watched_every_tick() -> None:
    """At θ exactly 1.1 (the tolerance), looked at 120 times: rollwise ≤ α + 3 SE; the naive
    fixed-horizon z-test re-run at every tick exceeds that bound on the same streams."""
    runs = 300
    rollwise, naive = _false_alarms(0.011, 0.01, [0.05], runs, seed=20261126)
    bound = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
    assert rollwise <= bound, rollwise
    assert naive > bound, naive


def test_changing_traffic_shares_between_stages_cancel_out() -> None:
    """Stages at 2 %, 10 % and 40 % exposure with a swinging base rate, no regression: the
    conditional construction keeps false alarms below α across the stages."""
    runs = 200
    rollwise, _ = _false_alarms(0.01, 0.01, [0.02, 0.1, 0.4], runs, seed=7)
    assert rollwise <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)


def test_a_doubled_error_rate_is_caught_quickly() -> None:
    """1 % → 2 % at 5 % exposure: caught in ≥ 95 % of runs, on average within 2,270 exposed
    requests (1.5 × the Wald SPRT bound at α = 0.01, β = 0.05)."""
    guard = _guard()
    caught, needed = 0, []
    for stream in np.random.SeedSequence(3).spawn(200):
        rng = np.random.default_rng(stream)
        n_t = x_t = n_c = x_c = 0
        while n_t < 20_000:
            exposed = rng.binomial(400, 0.05)
            n_t += exposed
            x_t += rng.binomial(exposed, 0.02)
            n_c += 400 - exposed
            x_c += rng.binomial(400 - exposed, 0.01)
            samples = [RateSample(Tally(n_t, x_t), Tally(n_c, x_c))]
            if judge_rate(guard, samples, 0, 0.01, bounds=False).verdict is Verdict.HARM:
                caught += 1
                needed.append(n_t)
                break
    assert caught / 200 >= 0.95
    assert sum(needed) / len(needed) <= 2270, sum(needed) / len(needed)


def test_bounds_agree_with_the_verdict() -> None:
    """The worse-side bound is past θ0 exactly when the verdict is harm, and the better-side
    bound is inside θ0 exactly when it is safe."""
    guard = _guard()
    cases = [(5000, 100, 95000, 950), (100_000, 1000, 1_900_000, 19_000), (2000, 21, 38000, 390)]
    for n_t, x_t, n_c, x_c in cases:
        verdict = judge_rate(guard, [RateSample(Tally(n_t, x_t), Tally(n_c, x_c))], 0, 0.01)
        assert verdict.lower is not None and verdict.upper is not None and verdict.threshold
        assert (verdict.verdict is Verdict.HARM) == (verdict.lower > verdict.threshold * 1.0001)
        assert (verdict.verdict is Verdict.SAFE) == (verdict.upper < verdict.threshold * 0.9999)
        assert verdict.lower <= (verdict.estimate or 0) <= verdict.upper
    harm, safe, pending = (
        judge_rate(guard, [RateSample(Tally(*c[:2]), Tally(*c[2:]))], 0, 0.01).verdict
        for c in cases
    )
    assert (harm, safe, pending) == (Verdict.HARM, Verdict.SAFE, Verdict.PENDING)


def test_conversion_that_drops_is_harm_when_lower_is_worse() -> None:
    """worse: lower: a 30 % drop in conversion is harm; a 30 % rise is not."""
    guard = _guard(worse="lower")
    drop = judge_rate(guard, [RateSample(Tally(20_000, 1400), Tally(380_000, 38_000))], 0, 0.01)
    rise = judge_rate(guard, [RateSample(Tally(20_000, 2600), Tally(380_000, 38_000))], 0, 0.01)
    assert drop.verdict is Verdict.HARM
    assert rise.verdict is Verdict.SAFE


@pytest.mark.parametrize(
    ("text", "x_t", "expected"),
    [
        ("max: 1.2%", 3000, Verdict.HARM),  # absolute limit on the exposed rate
        ("max: 1.2%", 1500, Verdict.SAFE),
    ],
)
def test_absolute_limits(text: str, x_t: int, expected: Verdict) -> None:
    """Absolute limits judge the exposed side's own rate as written."""
    guard = _guard(text)
    samples = [RateSample(Tally(200_000, x_t), Tally(3_800_000, 38_000))]
    assert judge_rate(guard, samples, 0, 0.01).verdict is expected


def test_no_data_is_pending_not_safe() -> None:
    """With no traffic, or no events yet, a guard is pending: silence is not safety."""
    guard = _guard()
    assert judge_rate(guard, [], 0, 0.01).verdict is Verdict.PENDING
    empty = [RateSample(Tally(500, 0), Tally(9500, 0))]
    assert judge_rate(guard, empty, 0, 0.01).verdict is Verdict.PENDING


def test_windows_protect_against_simpsons_paradox() -> None:
    """No regression, but the exposed share (2 % / 8 %) moves with the base rate (0.5 % /
    1.5 %): totals pooled over the stage look 30 % worse, and the stage-level comparison
    flags harm; compared window by window, no run is flagged."""
    guard = _guard()
    pooled_flags = windowed_flags = 0
    runs = 100
    for stream in np.random.SeedSequence(17).spawn(runs):
        rng = np.random.default_rng(stream)
        windows: list[RateSample] = []
        for window in range(12):
            share, rate = (0.02, 0.005) if window % 2 == 0 else (0.08, 0.015)
            requests = 200_000
            exposed = int(rng.binomial(requests, share))
            windows.append(
                RateSample(
                    Tally(exposed, int(rng.binomial(exposed, rate))),
                    Tally(requests - exposed, int(rng.binomial(requests - exposed, rate))),
                    window=window,
                )
            )
        pooled = RateSample(
            Tally(sum(w.exposed.requests for w in windows), sum(w.exposed.events for w in windows)),
            Tally(
                sum(w.baseline.requests for w in windows), sum(w.baseline.events for w in windows)
            ),
        )
        pooled_flags += judge_rate(guard, [pooled], 0, 0.01, bounds=False).verdict is Verdict.HARM
        windowed_flags += judge_rate(guard, windows, 0, 0.01, bounds=False).verdict is Verdict.HARM
    assert pooled_flags / runs > 0.9
    assert windowed_flags == 0


def test_the_estimate_is_stratified_too() -> None:
    """The displayed θ is the Mantel-Haenszel ratio over windows: 1.0 in the Simpson example,
    where pooled totals would say 1.32."""
    windows = [
        RateSample(Tally(1000, 5), Tally(49_000, 245), window=0),
        RateSample(Tally(4000, 60), Tally(46_000, 690), window=1),
    ]
    verdict = judge_rate(_guard(), windows, 0, 0.01)
    assert verdict.estimate == pytest.approx(1.0)
