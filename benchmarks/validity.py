#!/usr/bin/env python3
"""Is the judgement valid in the conditions production has? The validation table of
docs/judgement.md.

Each scenario makes traffic the way production does — requests per tick, an exposed share that
moves with stages and hours, base rates that drift, tenants with quiet hours, latencies whose
level changes at a stage boundary — and turns it into aggregates exactly as an SDK ships them
(one per stage × window × side × segment × metric, only for keys that saw requests). The
judgement looks at every tick. Null scenarios report the share of runs falsely judged harm
(with a Wilson 95 % interval; the target is ≤ α with the upper bound ≤ 1.5 α); regression
scenarios report the mean exposed requests to detection against the Wald SPRT's expected sample
size for the same test (null at the tolerance, β = 5 %).

Three paths, one answer:

- the **store's path judged from scratch**: aggregates → ``AggregateTable`` → ``Observations`` →
  ``judge_guard`` at every tick — the reference;
- the **controller's incremental path** (segments, latency): the same aggregates put into
  a ``RolloutEvidence``, which folds in only what changed, as the controller and the simulator
  do;
- a **fast path** for whole-traffic rate scenarios, built from the same core primitives
  (``stratum_log_ratios`` per stratum, ``restarted_log_evidence`` across stages) with the
  finished strata summed once.

The first ``--check`` runs of every scenario are also judged from scratch, and the benchmark
stops with an error if any decision differs (the tick, and whether a segment made it).

    python benchmarks/validity.py [--runs 10000] [--latency-runs 1000] [--seed 20261130]
                                  [--only NAME ...] [--jobs 2] [--first 0]

``--first N`` numbers the runs from N: a long scenario can be run in parts (its row is then
named ``NAME@N``) and the parts' counts (``harmed`` of ``runs``) added.

Prints a table and writes benchmarks/results/validity.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from _latency_users import latency_user_world
from rollwise.core import load_plan
from rollwise.core._plan import Plan
from rollwise.core.judgement import (
    HARM_ALTERNATIVES,
    REPLICATE_WINDOW,
    REPLICATES,
    Aggregate,
    AggregateTable,
    RateSample,
    Tally,
    Verdict,
    harm_alpha,
    judge_guard,
    replicate_of,
    replicate_segment,
    restarted_log_evidence,
    stratum_log_ratios,
)
from rollwise.core.judgement._dispersion import dispersion
from rollwise.core.judgement._evidence import discounted_stages
from rollwise.core.judgement._rollout import RolloutEvidence
from rollwise.core.simulation._simulator import _lognormal_bucket_probabilities

RESULTS = Path(__file__).parent / "results" / "validity.json"
START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)  # a Monday, midnight
TICK = timedelta(minutes=1)
Z95 = 1.959963984540054


# --- the world of one scenario --------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """What one tick of traffic brings: per segment value ("" is the whole traffic), per side,
    requests and events (rates) or a histogram (latency)."""

    stage: int
    requests: dict[tuple[str, bool], int]
    events: dict[tuple[str, bool], int] = field(default_factory=dict)
    histograms: dict[tuple[str, bool], np.ndarray] = field(default_factory=dict)
    #: Per side, the tick's (requests, events) per replicate of the units (REPLICATES × 2),
    #: as the SDK ships them for the dispersion between units; None where the world has none.
    replicates: dict[bool, np.ndarray] | None = None


#: A scenario's traffic: given a run's random generator, the ticks in order.
World = Callable[[np.random.Generator], Iterator[Tick]]


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    plan: str  # YAML
    world: World
    null: bool
    latency: bool = False
    #: For regressions: the SPRT's expected exposed requests, and the ratio targeted.
    sprt: float | None = None
    target: float | None = None
    #: Judge segments (the store's path only).
    segments: bool = False
    #: A stage index whose first tick starts the count of exposed requests to detection.
    count_from_stage: int = 0
    #: Count only this segment's exposed requests to detection ("" is the whole traffic).
    count_segment: str = ""
    #: Slow to generate or to judge: run ``--store-runs`` of it.
    heavy: bool = False


def _plan(tolerance: str, *, stages: int = 1, by: str = "", kind: str = "rate") -> str:
    stage_list = ", ".join(f"{{name: s{i}, audience: {{percent: 5}}}}" for i in range(stages))
    extra = f", by: [{by}]" if by else ""
    quantile = ", quantile: 0.95" if kind == "latency" else ""
    return (
        f"flag: f\nunit: user\nguards: [{{metric: m, kind: {kind}{quantile}, "
        f"tolerance: {tolerance}{extra}}}]\nstages: [{stage_list}]\n"
    )


def _iid_replicates(rng: np.random.Generator, requests: int, events: int) -> np.ndarray:
    """Requests of distinct units, split over the replicates: requests uniformly
    (multinomial), and the events among them at random (hypergeometric), as they fall when
    every request is its own unit."""
    n = rng.multinomial(requests, [1 / REPLICATES] * REPLICATES)
    x = rng.multivariate_hypergeometric(n, events) if events else np.zeros(REPLICATES, int)
    return np.stack([n, x], axis=1)


def rate_world(
    *,
    per_tick: float | Callable[[int], float],
    share: Callable[[int, datetime], float],
    base: Callable[[int, datetime], float],
    effect: Callable[[int, datetime], float] = lambda stage, at: 1.0,
    stage_at: Callable[[int], int] = lambda tick: 0,
    ticks: int,
    replicates: bool = False,
) -> World:
    """Whole-traffic rate counts: requests ~ Poisson(per_tick), exposed ~ Binomial(share),
    events ~ Binomial(base) on the baseline and Binomial(base × effect) on the exposed side.
    ``replicates``: also ship each side's replicates, every request its own unit."""

    def world(rng: np.random.Generator) -> Iterator[Tick]:
        for tick in range(ticks):
            at = START + tick * TICK
            stage = stage_at(tick)
            n = int(rng.poisson(per_tick(stage) if callable(per_tick) else per_tick))
            n_t = int(rng.binomial(n, share(stage, at)))
            n_c = n - n_t
            rate = base(stage, at)
            x_t = int(rng.binomial(n_t, min(rate * effect(stage, at), 1.0)))
            x_c = int(rng.binomial(n_c, rate))
            yield Tick(
                stage,
                {("", True): n_t, ("", False): n_c},
                {("", True): x_t, ("", False): x_c},
                replicates={
                    True: _iid_replicates(rng, n_t, x_t),
                    False: _iid_replicates(rng, n_c, x_c),
                }
                if replicates
                else None,
            )

    return world


