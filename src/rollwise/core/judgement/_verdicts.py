"""A guard's verdict from its evidence: safe, harm or pending, with the numbers behind it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from rollwise.core._plan import Guard, GuardKind, Worse
from rollwise.core.judgement._evidence import (
    HARM_ALTERNATIVES,
    SAFE_ALTERNATIVES,
    SAFE_ERROR_RATE,
    bernoulli_log_evidence,
    harm_log_evidence,
    quantile_bounds,
    rate_bounds,
    rate_log_evidence,
    rate_ratio,
)
from rollwise.core.judgement._histogram import add_histograms, histogram_quantile
from rollwise.core.judgement._observations import (
    GaugeReading,
    LatencySample,
    RateSample,
    SegmentKey,
    Tally,
)
from rollwise.core.judgement._tail import tail_strata

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


def _total(samples: Sequence[RateSample]) -> tuple[Tally, Tally]:
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


def judge_rate(
    guard: Guard,
    samples: Sequence[RateSample],
    stage: int,
    harm_alpha: float,
    segment: SegmentKey = None,
    bounds: bool = True,
    stages: int = 1,
    own: OwnRatio | None = None,
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
    """
    history = [sample for sample in samples if sample.stage <= stage]
    current = [sample for sample in history if sample.stage == stage]
    exposed, baseline = _total(history)
    stage_exposed, _ = _total(current)
    higher = guard.worse is Worse.HIGHER
    sign = 1 if higher else -1
    tolerance = guard.tolerance
    limit = _limit_evidence(exposed, guard)
    tests = (1 if tolerance is not None else 0) + (1 if limit is not None else 0)
    halves = 2 if own is not None else 1
    log_harm = math.log(max(tests, 1) * halves / harm_alpha)
    log_safe = math.log(max(tests, 1) * halves / SAFE_ERROR_RATE)
    estimate = rate_ratio(history)
    if estimate is not None and own is not None and own.known:
        estimate = estimate / own.estimate  # without history: the ratio to the others as is
    label = f"{guard.metric}{_where(segment)}"
    shown = f"{_percent(exposed.rate or 0)} exposed vs {_percent(baseline.rate or 0)} baseline"
    if own is not None:
        shown += f", {own.describe()}"
    change = f"{(estimate - 1) * 100:+.0f}%" if estimate is not None else "n/a"

    harm = False
    safe = tests > 0
    theta0: float | None = None
    harm_e = safe_e = 0.0
    lower = upper = None
    if tolerance is not None:
        # Only a relative tolerance is a hypothesis about θ; plan files refuse absolute ones
        # for rates (docs/judgement.md), and one built in code is never judged safe.
        if tolerance.relative:
            theta0 = 1 + sign * tolerance.amount
        if theta0 is None:
            safe = False
        else:
            harm_alts = HARM_ALTERNATIVES if higher else _HARM_BELOW
            safe_alts = SAFE_ALTERNATIVES if higher else _SAFE_ABOVE
            # With the unit's own ratio: the worse end of it for harm, the better for safety.
            harm_scale, safe_scale = (1.0, 1.0) if own is None else own.scales(higher)
            if math.isfinite(harm_scale) and harm_scale > 0:
                harm_e = harm_log_evidence(history, theta0 * harm_scale, harm_alts, stages)
                harm = harm_e >= log_harm
            if math.isfinite(safe_scale) and safe_scale > 0:
                safe_e = rate_log_evidence(current, theta0 * safe_scale, safe_alts)
                safe = safe_e >= log_safe
            else:
                safe = False
            if bounds:
                lower, upper = rate_bounds(history, current, log_harm, log_safe, higher, stages)
                if own is not None:
                    lower = lower / own.upper if own.upper < math.inf else 0.0
                    upper = upper / own.lower if own.lower > 0 else math.inf
    limit_note = ""
    if limit is not None:
        limit_harm, _ = limit
        limit_value = guard.maximum if guard.maximum is not None else guard.minimum
        if limit_harm >= log_harm:
            harm = True
            limit_note = f", past its limit of {_percent(limit_value or 0)}"
        # Safety against the limit, like safety against the baseline, is about this stage.
        stage_limit = _limit_evidence(stage_exposed, guard)
        safe = safe and stage_limit is not None and stage_limit[1] >= log_safe
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
        theta0,
        tolerance.text if tolerance else "",
        exposed,
        baseline,
        harm_evidence=harm_e,
        safe_evidence=safe_e,
    )


