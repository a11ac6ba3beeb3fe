"""Anytime-valid intervals for a rate ratio θ, found where a test flips: the bounds shown with a
rate verdict, and a unit's own ratio to the others (``OwnRatio``).

Each is a search in θ0 over [1e-3, 1e3] (log space) for where the test stops rejecting: each
round evaluates the test at 2 points of the bracket at once and keeps the third where it flips
(15 rounds: a relative precision of 1e-6, as the bisection it replaces). A unit's own ratio,
one series over one run of strata, is found by Newton's method instead (``_newton_flip``: about
six evaluations of the test and its slope, where the search takes thirty). The evaluations
are vectorised with NumPy — imported when first needed, so an application that embeds the SDK
(which reads the judgement's constants) never loads it — and the tests' log likelihood ratios
are the same as the verdicts' to rounding (≈1e-13 of log E), far inside the search's precision.

Several series can be bounded in one search (``rate_bounds_many``: a rollout's whole traffic
and its segments), each with its own bracket. A series' strata are summed in their order, row
after row, whatever else is in the search, so its bounds do not depend on the company it keeps:
the full judgement (one series at a time) and the incremental one (``_rollout.py``, a guard's
series at once) show the same bounds to the bit. (A unit's first exposure in a simulated run
spent most of the run's time in the scalar bisection before; a controller keeping, with bounds,
a hold of each of 10,000 rollouts every ten minutes, most of its tick.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from rollwise.core.judgement._evidence import HARM_ALTERNATIVES, SAFE_ALTERNATIVES
from rollwise.core.judgement._observations import RateSample

#: Points per round of the search, and rounds: 3**15 ≈ 1.4e7 parts of [1e-3, 1e3] in log space,
#: a relative precision of 1e-6, as the bisection's 24 halvings. Measured (both bounds, series
#: of 72 strata): 21 series at once 7.7 ms (8 points a round: 39 ms; one: 7.1 ms), one series
#: 1.9 ms (8 points: 1.2 ms; the scalar bisection: 3.7 ms).
_POINTS, _ROUNDS = 2, 15


@dataclass(frozen=True, slots=True)
class _Strata:
    """Several series' strata that carry information, one after another: exposed share, events
    of each side, and for each stratum its series and its run (a series' stratum of one
    stage)."""

    r: Any
    x_t: Any
    x_c: Any
    series: Any  # (strata,) index of the series
    starts: Any  # first stratum of each run
    run_series: Any  # (runs,) the series of each run
    run_stage: Any  # (runs,) the position of its stage among ``stages``
    stages: list[int]  # the stages present in any series, in order
    count: int  # series


#: A stratum as the search reads it: (exposed requests, events, baseline requests, events, stage).
Row = tuple[int, int, int, int, int]


def rows_of(samples: Sequence[RateSample]) -> list[Row]:
    return [
        (s.exposed.requests, s.exposed.events, s.baseline.requests, s.baseline.events, s.stage)
        for s in samples
    ]


def _strata(series: Sequence[Sequence[Row]]) -> _Strata:
    import numpy as np

    stages = sorted({row[4] for rows in series for row in rows})
    position = {stage: index for index, stage in enumerate(stages)}
    rows: list[tuple[float, int, int, int, int]] = []
    for index, strata in enumerate(series):
        for n_t, x_t, n_c, x_c, at in strata:
            if n_t and n_c and x_t + x_c:
                rows.append((n_t / n_c, x_t, x_c, index, position[at]))
    table = np.array(rows, dtype=float).reshape(len(rows), 5)
    owner = table[:, 3].astype(int)
    stage = table[:, 4].astype(int)
    # A run starts where the series or the stage changes (a series' strata are in stage order).
    change = np.ones(len(rows), dtype=bool)
    change[1:] = (owner[1:] != owner[:-1]) | (stage[1:] != stage[:-1])
    starts = np.flatnonzero(change)
    return _Strata(
        table[:, 0], table[:, 1], table[:, 2], owner, starts, owner[starts], stage[starts],
        stages, len(series),
    )  # fmt: skip


def _log_mean_exp(values: Any, axis: int) -> Any:
    """``_evidence._log_mean_exp`` along ``axis`` (-inf where every value is -inf)."""
    import numpy as np

    top = values.max(axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    mean = np.exp(values - top).mean(axis=axis, keepdims=True)
    logs = np.full_like(mean, -np.inf)
    np.log(mean, out=logs, where=mean > 0)
    return np.squeeze(top + logs, axis=axis)


def _evidence(
    strata: _Strata,
    thetas: Any,
    grid: tuple[float, ...],
    stages: int | None,
    phis: Any = None,
) -> Any:
    """log E of each series against each of its θ0s (``thetas``: series × points), mixing
    θ0 × ``grid``: summed over every stratum (``stages`` None, as ``rate_log_evidence``), or
    per stage and restarted at each stage start (``harm_log_evidence``: the mean over the
    ``stages`` starts of the process started there, 1 before its stage has data). ``phis``:
    each series' dispersion, dividing its summed log ratios (None: all 1)."""
    import numpy as np

    count, points = thetas.shape
    if not len(strata.r):
        return np.zeros((count, points))
    # With p = θr / (θr + 1): log(p1/p0) = log a - [log(1 + θ1 r) - log(1 + θ0 r)] and
    # log((1 - p1)/(1 - p0)) = -[log(1 + θ1 r) - log(1 + θ0 r)], θ1 = a θ0: so a stratum's log
    # likelihood ratio is x_T log a - (x_T + x_C) [log(1 + θ1 r) - log(1 + θ0 r)], two
    # logarithms where the textbook form takes four.
    scaled = thetas[strata.series] * strata.r[:, None]  # θ0 r: (strata, points)
    alternatives = np.asarray(grid)
    spread = np.log1p(scaled[:, :, None] * alternatives) - np.log1p(scaled)[:, :, None]
    events = (strata.x_t + strata.x_c)[:, None, None]
    ratios = strata.x_t[:, None, None] * np.log(alternatives) - events * spread
    # Each run summed stratum after stratum (axis 0): the same whatever else is in the array.
    runs = np.add.reduceat(ratios, strata.starts, axis=0)  # (runs, points, alternatives)
    per_stage = np.zeros((count, len(strata.stages), points, len(grid)))
    per_stage[strata.run_series, strata.run_stage] = runs
    if phis is not None:
        per_stage /= phis[:, None, None, None]
    if stages is None:
        return _log_mean_exp(per_stage.sum(axis=1), axis=2)
    present = np.zeros((count, len(strata.stages)), dtype=bool)
    present[strata.run_series, strata.run_stage] = True
    suffix = np.cumsum(per_stage[:, ::-1], axis=1)[:, ::-1]  # from each stage on
    from_stage = _log_mean_exp(suffix, axis=3)  # (series, stages present, points)
    terms = np.zeros((count, max(stages, 1), points))
    for start in range(max(stages, 1)):
        later = [index for index, stage in enumerate(strata.stages) if stage >= start]
        for index in reversed(later):  # the first stage present at or after ``start``
            terms[:, start] = np.where(
                present[:, index, None], from_stage[:, index], terms[:, start]
            )
    return _log_mean_exp(terms, axis=1)