def _daily(amplitude: float) -> Callable[[datetime], float]:
    return lambda at: 1 + amplitude * math.sin(2 * math.pi * (at.hour + at.minute / 60) / 24)


def tenant_world(
    *,
    tenants: int,
    base: float,
    ticks: int,
    per_tick: float,
    unit_is_tenant: bool = True,
    exposed: tuple[frozenset[int], ...] = (frozenset(),),
    exposed_counts: tuple[int, ...] = (),
    stage_at: Callable[[int], int] = lambda tick: 0,
    share: float = 0.05,
    quiet: frozenset[int] = frozenset(),
    amplitude: float = 0.0,
    sigma: float = 0.0,
    effect: dict[int, float] | None = None,
) -> World:
    """Tenants of Zipf sizes, judged whole and per tenant. ``unit_is_tenant``: whole tenants
    are exposed (per stage: those in ``exposed[stage]``, or the first ``exposed_counts[stage]``
    of an order drawn per run), else ``share`` of each tenant's requests (``unit: user``).
    Tenants in ``quiet`` only have traffic from 08:00 to 18:00; the base rate follows the day
    (``amplitude``) and each tenant has its own (× exp(σ·N(0, 1)), drawn per run); ``effect``
    multiplies a tenant's exposed rate. Ships the replicates of the units: tenants, or requests
    as users."""
    weights = np.array([1 / (rank + 1) for rank in range(tenants)])
    weights /= weights.sum()
    tenant_replicate = np.array([replicate_of(f"t{tenant}") for tenant in range(tenants)])
    keys = [f"tenant=t{tenant}" for tenant in range(tenants)]
    daily = _daily(amplitude)
    quiet_mask = np.isin(np.arange(tenants), sorted(quiet))
    boost = np.ones(tenants)
    for tenant, factor in (effect or {}).items():
        boost[tenant] = factor

    def world(rng: np.random.Generator) -> Iterator[Tick]:
        own = np.exp(sigma * rng.standard_normal(tenants))
        order = rng.permutation(tenants)
        groups = (
            [order[:count] for count in exposed_counts]
            if exposed_counts
            else [sorted(group) for group in exposed]
        )
        by_stage = [np.isin(np.arange(tenants), group) for group in groups]
        for tick in range(ticks):
            at = START + tick * TICK
            stage = stage_at(tick)
            rate = base * daily(at) * own
            n = rng.poisson(per_tick * weights)
            if quiet_mask.any() and not 8 <= at.hour < 18:
                n[quiet_mask] = 0
            if unit_is_tenant:
                chosen = by_stage[stage]
                exposed_n, baseline_n = np.where(chosen, n, 0), np.where(chosen, 0, n)
            else:
                exposed_n = rng.binomial(n, share)
                baseline_n = n - exposed_n
            exposed_x = rng.binomial(exposed_n, np.minimum(rate * boost, 1.0))
            baseline_x = rng.binomial(baseline_n, np.minimum(rate, 1.0))
            requests: dict[tuple[str, bool], int] = {}
            events: dict[tuple[str, bool], int] = {}
            replicates = {}
            for side, counts, failed in (
                (True, exposed_n, exposed_x),
                (False, baseline_n, baseline_x),
            ):
                total = int(counts.sum())
                if total:
                    requests["", side] = total
                    events["", side] = int(failed.sum())
                for tenant in np.flatnonzero(counts).tolist():
                    requests[keys[tenant], side] = int(counts[tenant])
                    events[keys[tenant], side] = int(failed[tenant])
                if unit_is_tenant:
                    replicates[side] = np.zeros((REPLICATES, 2), int)
                    np.add.at(replicates[side], tenant_replicate, np.stack([counts, failed], 1))
                else:  # users: every request its own unit
                    replicates[side] = _iid_replicates(rng, total, events.get(("", side), 0))
            yield Tick(stage, requests, events, replicates=replicates)

    return world