def judge_latency(
    guard: Guard,
    samples: Sequence[LatencySample],
    stage: int,
    harm_alpha: float,
    segment: SegmentKey = None,
    stages: int = 1,
    bounds: bool = True,
) -> GuardVerdict:
    """Judge a latency guard stratum by stratum, as tail counts (``tail_strata``).

    Harm: evidence that, window by window, more exposed requests are slower than the tolerated
    transform of the baseline's tail point than baseline requests are slower than that point
    (θ > 1), over the whole rollout with stage restarts like a rate. Safe: evidence of θ < 1 on
    the current stage. A ``max`` adds a test of the exposed quantile against it (α split).
    The quantiles and the interval shown are read from the histograms pooled over the rollout
    and over the current stage: they describe, the tail test decides. ``bounds=False`` skips
    them unless a ``max`` needs them (the simulator's hot loop).
    """
    quantile = guard.quantile or 0.95
    history = [sample for sample in samples if sample.stage <= stage]
    exposed_all: tuple[int, ...] = ()
    baseline_all: tuple[int, ...] = ()
    stage_exposed: tuple[int, ...] = ()
    stage_baseline: tuple[int, ...] = ()
    if bounds or guard.maximum is not None:
        for sample in history:
            exposed_all = add_histograms(exposed_all, sample.exposed)
            baseline_all = add_histograms(baseline_all, sample.baseline)
            if sample.stage == stage:
                stage_exposed = add_histograms(stage_exposed, sample.exposed)
                stage_baseline = add_histograms(stage_baseline, sample.baseline)
    higher = guard.worse is Worse.HIGHER
    tolerance = guard.tolerance

    def tolerated(reference: float) -> float:
        """The worst acceptable exposed latency, given a baseline latency."""
        if tolerance is None:
            return reference
        if tolerance.relative:
            return reference * (1 + tolerance.amount if higher else 1 - tolerance.amount)
        return reference + tolerance.amount if higher else reference - tolerance.amount

    tests = (1 if tolerance is not None else 0) + (1 if guard.maximum is not None else 0)
    log_harm = math.log(max(tests, 1) / harm_alpha)
    log_safe = math.log(max(tests, 1) / SAFE_ERROR_RATE)
    harm = False
    safe = tests > 0
    harm_e = safe_e = 0.0
    tail_note = ""
    if tolerance is not None:
        tails = tail_strata(history, quantile, tolerated, higher)
        current = [s for s in tails.safe if s.stage == stage]
        harm_e = harm_log_evidence(tails.harm, 1.0, HARM_ALTERNATIVES, stages)
        safe_e = rate_log_evidence(current, 1.0, SAFE_ALTERNATIVES)
        harm = harm_e >= log_harm
        safe = safe_e >= log_safe
        ratio = rate_ratio(tails.harm)
        if ratio is not None:
            beyond = "slower" if higher else "faster"
            tail_note = (
                f"; {ratio:.2f}× as many exposed requests {beyond} than tolerated as baseline "
                f"requests beyond its p{quantile * 100:g}, window by window"
            )
    exposed_q = histogram_quantile(exposed_all, quantile)
    baseline_q = histogram_quantile(baseline_all, quantile)
    if guard.maximum is not None:
        limit_low, _ = quantile_bounds(exposed_all, quantile, log_harm)
        _, stage_high = quantile_bounds(stage_exposed, quantile, log_safe)
        harm = harm or limit_low > guard.maximum
        safe = safe and stage_high <= guard.maximum
    label = f"{guard.metric} p{quantile * 100:g}{_where(segment)}"
    shown = (
        f"{exposed_q:.0f} ms exposed vs {baseline_q:.0f} ms baseline{tail_note}"
        if exposed_q is not None and baseline_q is not None
        else (tail_note[2:] if tail_note else "no data yet")
    )
    if harm:
        verdict, sentence = Verdict.HARM, f"{label} is worse than tolerated: {shown}"
    elif safe:
        verdict, sentence = Verdict.SAFE, f"{label} is within tolerance: {shown}"
    else:
        verdict, sentence = Verdict.PENDING, f"{label}: not conclusive yet: {shown}"
    estimate = exposed_q - baseline_q if exposed_q is not None and baseline_q is not None else None
    # The interval shown: the current stage's quantile confidence sequences, side against side.
    level = math.log(2 / SAFE_ERROR_RATE)
    t_low, t_high = quantile_bounds(stage_exposed, quantile, level)
    c_low, c_high = quantile_bounds(stage_baseline, quantile, level)
    return GuardVerdict(
        guard.metric,
        guard.kind,
        verdict,
        sentence,
        segment,
        estimate,
        t_low - c_high if c_high < math.inf else None,
        t_high - c_low if t_high < math.inf else None,
        None,
        tolerance.text if tolerance else "",
        Tally(sum(exposed_all)),
        Tally(sum(baseline_all)),
        exposed_q,
        baseline_q,
        harm_evidence=harm_e,
        safe_evidence=safe_e,
    )


