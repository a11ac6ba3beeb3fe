"""A guard's verdict from its evidence: safe, harm or pending, with the numbers behind it.

A verdict is built in two steps: the *facts* of a series up to a stage (totals, the e-values of
its tests, the estimate), then the verdict from the facts. ``judge_rate`` (and
``judge_latency``, ``_latency.py``) compute the facts from the strata, from scratch; the
incremental judgement (``_rollout.py``) keeps them up to date as aggregates arrive. Both hand
their facts to the same ``rate_verdict`` (``latency_verdict``), so a verdict cannot depend on
which path computed it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from rollwise.core._plan import Guard, GuardKind, Worse
from rollwise.core.judgement._bernoulli import bernoulli_log_evidence
from rollwise.core.judgement._dispersion import NO_DISPERSION, Dispersion
from rollwise.core.judgement._evidence import (
    HARM_ALTERNATIVES,
    SAFE_ALTERNATIVES,
    SAFE_ERROR_RATE,
    harm_log_evidence,
    rate_log_evidence,
    rate_ratio,
)
from rollwise.core.judgement._intervals import rate_bounds
from rollwise.core.judgement._observations import RateSample, SegmentKey, Tally

if TYPE_CHECKING:
    from rollwise.core.judgement._pairing import OwnRatio

# The grids mirrored for `worse: lower`.
_HARM_BELOW = tuple(1 / a for a in HARM_ALTERNATIVES)
_SAFE_ABOVE = tuple(1 / a for a in SAFE_ALTERNATIVES)


class Verdict(StrEnum):
    SAFE = "safe"  # evidence that it is within tolerance
    HARM = "harm"  # evidence of a regression
    PENDING = "pending"  # not enough evidence yet


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """One guard (or one segment of it) judged now, with its evidence."""

    metric: str
    kind: GuardKind
    verdict: Verdict
    sentence: str
    segment: SegmentKey = None
    #: Rates: θ = exposed rate / baseline rate. Latency: the exposed quantile minus (or over)
    #: the baseline's. Gauges: the latest reading.
    estimate: float | None = None
    lower: float | None = None
    upper: float | None = None
    #: The value the estimate is held against (θ0 for rates, the tolerated difference or ratio
    #: for latency, the limit for gauges).
    threshold: float | None = None
    tolerance: str = ""
    exposed: Tally | None = None
    baseline: Tally | None = None
    exposed_quantile: float | None = None
    baseline_quantile: float | None = None
    harm_evidence: float = 0.0  # log E of the harm test, against log(1/α)
    safe_evidence: float = 0.0
    #: Rates: the dispersion between units the evidence was divided by (1: none).
    dispersion: float = 1.0


def total(samples: Sequence[RateSample]) -> tuple[Tally, Tally]:
    n_t = x_t = n_c = x_c = 0
    for sample in samples:
        n_t += sample.exposed.requests
        x_t += sample.exposed.events
        n_c += sample.baseline.requests
        x_c += sample.baseline.events
    return Tally(n_t, x_t), Tally(n_c, x_c)


def _where(segment: SegmentKey) -> str:
    return f" for {segment[0]} {segment[1]}" if segment else ""


def _percent(value: float) -> str:
    return f"{value * 100:.3g}%"


def _limit_evidence(exposed: Tally, guard: Guard) -> tuple[float, float] | None:
    """(log E harm, log E safe) of the exposed rate against the guard's absolute limit."""
    limit, above = (guard.maximum, True) if guard.maximum is not None else (guard.minimum, False)
    if limit is None or not 0 < limit < 1:
        return None
    heavier = [p for p in (limit * m for m in (1.25, 1.6, 2.2, 3.5)) if p < 1]
    lighter = [limit * m for m in (0.8, 0.6, 0.4, 0.2)]
    worse, better = (heavier, lighter) if above else (lighter, heavier)
    return (
        bernoulli_log_evidence(exposed.events, exposed.requests, limit, worse),
        bernoulli_log_evidence(exposed.events, exposed.requests, limit, better),
    )


# --- rates ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RateTests:
    """How a rate guard (or one segment of it) is tested, before any data: the levels, and the
    θ each e-process runs at (None where it does not run)."""

    theta0: float | None
    harm_theta: float | None
    safe_theta: float | None
    harm_alternatives: tuple[float, ...]
    safe_alternatives: tuple[float, ...]
    log_harm: float
    log_safe: float
    tests: int