def user_world(
    *,
    users: int,
    share: float,
    per_tick: float,
    base: float,
    broken: float,
    broken_rate: float,
    tail: float,
    ticks: int,
    effect: float = 1.0,
) -> World:
    """``unit: user`` with users as they are: requests per user heavy-tailed (Pareto with
    exponent ``tail``), a share ``broken`` of clients failing ``broken_rate`` of their requests
    on both sides; each user exposed with probability ``share`` (drawn per run), the exposed
    users' failure probability × ``effect``. Ships each side's replicates by user id."""

    # Each user's replicate, as the SDK finds it from the user's id.
    replicate = np.array([replicate_of(f"user-{index}") for index in range(users)])

    def world(rng: np.random.Generator) -> Iterator[Tick]:
        weights = rng.pareto(tail, users) + 1
        cumulative = np.cumsum(weights) / weights.sum()
        exposed = rng.random(users) < share
        failing = np.where(rng.random(users) < broken, broken_rate * effect, base * effect)
        failing = np.where(exposed, np.minimum(failing, 1.0), failing / effect)
        for _ in range(ticks):
            # Each user's requests ~ Poisson(per_tick · weight share), drawn as a Poisson total
            # split among the users by their weights (the same law, at the cost of the requests
            # rather than of the users).
            total = int(rng.poisson(per_tick))
            who = np.minimum(
                np.searchsorted(cumulative, np.sort(rng.random(total)), "right"), users - 1
            )
            failed = rng.random(total) < failing[who]
            on = exposed[who]
            per_replicate = {}
            for side, members in ((True, on), (False, ~on)):
                where = replicate[who[members]]
                per_replicate[side] = np.stack(
                    [
                        np.bincount(where, minlength=REPLICATES),
                        np.bincount(where, failed[members], REPLICATES).astype(np.int64),
                    ],
                    axis=1,
                )
            n_t, x_t = int(on.sum()), int((failed & on).sum())
            yield Tick(
                0,
                {("", True): n_t, ("", False): total - n_t},
                {("", True): x_t, ("", False): int(failed.sum()) - x_t},
                replicates=per_replicate,
            )

    return world


def latency_world(
    *,
    per_tick: float,
    stage_at: Callable[[int], int],
    share: tuple[float, ...],
    p95: tuple[float, ...],
    exposed_scale: float,
    ticks: int,
) -> World:
    """Latency histograms per side; the level (p95) and the exposed share per stage, for both
    sides alike; the exposed side's latencies × ``exposed_scale``."""
    levels = {
        (stage, scale): _lognormal_bucket_probabilities(p95[stage], 0.5, scale, 0.0)
        for stage in range(len(p95))
        for scale in (1.0, exposed_scale)
    }

    def world(rng: np.random.Generator) -> Iterator[Tick]:
        for tick in range(ticks):
            stage = stage_at(tick)
            n = int(rng.poisson(per_tick))
            n_t = int(rng.binomial(n, share[stage]))
            yield Tick(
                stage,
                {("", True): n_t, ("", False): n - n_t},
                histograms={
                    ("", True): rng.multinomial(n_t, levels[stage, exposed_scale]),
                    ("", False): rng.multinomial(n - n_t, levels[stage, 1.0]),
                },
            )

    return world


# --- judging a run ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    harm_tick: int | None
    exposed_at_harm: int | None  # exposed requests since count_from_stage began
    exposed_total: int
    by_segment: bool = False  # the first harm was a segment's