def _flip(
    evidence: Callable[[Any], Any], count: int, rising: bool, thresholds: Sequence[float]
) -> list[float]:
    """Where each series' test of θ0 flips from rejecting to not: the e-value against θ0 falls
    as θ0 moves towards the alternatives' side (``rising``: alternatives above θ0). Each round
    evaluates every series' test at ``_POINTS`` points of its bracket at once and keeps, for
    each, the part where it flips."""
    import numpy as np

    lo = np.full(count, math.log(1e-3))
    hi = np.full(count, math.log(1e3))
    steps = np.linspace(0.0, 1.0, _POINTS + 2)
    rows = np.arange(count)
    limit = np.asarray(thresholds)[:, None]
    for _ in range(_ROUNDS):
        points = lo[:, None] + (hi - lo)[:, None] * steps
        rejected = evidence(np.exp(points[:, 1:-1])) >= limit
        # Points on the rejecting side come first when rising, last otherwise.
        inside = (rejected if rising else ~rejected).sum(axis=1)
        lo, hi = points[rows, inside], points[rows, inside + 1]
    return [math.exp(value) for value in ((lo + hi) / 2).tolist()]


def ratio_interval(
    counts: tuple[tuple[int, int, int, int], ...], log_lower: float, log_upper: float
) -> tuple[float, float]:
    """An anytime-valid interval for θ from strata given as (n_T, x_T, n_C, x_C) counts: the
    lower end errs with probability at most exp(-log_lower), the upper with exp(-log_upper);
    (0, inf) where the data do not bound it. Cached on the counts: a finished period is
    bounded once."""
    return _ratio_interval(counts, log_lower, log_upper)


@lru_cache(maxsize=512)
def _ratio_interval(
    counts: tuple[tuple[int, int, int, int], ...], log_lower: float, log_upper: float
) -> tuple[float, float]:
    strata = _strata([[(a, b, c, d, 0) for a, b, c, d in counts]])
    lower = _newton_flip(strata, HARM_ALTERNATIVES, True, log_lower)
    upper = _newton_flip(strata, tuple(1 / a for a in HARM_ALTERNATIVES), False, log_upper)
    return (0.0 if lower < 1.001e-3 else lower), (math.inf if upper > 0.999e3 else upper)