def rate_tests(guard: Guard, harm_alpha: float, own: OwnRatio | None = None) -> RateTests:
    """``harm_alpha`` is this test's level: the guard's whole-traffic one (``harm_alpha``) or
    a segment's, by its position (``segment_alpha``). A guard with both a tolerance and an
    absolute limit splits it between the two tests; a segment judged against its own history
    (``own``) spends half of it on that history."""
    higher = guard.worse is Worse.HIGHER
    tolerance = guard.tolerance
    limit = guard.maximum if guard.maximum is not None else guard.minimum
    limited = limit is not None and 0 < limit < 1  # as _limit_evidence tests it
    tests = (1 if tolerance is not None else 0) + (1 if limited else 0)
    halves = 2 if own is not None else 1
    theta0 = harm_theta = safe_theta = None
    # Only a relative tolerance is a hypothesis about θ; plan files refuse absolute ones for
    # rates (docs/judgement.md), and one built in code is never judged safe.
    if tolerance is not None and tolerance.relative:
        theta0 = 1 + (1 if higher else -1) * tolerance.amount
        # With the unit's own ratio: the worse end of it for harm, the better for safety.
        harm_scale, safe_scale = (1.0, 1.0) if own is None else own.scales(higher)
        if math.isfinite(harm_scale) and harm_scale > 0:
            harm_theta = theta0 * harm_scale
        if math.isfinite(safe_scale) and safe_scale > 0:
            safe_theta = theta0 * safe_scale
    return RateTests(
        theta0,
        harm_theta,
        safe_theta,
        HARM_ALTERNATIVES if higher else _HARM_BELOW,
        SAFE_ALTERNATIVES if higher else _SAFE_ABOVE,
        math.log(max(tests, 1) * halves / harm_alpha),
        math.log(max(tests, 1) * halves / SAFE_ERROR_RATE),
        tests,
    )


@dataclass(frozen=True, slots=True)
class RateFacts:
    """A rate series up to a stage: totals over all stages so far and over the current one,
    the stratified estimate, and the e-values at ``RateTests``' θs (None where not run)."""

    exposed: Tally
    baseline: Tally
    stage_exposed: Tally
    estimate: float | None
    harm_evidence: float | None
    safe_evidence: float | None
    #: (lower, upper) for θ as ``rate_bounds`` finds them, when asked for.
    bounds: tuple[float, float] | None = None
    #: What the e-values were discounted by (``_dispersion.py``).
    dispersion: Dispersion = NO_DISPERSION


def rate_harmed(
    guard: Guard, tests: RateTests, exposed: Tally, harm_evidence: float | None
) -> bool:
    """Whether the facts show harm: ``rate_verdict(...).verdict is Verdict.HARM``, without the
    safety test or the sentence (what a decision that only needs its move asks first)."""
    if tests.harm_theta is not None and _required(harm_evidence) >= tests.log_harm:
        return True
    limit = _limit_evidence(exposed, guard)
    return limit is not None and limit[0] >= tests.log_harm