def _window(at: datetime, minutes: int) -> int:
    return int(at.timestamp() // 60) // minutes * minutes


def run_store_path(
    scenario: Scenario, plan: Plan, rng: np.random.Generator, *, full: bool = True
) -> Outcome:
    """The controller's path: aggregates as an SDK ships them, judged either from scratch at
    every tick (``full``: ``AggregateTable`` → ``Observations`` → ``judge_guard``) or as the
    controller and the simulator judge them, folding in what changed (``RolloutEvidence``,
    which returns what ``judge_guard`` returns for the same aggregates, to the bit)."""
    guard = plan.guards[0]
    alpha = harm_alpha(plan, guard.on_regression)
    stages = len(plan.stages)
    minutes = int(plan.stratum.total_seconds() // 60)
    table = AggregateTable()
    # Only the current window changes here: nothing needs to stay open to late batches.
    evidence = None if full else RolloutEvidence(plan, open_minutes=0, bounds=False)
    put = table.put if evidence is None else evidence.put
    tallies: dict[tuple[int, int, str, bool], tuple[int, int]] = {}
    histograms: dict[tuple[int, int, str, bool], np.ndarray] = {}
    replicates: dict[tuple[int, bool], np.ndarray] = {}
    exposed_total = counted = 0
    for index, tick in enumerate(scenario.world(rng)):
        at = START + index * TICK
        window = _window(at, minutes)
        for side, added in (tick.replicates or {}).items():
            totals = replicates.setdefault((tick.stage, side), np.zeros((REPLICATES, 2), int))
            totals += added
            for replicate in np.flatnonzero(added[:, 0]).tolist():
                count, failed = totals[replicate].tolist()
                put(
                    Aggregate(
                        tick.stage,
                        REPLICATE_WINDOW,
                        side,
                        replicate_segment(replicate),
                        "m",
                        count,
                        failed,
                    )
                )
        for (segment, side), requests in tick.requests.items():
            key = (tick.stage, window, segment, side)
            if scenario.latency:
                histogram = tick.histograms[segment, side]
                total_histogram = histograms[key] = histograms.get(key, 0) + histogram
                total = int(total_histogram.sum())
                if total:
                    aggregate = Aggregate(
                        tick.stage, window, side, segment, "m", total, 0, total_histogram.tolist()
                    )
                    put(aggregate)
            else:
                before = tallies.get(key, (0, 0))
                count = before[0] + requests
                failed = before[1] + tick.events.get((segment, side), 0)
                tallies[key] = (count, failed)
                if count:
                    put(Aggregate(tick.stage, window, side, segment, "m", count, failed))
        exposed_total += tick.requests.get(("", True), 0)
        if tick.stage >= scenario.count_from_stage:
            counted += tick.requests.get((scenario.count_segment, True), 0)
        if evidence is None:
            observations = table.observations(plan, tick.stage)
            overall, segments = judge_guard(
                guard,
                observations,
                tick.stage,
                alpha,
                at,
                bounds=False,
                stages=stages,
                unit=plan.unit,
            )
        elif not evidence.guard_states(tick.stage, at).harmed(0):
            continue  # what the controller asks first; the verdicts only when harm is found
        else:
            verdicts = evidence.judged(tick.stage, at)
            overall, segments = verdicts.verdicts[0], list(verdicts.segment_verdicts)
        judged = [overall, *segments] if scenario.segments else [overall]
        harmed = [v for v in judged if v.verdict is Verdict.HARM]
        if harmed:
            return Outcome(index, counted, exposed_total, harmed[0].segment is not None)
    return Outcome(None, None, exposed_total)


def run_fast_path(
    scenario: Scenario,
    plan: Plan,
    rng: np.random.Generator,
    *,
    grid: tuple[float, ...] = HARM_ALTERNATIVES,
    replicates: bool = True,
) -> Outcome:
    """Whole-traffic rate guards: the same core primitives, with finished strata summed once.
    ``grid`` and ``replicates`` are for comparisons (``detection_floor.py``): another mixture
    than rollwise's, and the replicates the world ships ignored (φ = 1)."""
    guard = plan.guards[0]
    if guard.tolerance is None:
        raise ValueError("the fast path judges a rate guard with a tolerance")
    theta0 = 1 + guard.tolerance.amount
    threshold = math.log(1 / harm_alpha(plan, guard.on_regression))
    stages = len(plan.stages)
    minutes = int(plan.stratum.total_seconds() // 60)
    finished: dict[int, list[float]] = {}
    label: tuple[int, int] | None = None
    n_t = x_t = n_c = x_c = 0
    exposed_total = counted = 0
    # Each side's replicates over all stages, as ``Replicates.of`` adds them up.
    units = {True: np.zeros((REPLICATES, 2), int), False: np.zeros((REPLICATES, 2), int)}
    phi = 1.0
    for index, tick in enumerate(scenario.world(rng)):
        at = START + index * TICK
        current = (tick.stage, _window(at, minutes))
        if current != label:
            if label is not None:
                ratios = stratum_log_ratios(
                    RateSample(Tally(n_t, x_t), Tally(n_c, x_c)), theta0, grid
                )
                sums = finished.setdefault(label[0], [0.0] * len(grid))
                for position, value in enumerate(ratios):
                    sums[position] += value
            label, n_t, x_t, n_c, x_c = current, 0, 0, 0, 0
        n_t += tick.requests["", True]
        n_c += tick.requests["", False]
        x_t += tick.events["", True]
        x_c += tick.events["", False]
        exposed_total += tick.requests["", True]
        if tick.stage >= scenario.count_from_stage:
            counted += tick.requests["", True]
        if replicates and tick.replicates is not None:
            for side, added in tick.replicates.items():
                units[side] += added
            phi = dispersion(
                [(n, x) for n, x in units[True].tolist()],
                [(n, x) for n, x in units[False].tolist()],
            ).phi
        partial = stratum_log_ratios(RateSample(Tally(n_t, x_t), Tally(n_c, x_c)), theta0, grid)
        per_stage = dict(finished)
        row = per_stage.get(tick.stage, [0.0] * len(grid))
        per_stage[tick.stage] = [a + b for a, b in zip(row, partial, strict=True)]
        if restarted_log_evidence(discounted_stages(per_stage, phi), stages) >= threshold:
            return Outcome(index, counted, exposed_total)
    return Outcome(None, None, exposed_total)


# --- the scenarios ---------------------------------------------------------------------------


def sprt_exposed(
    theta0: float, theta1: float, share: float, rate: float, alpha: float, beta: float = 0.05
) -> float:
    """Wald's approximation of the SPRT's expected exposed requests under θ1, for the
    conditional binomial test of θ0 against θ1 — which is also Wald's lower bound on the
    expected sample size of any level-α test of power 1 - β (``beta=0``: a test that always
    detects needs at least log(1/α) / KL; Wald, *Sequential Analysis*, 1947, §3.4)."""
    r = share / (1 - share)
    p0, p1 = theta0 * r / (theta0 * r + 1), theta1 * r / (theta1 * r + 1)
    kl = p1 * math.log(p1 / p0) + (1 - p1) * math.log((1 - p1) / (1 - p0))
    events_per_exposed = rate * theta1 + rate / r
    boundary = (1 - beta) * math.log((1 - beta) / alpha)
    if beta:
        boundary += beta * math.log(beta / (1 - alpha))
    return boundary / (kl * events_per_exposed)


TENANT_PLAN = (
    "flag: f\nunit: tenant\nguards: [{metric: m, kind: rate, tolerance: 10%, by: [tenant]}]\n"
    "stages: [{name: s0, audience: {percent: 2}}, {name: s1, audience: {percent: 6}}]\n"
)


#: The users of issue 9's item 6: about 1,000 of 20,000 exposed, Pareto(1.5) requests per user,
#: 2 % of clients failing half their requests.
USERS: dict[str, Any] = {
    "users": 20_000,
    "share": 0.05,
    "per_tick": 2000,
    "base": 0.01,
    "broken": 0.02,
    "broken_rate": 0.5,
    "tail": 1.5,
    "ticks": 1000,
}


def _constant(value: float) -> Callable[[int, datetime], float]:
    return lambda stage, at: value


def scenarios() -> list[Scenario]:
    day = 24 * 60
    result = [
        Scenario(
            "aa",
            "A/A: 5 % exposed, 1 % errors, 200,000 exposed requests",
            _plan("10%"),
            rate_world(per_tick=2000, share=_constant(0.05), base=_constant(0.01), ticks=2000),
            null=True,
        ),
        Scenario(
            "at_tolerance",
            "exposed exactly at the tolerance (1 % → 1.1 %)",
            _plan("10%"),
            rate_world(
                per_tick=2000,
                share=_constant(0.05),
                base=_constant(0.01),
                effect=_constant(1.1),
                ticks=2000,
            ),
            null=True,
        ),
        Scenario(
            "quiet_hours_tenant",
            "(1) unit: tenant, by: [tenant]; a tenant with business hours is on the baseline "
            "for a day, then exposed for a day; base rate ±50 % over the day; A/A",
            TENANT_PLAN,
            tenant_world(
                tenants=6,
                exposed=(frozenset(), frozenset({1})),
                stage_at=lambda tick: 0 if tick < day else 1,
                quiet=frozenset({1}),
                base=0.01,
                amplitude=0.5,
                ticks=2 * day,
                per_tick=2000,
            ),
            null=True,
            segments=True,
        ),
        Scenario(
            "base_rate_halves_at_expansion",
            "(3) at the tolerance while the base rate halves at an expansion (1.5 % → 0.75 %, "
            "5 % → 25 % exposed)",
            _plan("10%", stages=2),
            rate_world(
                per_tick=2000,
                share=lambda stage, at: (0.05, 0.25)[stage],
                base=lambda stage, at: (0.015, 0.0075)[stage],
                effect=_constant(1.1),
                stage_at=lambda tick: 0 if tick < day else 1,
                ticks=2 * day,
            ),
            null=True,
        ),
    ]
    for minutes in (60, 30, 15, 5):
        result.append(
            Scenario(
                f"regimes_{minutes}m",
                f"(4) exposed share and base rate change together every 30 minutes "
                f"(2 %/0.5 % ↔ 8 %/1.5 %), A/A, stratum {minutes}m",
                _plan("10%") + f"stratum: {minutes}m\n",
                rate_world(
                    per_tick=2000,
                    share=lambda stage, at: 0.02 if at.minute < 30 else 0.08,
                    base=lambda stage, at: 0.005 if at.minute < 30 else 0.015,
                    ticks=2 * day,
                ),
                null=True,
            )
        )
    result.append(
        Scenario(
            "latency_stage_change",
            "(2) latency A/A; share and level change at a stage boundary (5 % at 100 ms → 25 % at "
            "150 ms p95, for everyone), tolerance 10 %",
            _plan("10%", stages=2, kind="latency"),
            latency_world(
                per_tick=400,
                stage_at=lambda tick: 0 if tick < 6 * 60 else 1,
                share=(0.05, 0.25),
                p95=(100.0, 150.0),
                exposed_scale=1.0,
                ticks=12 * 60,
            ),
            null=True,
            latency=True,
        )
    )
    result.append(
        Scenario(
            "latency_p95_30pct",
            "latency p95 30 % worse (tolerance 10 %), 5 % exposed",
            _plan("10%", kind="latency"),
            latency_world(
                per_tick=2000,
                stage_at=lambda tick: 0,
                share=(0.05,),
                p95=(120.0,),
                exposed_scale=1.3,
                ticks=12 * 60,
            ),
            null=False,
            latency=True,
        )
    )
    for base, factor, tolerance in (
        (0.01, 2.0, 0.1),
        (0.01, 1.5, 0.1),
        (0.001, 2.0, 0.1),
        (0.10, 1.2, 0.1),
    ):
        name = f"rate_{base:g}_x{factor:g}"
        result.append(
            Scenario(
                name,
                f"{base:.1%} → {base * factor:.1%}, 5 % exposed, tolerance {tolerance:.0%}",
                _plan(f"{tolerance:.0%}"),
                rate_world(
                    per_tick=2000,
                    share=_constant(0.05),
                    base=_constant(base),
                    effect=_constant(factor),
                    ticks=20_000 if base < 0.01 else 6000,
                    replicates=True,
                ),
                null=False,
                sprt=sprt_exposed(1 + tolerance, factor, 0.05, base, 0.01),
                target=1.6 if base >= 0.1 else 1.3,
            )
        )
    for hours in (0, 1, 6, 24):
        ticks = hours * 60
        result.append(
            Scenario(
                f"stage_debt_{hours}h",
                f"(5) a clean stage at 5 % for {hours} h, then 1 % → 2 % at 25 % (5-stage plan)",
                _plan("10%", stages=5),
                rate_world(
                    # About 100 exposed requests a look in either stage.
                    per_tick=lambda stage: 2000 if stage == 0 else 400,
                    share=lambda stage, at: 0.05 if stage == 0 else 0.25,
                    base=_constant(0.01),
                    effect=lambda stage, at: 1.0 if stage == 0 else 2.0,
                    stage_at=lambda tick, ticks=ticks: 0 if tick < ticks else 1,
                    ticks=ticks + 3000,
                    replicates=True,
                ),
                null=False,
                count_from_stage=1,
            )
        )
    tenant_sprt = sprt_exposed(1.1, 2.0, 0.05, 0.01, 0.01 / 21)
    result.append(
        Scenario(
            "one_tenant_x2",
            "one tenant of 20 (10 % of traffic) 1 % → 2 %, unit: user, by: [tenant]; exposed "
            "requests of that tenant to detection, against the SPRT at α/21",
            _plan("10%", by="tenant"),
            tenant_world(
                tenants=20,
                base=0.01,
                ticks=4 * day,
                per_tick=2000,
                unit_is_tenant=False,
                effect={2: 2.0},  # Zipf weights: the third tenant has 10 % of the traffic
            ),
            null=False,
            segments=True,
            sprt=tenant_sprt,
            target=1.3,
            count_segment="tenant=t2",
        )
    )
    result.append(
        Scenario(
            "users_heavy_tailed_broken",
            "(6) unit: user, 20,000 users (about 1,000 exposed), Pareto(1.5) requests per user, "
            "2 % of clients failing half their requests on both sides; A/A",
            _plan("10%"),
            user_world(**USERS),
            null=True,
            heavy=True,
        )
    )
    result.append(
        Scenario(
            "users_heavy_tailed_broken_x2",
            "(6) the same users; the exposed users' failures doubled (1 % → 2 % for most, "
            "broken clients 50 % → 100 %)",
            _plan("10%"),
            user_world(**USERS, effect=2.0),
            null=False,
            heavy=True,
        )
    )
    for name, what, scale, replicates in (
        ("latency_users", "A/A", 1.0, True),
        ("latency_users_no_replicates", "A/A, the SDK shipping no replicates", 1.0, False),
        ("latency_users_x1.3", "the exposed users' latencies × 1.3", 1.3, True),
    ):
        result.append(
            Scenario(
                name,
                "(6) latency p95, tolerance 2 %, unit: user: 20,000 users (about 1,000 "
                "exposed), Pareto(1.5) requests per user, 2 % of clients 3× slower on both "
                f"sides; {what}",
                _plan("2%", kind="latency"),
                latency_user_world(
                    Tick if replicates else _without_replicates,
                    **LATENCY_USERS,
                    exposed_scale=scale,
                ),
                null=scale == 1.0,
                latency=True,
                heavy=True,
            )
        )
    result.append(
        Scenario(
            "tenants_own_base_rates",
            "(6) unit: tenant, by: [tenant], 47 tenants each with its own base rate "
            "(σ = 0.3 on the log scale); 1 drawn at random exposed for a day, then 3; A/A",
            TENANT_PLAN.replace("by: [tenant]", "by: [tenant], max_segments: 47"),
            tenant_world(
                tenants=47,
                base=0.01,
                ticks=2 * day,
                per_tick=2000,
                exposed_counts=(1, 3),
                stage_at=lambda tick: 0 if tick < day else 1,
                sigma=0.3,
            ),
            null=True,
            segments=True,
        )
    )
    return result


#: Issue 9's users for a latency guard: about 1,000 of 20,000 exposed, Pareto(1.5) requests per
#: user, 2 % of clients 3× slower (they make about 2 % of requests, 40 % of those beyond p95).
LATENCY_USERS: dict[str, Any] = {
    "users": 20_000,
    "share": 0.05,
    "per_tick": 2000,
    "p95": 120.0,
    "slow_clients": 0.02,
    "slow_scale": 3.0,
    "tail": 1.5,
    "ticks": 1000,
}


def _without_replicates(stage: int, requests: Any, **fields: Any) -> Tick:
    """A ``Tick`` as from an SDK that ships no replicates."""
    fields.pop("replicates", None)
    return Tick(stage, requests, **fields)


# --- running ---------------------------------------------------------------------------------


#: How a run is judged: the fast path, the controller's incremental path, or from scratch at
#: every tick (the reference both are checked against).
FAST, INCREMENTAL, FULL = "fast", "incremental", "full"


def _chunk(args: tuple[str, int, int, int, str]) -> list[Outcome]:
    name, seed, first, count, path = args
    scenario = next(s for s in scenarios() if s.name == name)
    plan = load_plan(scenario.plan)
    outcomes = []
    for index in range(first, first + count):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
        if path == FAST:
            outcomes.append(run_fast_path(scenario, plan, rng))
        else:
            outcomes.append(run_store_path(scenario, plan, rng, full=path == FULL))
    return outcomes


def wilson(k: int, n: int) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def measure(
    scenario: Scenario, runs: int, seed: int, check: int, jobs: int, start: int = 0
) -> dict[str, object]:
    """``runs`` runs of ``scenario``, numbered from ``start`` (run i draws from the seed's i-th
    child stream, so runs 0–1,499 and then 1,500–9,999 are the runs 0–9,999 of one call)."""
    path = INCREMENTAL if scenario.latency or scenario.segments else FAST
    began = time.perf_counter()
    size = max(1, math.ceil(runs / (jobs * 4)))
    tasks = [
        (scenario.name, seed, start + first, min(size, runs - first), path)
        for first in range(0, runs, size)
    ]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        outcomes = [o for chunk in pool.map(_chunk, tasks) for o in chunk]
        # The first ``check`` runs again, judged from scratch at every tick, in ``jobs`` chunks.
        part = max(1, math.ceil(check / jobs))
        checks = [
            (scenario.name, seed, start + first, min(part, check - first), FULL)
            for first in range(0, check, part)
        ]
        reference = [o for chunk in pool.map(_chunk, checks) for o in chunk]
    for index, (a, b) in enumerate(zip(outcomes[: len(reference)], reference, strict=True)):
        if (a.harm_tick, a.by_segment) != (b.harm_tick, b.by_segment):
            raise SystemExit(
                f"{scenario.name}: run {index}: the {path} path decided at tick "
                f"{a.harm_tick} (by a segment: {a.by_segment}), the store's path judging from "
                f"scratch at {b.harm_tick} (by a segment: {b.by_segment})"
            )
    harmed = [o for o in outcomes if o.harm_tick is not None]
    low, high = wilson(len(harmed), runs)
    row: dict[str, object] = {
        # A part of a scenario run in parts keeps its own row.
        "name": f"{scenario.name}@{start}" if start else scenario.name,
        "what": scenario.what,
        "null": scenario.null,
        "runs": runs,
        "first_run": start,
        "harmed": len(harmed),
        "path": path,
        "checked_runs": len(reference),
        "harm_share": len(harmed) / runs,
        "harm_by_segment": sum(o.by_segment for o in harmed),
        "harm_interval": [low, high],
        "seconds": round(time.perf_counter() - began, 1),
    }
    if harmed:
        needed = [float(o.exposed_at_harm or 0) for o in harmed]
        mean = sum(needed) / len(needed)
        sd = float(np.std(needed)) if len(needed) > 1 else 0.0
        row["mean_exposed_to_harm"] = mean
        row["mean_interval_halfwidth"] = Z95 * sd / math.sqrt(len(needed))
        row["p90_exposed_to_harm"] = float(np.percentile(needed, 90))
    if scenario.sprt:
        row["sprt"] = scenario.sprt
        row["ratio_to_sprt"] = row.get("mean_exposed_to_harm", math.inf) / scenario.sprt  # type: ignore[operator]
        row["target_ratio"] = scenario.target
    if scenario.null:
        row["met"] = len(harmed) / runs <= 0.01 and high <= 0.015
    elif scenario.target:
        row["met"] = len(harmed) / runs >= 0.95 and row["ratio_to_sprt"] <= scenario.target  # type: ignore[operator]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10_000, help="runs per rate scenario")
    parser.add_argument("--latency-runs", type=int, default=1_000)
    parser.add_argument(
        "--store-runs", type=int, default=1_000, help="runs per segment or user-level scenario"
    )
    parser.add_argument(
        "--check", type=int, default=50, help="fast-path runs re-run on the store's path"
    )
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument(
        "--first",
        type=int,
        default=0,
        help="the number of the first run (to run a scenario in parts)",
    )
    args = parser.parse_args()
    rows = []
    columns = ("scenario", "runs", "harm", "95% interval", "mean exposed", "× SPRT")
    print("{:34} {:>6} {:>7} {:>17} {:>13} {:>7}  met".format(*columns))
    for scenario in scenarios():
        if args.only and scenario.name not in args.only:
            continue
        runs = (
            args.latency_runs
            if scenario.latency
            else args.store_runs
            if scenario.segments or scenario.heavy
            else args.runs
        )
        row = measure(scenario, runs, args.seed, min(args.check, runs), args.jobs, args.first)
        rows.append(row)
        low, high = row["harm_interval"]  # type: ignore[misc]
        mean = row.get("mean_exposed_to_harm")
        ratio = row.get("ratio_to_sprt")
        print(
            f"{scenario.name:34} {runs:>6} {row['harm_share']:>7.2%} "
            f"{f'{low:.2%}–{high:.2%}':>17} "
            f"{(f'{mean:,.0f}' if mean is not None else '—'):>13} "
            f"{(f'{ratio:.2f}' if ratio is not None else ''):>7}  {row.get('met', '')}",
            flush=True,
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() and args.only else {}
    scenarios_out = {row["name"]: row for row in existing.get("scenarios", [])}
    scenarios_out.update({row["name"]: row for row in rows})  # type: ignore[misc]
    RESULTS.write_text(
        json.dumps(
            {
                "seed": args.seed,
                "alpha": 0.01,
                "measured": datetime.now(UTC).isoformat(timespec="seconds"),
                "scenarios": list(scenarios_out.values()),
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