def judge_gauge(guard: Guard, readings: Sequence[GaugeReading], now: datetime) -> GuardVerdict:
    """A system-wide value against absolute limits: harm after ``breaches`` breaching readings
    in a row, safe when the latest readings are all within limits."""
    recent = [r for r in readings if r.at <= now]
    if not recent:
        return GuardVerdict(
            guard.metric, guard.kind, Verdict.PENDING, f"{guard.metric}: no readings yet"
        )

    def breach(index: int) -> str | None:
        reading = recent[index]
        if guard.maximum is not None and reading.value > guard.maximum:
            return f"{reading.value:g} > max {guard.maximum:g}"
        if guard.minimum is not None and reading.value < guard.minimum:
            return f"{reading.value:g} < min {guard.minimum:g}"
        if guard.max_growth_per_minute is not None:
            # Growth against the latest reading at least a minute older.
            for earlier in reversed(recent[:index]):
                minutes = (reading.at - earlier.at) / timedelta(minutes=1)
                if minutes >= 1:
                    growth = (reading.value - earlier.value) / minutes
                    if growth > guard.max_growth_per_minute:
                        return f"grows {growth:.3g}/min > {guard.max_growth_per_minute:g}/min"
                    break
        return None

    latest = recent[-guard.breaches :]
    reasons = [breach(len(recent) - len(latest) + i) for i in range(len(latest))]
    value = recent[-1].value
    limit = guard.maximum if guard.maximum is not None else guard.minimum
    if len(latest) == guard.breaches and all(reasons):
        return GuardVerdict(
            guard.metric,
            guard.kind,
            Verdict.HARM,
            f"{guard.metric}: {reasons[-1]} for {guard.breaches} readings in a row",
            estimate=value,
            threshold=limit,
        )
    if reasons[-1] is None:
        return GuardVerdict(
            guard.metric,
            guard.kind,
            Verdict.SAFE,
            f"{guard.metric} is within its limits ({value:g})",
            estimate=value,
            threshold=limit,
        )
    breached = sum(1 for r in reversed(reasons) if r)
    return GuardVerdict(
        guard.metric,
        guard.kind,
        Verdict.PENDING,
        f"{guard.metric}: {reasons[-1]} ({breached} of {guard.breaches} breaches in a row)",
        estimate=value,
        threshold=limit,
    )