def _newton_flip(strata: _Strata, grid: tuple[float, ...], rising: bool, limit: float) -> float:
    """``_flip`` for one series over one run of strata, by Newton's method kept inside a
    bracket (bisecting where a step would leave it), on u = log θ0:

        log E(u) = log mean_k exp(L_k(u)),  L_k(u) = Σ_s x_T log a_k - n_s [log(1 + a_k t_s)
        - log(1 + t_s)],  t_s = e^u r_s,  n_s = x_T + x_C,

    whose slope is Σ_k w_k L_k'(u), w_k ∝ exp(L_k), L_k'(u) = -Σ_s n_s [a_k t_s / (1 + a_k t_s)
    - t_s / (1 + t_s)]. It converges in about six evaluations where the bracket search takes
    thirty (a unit's own ratio, found at its first exposure, was a tenth of a simulated run)."""
    import numpy as np

    alternatives = np.asarray(grid)[:, None]
    log_alternatives = float(strata.x_t.sum()) * np.log(alternatives[:, 0])
    events = strata.x_t + strata.x_c

    def excess(u: float) -> tuple[float, float]:
        """log E(u) - limit, and its slope."""
        if not len(events):
            return -limit, 0.0
        t = math.exp(u) * strata.r
        q = alternatives * t
        logs = log_alternatives - (events * (np.log1p(q) - np.log1p(t))).sum(axis=1)
        slopes = -(events * (q / (1 + q) - t / (1 + t))).sum(axis=1)
        top = float(logs.max())
        weights = np.exp(logs - top)
        total = float(weights.sum())
        value = top + math.log(total / len(grid))
        return value - limit, float(weights @ slopes) / total

    # Orient so that the rejecting side (excess >= 0) is on the left: u for a lower bound, -u
    # for an upper one.
    sign = 1.0 if rising else -1.0

    def oriented(v: float) -> tuple[float, float]:
        value, slope = excess(sign * v)
        return value, sign * slope

    left, right = math.log(1e-3), math.log(1e3)
    if not rising:
        left, right = -right, -left
    at_left, at_right = oriented(left)[0], oriented(right)[0]
    if at_right >= 0:
        return math.exp(sign * right)  # rejects throughout
    if at_left < 0:
        return math.exp(sign * left)  # never rejects
    v = right - at_right * (right - left) / (at_right - at_left)  # false position
    for _ in range(_NEWTON_STEPS):
        value, slope = oriented(v)
        if value >= 0:
            left = v
        else:
            right = v
        step = value / slope if slope < 0 else math.inf
        following = v - step
        if not left < following < right:
            following = (left + right) / 2
        if abs(following - v) < _NEWTON_PRECISION or right - left < _NEWTON_PRECISION:
            v = following
            break
        v = following
    return math.exp(sign * v)


#: Newton's method: at most this many steps, stopping once a step moves u by less than the
#: precision (a relative precision of 1e-9 in θ0, finer than the bracket search's 1e-6).
_NEWTON_STEPS, _NEWTON_PRECISION = 60, 1e-9


def rate_bounds(
    all_stages: Sequence[RateSample],
    current_stage: Sequence[RateSample],
    log_harm_threshold: float,
    log_safe_threshold: float,
    higher_is_worse: bool,
    stages: int = 1,
    phi: float = 1.0,
) -> tuple[float, float]:
    """The anytime-valid interval for θ that matches the verdicts.

    In the worse direction the bound is where the harm test flips (from all stages); in the
    better direction, where the safety test flips (current stage). So a verdict of harm is
    "the worse-side bound is past the tolerance" and safe is "the better-side bound is inside".
    """
    (bounds,) = rate_bounds_many(
        [(rows_of(all_stages), rows_of(current_stage), log_harm_threshold, log_safe_threshold)],
        higher_is_worse,
        stages,
        [phi],
    )
    return bounds


def rate_bounds_many(
    series: Sequence[tuple[Sequence[Row], Sequence[Row], float, float]],
    higher_is_worse: bool,
    stages: int = 1,
    phis: Sequence[float] | None = None,
) -> list[tuple[float, float]]:
    """``rate_bounds`` of several series of one guard in one search: per series, its strata
    up to now and in the current stage (``Row``s, in stage order), its harm and safety
    thresholds, and (``phis``) its dispersion."""
    import numpy as np

    if not series:
        return []
    scale = None if phis is None or all(p == 1.0 for p in phis) else np.asarray(phis, float)
    harm = HARM_ALTERNATIVES if higher_is_worse else tuple(1 / a for a in HARM_ALTERNATIVES)
    safe = SAFE_ALTERNATIVES if higher_is_worse else tuple(1 / a for a in SAFE_ALTERNATIVES)
    history = _strata([item[0] for item in series])
    current = _strata([item[1] for item in series])
    worse = _flip(
        lambda t: _evidence(history, t, harm, stages, scale),
        len(series),
        harm[0] > 1,
        [item[2] for item in series],
    )
    better = _flip(
        lambda t: _evidence(current, t, safe, None, scale),
        len(series),
        safe[0] > 1,
        [item[3] for item in series],
    )
    if higher_is_worse:
        return list(zip(worse, better, strict=True))
    return list(zip(better, worse, strict=True))