def rate_verdict(
    guard: Guard,
    tests: RateTests,
    facts: RateFacts,
    segment: SegmentKey = None,
    own: OwnRatio | None = None,
) -> GuardVerdict:
    exposed, baseline = facts.exposed, facts.baseline
    tolerance = guard.tolerance
    limit = _limit_evidence(exposed, guard)
    estimate = facts.estimate
    if estimate is not None and own is not None and own.known:
        estimate = estimate / own.estimate  # without history: the ratio to the others as is
    label = f"{guard.metric}{_where(segment)}"
    shown = f"{_percent(exposed.rate or 0)} exposed vs {_percent(baseline.rate or 0)} baseline"
    if own is not None:
        shown += f", {own.describe()}"
    if facts.dispersion.applied:
        shown += f", {facts.dispersion.describe()}"
    change = f"{(estimate - 1) * 100:+.0f}%" if estimate is not None else "n/a"

    harm = False
    safe = tests.tests > 0
    harm_e = safe_e = 0.0
    lower = upper = None
    if tolerance is not None:
        if tests.theta0 is None:
            safe = False
        else:
            if tests.harm_theta is not None:
                harm_e = _required(facts.harm_evidence)
                harm = harm_e >= tests.log_harm
            if tests.safe_theta is not None:
                safe_e = _required(facts.safe_evidence)
                safe = safe_e >= tests.log_safe
            else:
                safe = False
            if facts.bounds is not None:
                lower, upper = facts.bounds
                if own is not None:
                    lower = lower / own.upper if own.upper < math.inf else 0.0
                    upper = upper / own.lower if own.lower > 0 else math.inf
    limit_note = ""
    if limit is not None:
        limit_harm, _ = limit
        limit_value = guard.maximum if guard.maximum is not None else guard.minimum
        if limit_harm >= tests.log_harm:
            harm = True
            limit_note = f", past its limit of {_percent(limit_value or 0)}"
        # Safety against the limit, like safety against the baseline, is about this stage.
        stage_limit = _limit_evidence(facts.stage_exposed, guard)
        safe = safe and stage_limit is not None and stage_limit[1] >= tests.log_safe
        harm_e = max(harm_e, limit_harm)
    if harm:
        verdict = Verdict.HARM
        sentence = (
            f"{label} is worse than tolerated: {shown} ({change}, tolerance "
            f"{tolerance.text if tolerance else 'none'}){limit_note}"
        )
    elif safe:
        verdict = Verdict.SAFE
        sentence = f"{label} is within tolerance: {shown} ({change})"
    else:
        verdict = Verdict.PENDING
        sentence = (
            f"{label}: not conclusive yet: {shown} ({change}) over "
            f"{exposed.requests:,} exposed requests"
        )
    return GuardVerdict(
        guard.metric,
        guard.kind,
        verdict,
        sentence,
        segment,
        estimate,
        lower,
        upper,
        tests.theta0,
        tolerance.text if tolerance else "",
        exposed,
        baseline,
        harm_evidence=harm_e,
        safe_evidence=safe_e,
        dispersion=facts.dispersion.phi,
    )


def _required(value: float | None) -> float:
    if value is None:
        raise ValueError("the facts lack an e-value their tests need")
    return value


def judge_rate(
    guard: Guard,
    samples: Sequence[RateSample],
    stage: int,
    harm_alpha: float,
    segment: SegmentKey = None,
    bounds: bool = True,
    stages: int = 1,
    own: OwnRatio | None = None,
    pending_bounds: bool = True,
    dispersion: Dispersion = NO_DISPERSION,
) -> GuardVerdict:
    """Judge a rate guard from its strata up to ``stage`` of a plan with ``stages`` stages.

    Harm uses every stratum so far (one e-process for the whole rollout, averaged with its
    restarts at each stage start: ``harm_log_evidence``); safety uses the current stage's only,
    so an expansion rests on evidence about the current exposure. A guard with both a
    tolerance and an absolute limit splits its α between the two tests.

    ``own``: for a segment that is a whole unit (a tenant with ``unit: tenant``), compared with
    the other units' baseline, its own ratio to them before it was exposed, as an interval
    found at half the segment's levels; the tolerance tests then run at the other half against
    θ0 times the far end of that interval (``OwnRatio``).

    ``pending_bounds=False`` leaves out the bounds of a pending verdict (a decision does not
    keep pending segments: their bounds would be found for nothing).

    ``dispersion``: how much requests of one unit move together (``_dispersion.py``); every
    e-value, and so the bounds, is taken with the summed log likelihood ratios divided by φ.
    """
    phi = dispersion.phi
    history = [sample for sample in samples if sample.stage <= stage]
    current = [sample for sample in history if sample.stage == stage]
    tests = rate_tests(guard, harm_alpha, own)
    exposed, baseline = total(history)
    higher = guard.worse is Worse.HIGHER
    facts = RateFacts(
        exposed,
        baseline,
        total(current)[0],
        rate_ratio(history),
        None
        if tests.harm_theta is None
        else harm_log_evidence(history, tests.harm_theta, tests.harm_alternatives, stages, phi),
        None
        if tests.safe_theta is None
        else rate_log_evidence(current, tests.safe_theta, tests.safe_alternatives, phi),
        dispersion=dispersion,
    )
    verdict = rate_verdict(guard, tests, facts, segment, own)
    if not bounds or tests.theta0 is None:
        return verdict
    if not pending_bounds and verdict.verdict is Verdict.PENDING:
        return verdict
    shown = rate_bounds(history, current, tests.log_harm, tests.log_safe, higher, stages, phi)
    return rate_verdict(guard, tests, replace(facts, bounds=shown), segment, own)
