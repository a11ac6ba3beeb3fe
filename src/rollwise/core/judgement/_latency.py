"""A latency guard's verdict: the tail test of ``_tail.py`` window by window, and the quantiles
and interval shown, from facts computed from scratch (``judge_latency``) or kept up to date
(``_latency_state.py``), as for rates (``_verdicts.py``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rollwise.core._plan import Guard, Worse
from rollwise.core.judgement._bernoulli import quantile_bounds
from rollwise.core.judgement._dispersion import NO_DISPERSION, Dispersion
from rollwise.core.judgement._evidence import (
    HARM_ALTERNATIVES,
    SAFE_ALTERNATIVES,
    SAFE_ERROR_RATE,
    harm_log_evidence,
    rate_log_evidence,
    rate_ratio,
)
from rollwise.core.judgement._histogram import add_histograms, histogram_quantile
from rollwise.core.judgement._observations import LatencySample, SegmentKey, Tally
from rollwise.core.judgement._tail import tail_strata
from rollwise.core.judgement._verdicts import GuardVerdict, Verdict, _required, _where


def tolerated_latency(guard: Guard) -> Callable[[float], float]:
    """The worst acceptable exposed latency, given a baseline latency."""
    tolerance = guard.tolerance
    higher = guard.worse is Worse.HIGHER

    def tolerated(reference: float) -> float:
        if tolerance is None:
            return reference
        if tolerance.relative:
            return reference * (1 + tolerance.amount if higher else 1 - tolerance.amount)
        return reference + tolerance.amount if higher else reference - tolerance.amount

    return tolerated


def latency_levels(guard: Guard, harm_alpha: float) -> tuple[float, float, int]:
    """(log threshold of harm, of safety, number of tests) for a latency guard."""
    tests = (1 if guard.tolerance is not None else 0) + (1 if guard.maximum is not None else 0)
    return (
        math.log(max(tests, 1) / harm_alpha),
        math.log(max(tests, 1) / SAFE_ERROR_RATE),
        tests,
    )


@dataclass(frozen=True, slots=True)
class LatencyFacts:
    """A latency series up to a stage: the tail tests' e-values and tail ratio (None without a
    tolerance), and the histograms pooled over all stages so far and over the current one
    (empty unless bounds or a ``max`` need them); the dispersion between units the tail
    tests' evidence was divided by."""

    harm_evidence: float | None
    safe_evidence: float | None
    tail_ratio: float | None
    exposed_all: Sequence[int] = ()
    baseline_all: Sequence[int] = ()
    stage_exposed: Sequence[int] = ()
    stage_baseline: Sequence[int] = ()
    dispersion: Dispersion = field(default=NO_DISPERSION, kw_only=True)


def latency_harmed(guard: Guard, harm_alpha: float, facts: LatencyFacts) -> bool:
    """``latency_verdict(...).verdict is Verdict.HARM``, without the rest."""
    log_harm, _, _ = latency_levels(guard, harm_alpha)
    if guard.tolerance is not None and _required(facts.harm_evidence) >= log_harm:
        return True
    if guard.maximum is not None:
        limit_low, _ = quantile_bounds(facts.exposed_all, guard.quantile or 0.95, log_harm)
        return limit_low > guard.maximum
    return False


