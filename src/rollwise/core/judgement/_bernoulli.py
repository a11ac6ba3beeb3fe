"""Evidence about one side's counts alone: a mixture of Bernoulli likelihood ratios (a
quantile's confidence sequence, a rate's absolute limit) and the sample-ratio test. The
constructions and their sources are described in ``_evidence.py``'s docstring (quantiles:
Howard & Ramdas 2022; sample ratio: Lindon & Malek 2022, §3)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from itertools import accumulate

from rollwise.core.judgement._evidence import _log_mean_exp
from rollwise.core.judgement._histogram import LATENCY_BOUNDARIES_MS

#: Quantile alternatives: tail masses as multiples of the null tail mass (1 - q).
_TAIL_HEAVIER = (1.25, 1.6, 2.2, 3.5)
_TAIL_LIGHTER = (0.8, 0.6, 0.4, 0.2)
#: Concentration of the Beta prior of the sample-ratio test.
SRM_CONCENTRATION = 200.0


# --- quantiles -------------------------------------------------------------------------------


@lru_cache(maxsize=256)
def _bernoulli_coefficients(
    null: float, alternatives: tuple[float, ...]
) -> tuple[tuple[float, float], ...]:
    log_p0, log_q0 = math.log(null), math.log1p(-null)
    return tuple((math.log(p) - log_p0, math.log1p(-p) - log_q0) for p in alternatives)


def bernoulli_log_evidence(
    successes: int, total: int, null: float, alternatives: Sequence[float]
) -> float:
    """log E against "success probability is ``null``", mixing over ``alternatives``."""
    if total == 0 or not alternatives:
        return 0.0
    failures = total - successes
    coefficients = _bernoulli_coefficients(null, tuple(alternatives))
    return _log_mean_exp([successes * a + failures * b for a, b in coefficients])


def quantile_bounds(
    counts: Sequence[int], quantile: float, log_threshold: float
) -> tuple[float, float]:
    """An anytime-valid interval (in ms, at histogram-edge resolution) for a quantile.

    Each bound errs with probability at most exp(-log_threshold). Returns (0, inf) bounds
    where the data do not yet say anything.
    """
    total = sum(counts)
    if total == 0:
        return 0.0, math.inf
    tail = 1.0 - quantile
    lighter_p = tuple(1.0 - tail * m for m in _TAIL_HEAVIER if tail * m < 1)  # F(b) below q
    heavier_p = tuple(1.0 - tail * m for m in _TAIL_LIGHTER)  # F(b) above q
    cumulative = list(accumulate(counts[: len(LATENCY_BOUNDARIES_MS)]))
    # Lower bound: the largest edge b with evidence F(b) < q (a prefix of the edges).
    lo, hi = -1, len(cumulative) - 1
    while lo < hi:
        middle = (lo + hi + 1) // 2
        if bernoulli_log_evidence(cumulative[middle], total, quantile, lighter_p) >= log_threshold:
            lo = middle
        else:
            hi = middle - 1
    lower = LATENCY_BOUNDARIES_MS[lo] if lo >= 0 else 0.0
    # Upper bound: the smallest edge b with evidence F(b) > q (a suffix of the edges).
    lo2, hi2 = 0, len(cumulative)
    while lo2 < hi2:
        middle = (lo2 + hi2) // 2
        if bernoulli_log_evidence(cumulative[middle], total, quantile, heavier_p) >= log_threshold:
            hi2 = middle
        else:
            lo2 = middle + 1
    upper = LATENCY_BOUNDARIES_MS[lo2] if lo2 < len(cumulative) else math.inf
    return lower, upper


# --- sample ratio ----------------------------------------------------------------------------


def sample_ratio_log_evidence(exposed: int, baseline: int, assigned: float) -> float:
    """log E against "units are exposed with probability ``assigned``" (two-sided)."""
    total = exposed + baseline
    if total == 0 or not 0 < assigned < 1:
        return 0.0
    a, b = SRM_CONCENTRATION * assigned, SRM_CONCENTRATION * (1 - assigned)
    log_marginal = _log_beta(a + exposed, b + baseline) - _log_beta(a, b)
    log_null = exposed * math.log(assigned) + baseline * math.log1p(-assigned)
    return log_marginal - log_null


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
