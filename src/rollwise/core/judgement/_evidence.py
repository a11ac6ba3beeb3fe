"""Anytime-valid evidence: e-processes that stay valid however often they are looked at.

Three constructions, each a nonnegative supermartingale under its null hypothesis, so that by
Ville's inequality P(sup_t E_t ≥ 1/α) ≤ α: the controller may look at every tick and stop at
the first crossing without inflating its error rate (Ramdas, Grünwald, Vovk & Shafer, "Game-
theoretic statistics and safe anytime-valid inference", Statistical Science 2023).

**Rates** (errors, timeouts, mismatches, conversions): the conditional Poisson construction of
Lindon & Malek, "Anytime-valid inference for multinomial count data", NeurIPS 2022. Model events
on each side as Poisson processes whose intensities are proportional to that side's requests,
with rate ratio θ = rate(exposed) / rate(baseline). Given the event total x = x_T + x_C and the
request counts n_T, n_C of a stratum (a stage within a time window), x_T ~ Binomial(x, p(θ)),
with p(θ) = θ r / (θ r + 1) and r = n_T / n_C. The baseline's own rate cancels out, and so does
any change of traffic share from one stratum to the next: each contributes its own binomial
likelihood ratio, and the product over strata is a martingale. Against a one-sided null
θ ≤ θ0 the likelihood ratio for any θ1 > θ0 is a supermartingale (monotone likelihood
ratio), and so is a mixture of them. We mix over a small geometric grid of alternatives, equal
weights, chosen in docs/judgement.md.

**Quantiles** (latency): for a threshold b, the indicators 1{X ≤ b} are Bernoulli(F(b)), and
Q(q) > b ⇔ F(b) < q. A one-sided mixture test of "F(b) ≥ q" at every histogram edge gives a
confidence sequence for the q-quantile (Howard & Ramdas, "Sequential estimation of quantiles
with applications to A/B-testing and best-arm identification", Bernoulli 2022); because the test
statistic is monotone in b, the whole family errs only if the test at the true quantile does.

**Sample ratio** (exposure against assignment): a Beta-binomial mixture of binomial likelihood
ratios against the assigned share, the two-sided conjugate construction of Lindon & Malek §3.

The rate evidence is here; the quantile and sample-ratio evidence, which read one side's counts
alone, are in ``_bernoulli.py``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache

from rollwise.core.judgement._observations import RateSample

#: Harm alternatives, as multiples of the tolerance boundary θ0 in the worse direction. A
#: geometric grid from "a little worse than tolerated" (8 % past the boundary: a 10 % → 12 %
#: rise against a 10 % tolerance is 9 % past it) to "several times worse". Chosen among
#: several grids by the worst ratio to the SPRT over the regressions of benchmarks/validity.py;
#: the comparison is in docs/judgement.md.
HARM_ALTERNATIVES: tuple[float, ...] = (1.08, 1.25, 1.55, 2.0, 2.8)
#: Safety alternatives, as multiples of θ0 in the better direction (θ = 1 is 0.91 × θ0 at a
#: 10 % tolerance, which the grid brackets).
SAFE_ALTERNATIVES: tuple[float, ...] = (0.95, 0.9, 0.85, 0.75, 0.6)
#: The rate at which a guard may wrongly call a stage safe (a false expansion), per stage.
SAFE_ERROR_RATE = 0.05


def _log_mean_exp(values: Sequence[float]) -> float:
    top = max(values)
    if top == -math.inf:
        return -math.inf
    return top + math.log(sum(math.exp(v - top) for v in values) / len(values))


def ratios_adder(theta0: float, alternatives: tuple[float, ...]) -> RatiosAdder:
    """A function adding one stratum's log likelihood ratios against θ0, one per alternative
    θ0 × a, to ``sums`` (nothing for a stratum without information: no events, or one side
    empty; ``ValueError`` for negative counts, which only data stored past the checks has).
    The formula is here only: the full judgement (``_stratum_log_ratios``) and the
    incremental one (``_stage_sums.py``) make the same floating-point operations with it.

    With p = θr / (θr + 1), t = θ0 r and θ1 = a θ0: log(p1 / p0) = log a - [log(1 + a t) -
    log(1 + t)] and log((1 - p1) / (1 - p0)) = -[log(1 + a t) - log(1 + t)], so the ratio is
    x_T log a - (x_T + x_C) [log(1 + a t) - log(1 + t)]: one logarithm per alternative where
    the textbook form takes two (``_intervals.py`` evaluates the same form on arrays)."""
    pairs = tuple((multiple, math.log(multiple)) for multiple in alternatives)
    log1p = math.log1p

    def add(sums: list[float], n_t: int, x_t: int, n_c: int, x_c: int) -> None:
        events = x_t + x_c
        if n_t <= 0 or n_c <= 0 or x_t < 0 or x_c < 0 or events == 0:
            if min(n_t, x_t, n_c, x_c) < 0:  # stored past the checks: judged as nothing else
                raise ValueError(f"a stratum has negative counts: {(n_t, x_t, n_c, x_c)}")
            return
        t = theta0 * (n_t / n_c)
        base = log1p(t)
        for index, (multiple, log_a) in enumerate(pairs):
            sums[index] += x_t * log_a - events * (log1p(multiple * t) - base)

    return add


#: Adds a stratum's log likelihood ratios to a list of sums (``ratios_adder``).
RatiosAdder = Callable[[list[float], int, int, int, int], None]
_adder = lru_cache(maxsize=64)(ratios_adder)


@lru_cache(maxsize=262_144)
def _stratum_log_ratios(
    n_t: int, x_t: int, n_c: int, x_c: int, theta0: float, alternatives: tuple[float, ...]
) -> tuple[float, ...]:
    """One stratum's log likelihood ratios, one per alternative (``ratios_adder``'s, from 0.0;
    memoised: a finished window never changes, and the full judgement asks again at every
    tick)."""
    sums = [0.0] * len(alternatives)
    _adder(theta0, alternatives)(sums, n_t, x_t, n_c, x_c)
    return tuple(sums)


def stratum_log_ratios(
    sample: RateSample, theta0: float, grid: tuple[float, ...]
) -> tuple[float, ...]:
    """One stratum's log likelihood ratios against θ0, one per alternative θ0 × a; zeros when
    the stratum carries no information (no events, or one side empty)."""
    n_t, x_t = sample.exposed.requests, sample.exposed.events
    n_c, x_c = sample.baseline.requests, sample.baseline.events
    if n_t == 0 or n_c == 0 or x_t + x_c == 0:
        return (0.0,) * len(grid)
    return _stratum_log_ratios(n_t, x_t, n_c, x_c, theta0, grid)


#: Per run of strata of one stage (keyed by its first stratum's identity and the test): the
#: strata already summed and their sums. When the full judgement is asked again of strata it
#: judged before (an ``AggregateTable`` keeps finished strata: the server's views, the
#: benchmarks), the run usually starts with the same objects, so only what is new is added; the
#: identity of every reused stratum is checked (at C speed) first. Bounded: cleared when full.
_RUNS: dict[tuple[int, float, tuple[float, ...]], tuple[tuple[RateSample, ...], list[float]]] = {}
_RUNS_LIMIT = 4_096


def _run_log_ratios(
    run: Sequence[RateSample], theta0: float, grid: tuple[float, ...]
) -> list[float]:
    """The summed log ratios of a run of strata (one stage's), reusing a known prefix. The
    sums are added in stratum order either way, so the result is the same to the bit."""
    key = (id(run[0]), theta0, grid)
    known = _RUNS.get(key)
    start, logs = 0, [0.0] * len(grid)
    if known is not None:
        done, sums = known
        if len(done) <= len(run) and all(map(operator.is_, done, run)):
            start, logs = len(done), list(sums)
    last = len(run) - 1
    for index in range(start, len(run)):
        if index == last and last > 0:
            # Keep all but the last stratum, which is usually the window still filling.
            if len(_RUNS) >= _RUNS_LIMIT:
                _RUNS.clear()
            _RUNS[key] = (tuple(run[:last]), list(logs))
        sample = run[index]
        n_t, x_t = sample.exposed.requests, sample.exposed.events
        n_c, x_c = sample.baseline.requests, sample.baseline.events
        if n_t == 0 or n_c == 0 or x_t + x_c == 0:
            continue  # no events, or one side empty: the split carries no information
        for position, ratio in enumerate(_stratum_log_ratios(n_t, x_t, n_c, x_c, theta0, grid)):
            logs[position] += ratio
    return logs


def _stage_log_ratios(
    samples: Sequence[RateSample], theta0: float, grid: tuple[float, ...]
) -> dict[int, list[float]]:
    """Per stage, the log likelihood ratios of its strata summed, one per alternative."""
    runs: dict[int, list[RateSample]] = {}
    for sample in samples:
        run = runs.get(sample.stage)
        if run is None:
            runs[sample.stage] = [sample]
        else:
            run.append(sample)
    return {stage: _run_log_ratios(run, theta0, grid) for stage, run in runs.items()}


def rate_log_evidence(
    samples: Sequence[RateSample],
    theta0: float,
    alternatives: Sequence[float],
    phi: float = 1.0,
) -> float:
    """log E for H0 "θ on the near side of θ0", mixing θ1 = θ0 × a over ``alternatives``.

    ``alternatives`` above 1 test "θ ≤ θ0" (evidence that θ is larger), below 1 test
    "θ ≥ θ0". Each sample is one stratum (a stage within a time window): its binomial
    likelihood ratio given its event total, with its own exposed share r. ``phi``: the
    dispersion between units (``_dispersion.py``); each summed log ratio is divided by it.
    """
    grid = tuple(alternatives)
    logs = [0.0] * len(grid)
    for stage_logs in _stage_log_ratios(samples, theta0, grid).values():
        for index, value in enumerate(stage_logs):
            logs[index] += value
    return _log_mean_exp(discounted(logs, phi))


def discounted(logs: Sequence[float], phi: float) -> Sequence[float]:
    """Summed log likelihood ratios divided by the dispersion ``phi`` (as they are when 1)."""
    if phi == 1.0:
        return logs
    return [value / phi for value in logs]


def discounted_stages(
    per_stage: Mapping[int, Sequence[float]], phi: float
) -> Mapping[int, Sequence[float]]:
    """``discounted`` for each stage's sums."""
    if phi == 1.0:
        return per_stage
    return {stage: [value / phi for value in sums] for stage, sums in per_stage.items()}


def restarted_log_evidence(per_stage: Mapping[int, Sequence[float]], stages: int) -> float:
    """log of the mean, over the ``stages`` stage starts, of the e-process started there.

    E(from stage k) is the mixture of likelihood-ratio martingales over the strata of stages
    ≥ k (1 while there are none); stage 0's is the whole rollout's. Each is a nonnegative
    supermartingale started at a stopping time (1 before it), so their fixed-weight average is
    one too, starting at 1, and Ville's inequality holds for it (the start-time mixtures of
    Shin, Ramdas & Rinaldo, "E-detectors: a nonparametric framework for sequential change
    detection", 2023). Why: after a clean stage the whole-rollout process sits far below 1, and
    a regression that appears only at a later stage would first have to pay that debt back; the
    process started at that stage does not. Equal weights: a regression is as likely to appear
    at one stage as at another, and each costs log K (K stages) instead of an unbounded debt.
    ``per_stage`` holds, per stage, the summed log ratios per alternative.
    """
    if not per_stage:
        return 0.0
    width = len(next(iter(per_stage.values())))
    suffix = [0.0] * width
    from_stage: dict[int, float] = {}
    for stage in sorted(per_stage, reverse=True):
        suffix = [a + b for a, b in zip(suffix, per_stage[stage], strict=True)]
        from_stage[stage] = _log_mean_exp(suffix)
    terms = []
    for stage in range(max(stages, 1)):
        started = [s for s in from_stage if s >= stage]
        terms.append(from_stage[min(started)] if started else 0.0)
    return _log_mean_exp(terms)


def restarted_upper_bound(per_stage: Mapping[int, Sequence[float]]) -> float:
    """A bound that ``restarted_log_evidence(per_stage, stages)`` cannot exceed, for any
    ``stages``, as computed in floating point: the largest suffix sum (or 0). A log-mean-exp is
    at most its largest value (each exp(v - top) ≤ 1, their mean ≤ 1, its log ≤ 0), and so is
    the mean over stage starts; the suffix sums are the same additions in the same order. A
    caller that only needs to know whether the evidence reaches a threshold skips the
    exponentials when the bound is below it."""
    best = 0.0
    suffix: Sequence[float] = ()
    for stage in sorted(per_stage, reverse=True):
        # 0.0 + v is v: the first stage's sums are the first suffix, as computed there.
        values = per_stage[stage]
        suffix = [a + b for a, b in zip(suffix, values, strict=True)] if suffix else values
        top = max(suffix)
        if top > best:
            best = top
    return best


class RestartedBound:
    """``restarted_upper_bound(discounted_stages(per_stage, phi))`` for a series asked again
    and again while only its last stage's sums change (the incremental judgement's case).

    The bound is the largest sum, over the alternatives a and the stage starts k, of the
    stages' sums from k on: max(0, max_a max_k S(k, a)). Exchanging the two maxima, it is
    max(0, max_a [C_a + M_a]), with C the last stage's sums and M_a the largest sum of the
    earlier stages from k up to the last (0 for none). M is kept while the earlier stages' sums
    are equal (compared as lists, identity first: ``Accumulator`` hands out the same list
    until a stage's sums change) and φ is the same. The sums are added in another order than
    ``restarted_log_evidence``'s, so the two may differ in the last bits: callers add a margin
    far above that (1e-9)."""

    __slots__ = ("_before", "_earlier", "_phi")

    def __init__(self) -> None:
        self._earlier: list[Sequence[float]] = []
        self._phi = 0.0
        self._before: list[float] = []

    def __call__(self, per_stage: Mapping[int, Sequence[float]], phi: float) -> float:
        if len(per_stage) < 3:  # nothing worth keeping
            return restarted_upper_bound(discounted_stages(per_stage, phi))
        stages = sorted(per_stage)
        last = per_stage[stages.pop()]
        # Equal sums (the same lists, usually: compared by identity first) give equal maxima.
        earlier = [per_stage[stage] for stage in stages]
        if phi != self._phi or earlier != self._earlier:
            best = [0.0] * len(last)
            suffix = list(best)
            for values in reversed(earlier):
                for index, value in enumerate(values):
                    suffix[index] += value / phi
                    if suffix[index] > best[index]:
                        best[index] = suffix[index]
            self._earlier, self._phi, self._before = earlier, phi, best
        top = 0.0
        for value, before in zip(last, self._before, strict=True):
            total = value / phi + before
            if total > top:
                top = total
        return top


def harm_log_evidence(
    samples: Sequence[RateSample],
    theta0: float,
    alternatives: Sequence[float],
    stages: int,
    phi: float = 1.0,
) -> float:
    """The harm e-process of a rollout with ``stages`` stages: the mixture over
    ``alternatives`` of ``rate_log_evidence``, averaged with its restarts at each stage start
    (``restarted_log_evidence``), each stage's sums divided by the dispersion ``phi``."""
    per_stage = _stage_log_ratios(samples, theta0, tuple(alternatives))
    return restarted_log_evidence(discounted_stages(per_stage, phi), stages)


#: A stratum as counts: (n_T, x_T, n_C, x_C, stage).
StageRow = tuple[int, int, int, int, int]


def stage_row(sample: RateSample) -> StageRow:
    exposed, baseline = sample.exposed, sample.baseline
    return exposed.requests, exposed.events, baseline.requests, baseline.events, sample.stage


def rate_ratio(samples: Sequence[RateSample]) -> float | None:
    """The estimate of θ across strata: the Mantel-Haenszel rate ratio (Rothman & Greenland,
    *Modern Epidemiology*, ch. 15), which, unlike pooled totals, is not biased when the
    exposed share moves with the base rate (``rate_ratio_of`` of their counts)."""
    return rate_ratio_of([stage_row(sample) for sample in samples])


def add_plain(sums: list[float], n_t: int, x_t: int, n_c: int, x_c: int) -> None:
    """Add one stratum's Mantel-Haenszel terms (no term when a side is empty) and each side's
    totals to a stage's sums [numerator, denominator, n_T, x_T, n_C, x_C]: ``rate_ratio_of``'s
    and the incremental judgement's (``FoldedRates``) one home of the formula."""
    if n_t and n_c:
        total = n_t + n_c
        sums[0] += x_t * n_c / total
        sums[1] += x_c * n_t / total
    sums[2] += n_t
    sums[3] += x_t
    sums[4] += n_c
    sums[5] += x_c


def rate_ratio_of(rows: Sequence[StageRow]) -> float | None:
    """``rate_ratio`` of strata given as counts. Summed stage by stage (each stage's strata in
    order, then the stages' sums in stage order), like the e-values: the incremental judgement
    keeps each stage's sums (``add_plain``) and gets the same floating-point result."""
    per_stage: dict[int, list[float]] = {}
    for n_t, x_t, n_c, x_c, stage in rows:
        sums = per_stage.get(stage)
        if sums is None:
            sums = per_stage[stage] = [0.0, 0.0, 0, 0, 0, 0]
        add_plain(sums, n_t, x_t, n_c, x_c)
    return mantel_haenszel(per_stage)


def mantel_haenszel(per_stage: Mapping[int, Sequence[float]]) -> float | None:
    """The ratio from per-stage (numerator, denominator) sums, added in stage order."""
    numerator = denominator = 0.0
    for stage in sorted(per_stage):
        numerator += per_stage[stage][0]
        denominator += per_stage[stage][1]
    if not denominator:
        return None
    return numerator / denominator