def latency_verdict(
    guard: Guard, harm_alpha: float, facts: LatencyFacts, segment: SegmentKey = None
) -> GuardVerdict:
    quantile = guard.quantile or 0.95
    higher = guard.worse is Worse.HIGHER
    tolerance = guard.tolerance
    log_harm, log_safe, tests = latency_levels(guard, harm_alpha)
    harm = False
    safe = tests > 0
    harm_e = safe_e = 0.0
    tail_note = ""
    if tolerance is not None:
        harm_e = _required(facts.harm_evidence)
        safe_e = _required(facts.safe_evidence)
        harm = harm_e >= log_harm
        safe = safe_e >= log_safe
        ratio = facts.tail_ratio
        if ratio is not None:
            beyond = "slower" if higher else "faster"
            tail_note = (
                f"; {ratio:.2f}× as many exposed requests {beyond} than tolerated as baseline "
                f"requests beyond its p{quantile * 100:g}, window by window"
            )
    exposed_q = histogram_quantile(facts.exposed_all, quantile)
    baseline_q = histogram_quantile(facts.baseline_all, quantile)
    if guard.maximum is not None:
        limit_low, _ = quantile_bounds(facts.exposed_all, quantile, log_harm)
        _, stage_high = quantile_bounds(facts.stage_exposed, quantile, log_safe)
        harm = harm or limit_low > guard.maximum
        safe = safe and stage_high <= guard.maximum
    label = f"{guard.metric} p{quantile * 100:g}{_where(segment)}"
    shown = (
        f"{exposed_q:.0f} ms exposed vs {baseline_q:.0f} ms baseline{tail_note}"
        if exposed_q is not None and baseline_q is not None
        else (tail_note[2:] if tail_note else "no data yet")
    )
    if facts.dispersion.applied and tolerance is not None:
        shown += f", {facts.dispersion.describe()}"
    if harm:
        verdict, sentence = Verdict.HARM, f"{label} is worse than tolerated: {shown}"
    elif safe:
        verdict, sentence = Verdict.SAFE, f"{label} is within tolerance: {shown}"
    else:
        verdict, sentence = Verdict.PENDING, f"{label}: not conclusive yet: {shown}"
    estimate = exposed_q - baseline_q if exposed_q is not None and baseline_q is not None else None
    # The interval shown: the current stage's quantile confidence sequences, side against side.
    level = math.log(2 / SAFE_ERROR_RATE)
    t_low, t_high = quantile_bounds(facts.stage_exposed, quantile, level)
    c_low, c_high = quantile_bounds(facts.stage_baseline, quantile, level)
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
        Tally(sum(facts.exposed_all)),
        Tally(sum(facts.baseline_all)),
        exposed_q,
        baseline_q,
        harm_evidence=harm_e,
        safe_evidence=safe_e,
        dispersion=facts.dispersion.phi if tolerance is not None else 1.0,
    )


def judge_latency(
    guard: Guard,
    samples: Sequence[LatencySample],
    stage: int,
    harm_alpha: float,
    segment: SegmentKey = None,
    stages: int = 1,
    bounds: bool = True,
    dispersion: Dispersion = NO_DISPERSION,
) -> GuardVerdict:
    """Judge a latency guard stratum by stratum, as tail counts (``tail_strata``).

    Harm: evidence that, window by window, more exposed requests are slower than the tolerated
    transform of the baseline's tail point than baseline requests are slower than that point
    (θ > 1), over the whole rollout with stage restarts like a rate. Safe: evidence of θ < 1 on
    the current stage. A ``max`` adds a test of the exposed quantile against it (α split).
    The quantiles and the interval shown are read from the histograms pooled over the rollout
    and over the current stage: they describe, the tail test decides. ``bounds=False`` skips
    them unless a ``max`` needs them (the simulator's hot loop). ``dispersion``: how far the
    tail counts of one unit move together (``_dispersion.py``, from the replicates' counts of
    requests beyond the tail point the SDK ships); the tail tests' summed log ratios are
    divided by it, as a rate's are.
    """
    history = [sample for sample in samples if sample.stage <= stage]
    pooled: list[tuple[int, ...]] = [(), (), (), ()]
    if bounds or guard.maximum is not None:
        for sample in history:
            pooled[0] = add_histograms(pooled[0], sample.exposed)
            pooled[1] = add_histograms(pooled[1], sample.baseline)
            if sample.stage == stage:
                pooled[2] = add_histograms(pooled[2], sample.exposed)
                pooled[3] = add_histograms(pooled[3], sample.baseline)
    harm_e = safe_e = ratio = None
    if guard.tolerance is not None:
        quantile = guard.quantile or 0.95
        higher = guard.worse is Worse.HIGHER
        tails = tail_strata(history, quantile, tolerated_latency(guard), higher)
        current = [s for s in tails.safe if s.stage == stage]
        phi = dispersion.phi
        harm_e = harm_log_evidence(tails.harm, 1.0, HARM_ALTERNATIVES, stages, phi)
        safe_e = rate_log_evidence(current, 1.0, SAFE_ALTERNATIVES, phi)
        ratio = rate_ratio(tails.harm)
    facts = LatencyFacts(harm_e, safe_e, ratio, *pooled, dispersion=dispersion)
    return latency_verdict(guard, harm_alpha, facts, segment)
