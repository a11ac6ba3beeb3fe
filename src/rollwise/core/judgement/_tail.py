"""Latency strata as tail counts: how a quantile guard is judged window by window like a rate.

A latency guard says "the exposed q-quantile is at most tolerated(the baseline's)", with
tolerated(a) = a·(1 + δ) or a + Δ. Pooling histograms over windows and stages compares
mixtures, not like with like: when the exposed share and the latency level both change at a
stage boundary, the exposed side's mixture leans towards the slower period and an A/A looks like
a regression. So each stratum (a stage within a time window) is turned into two tail counts:

    exposed requests slower than tolerated(a),  baseline requests slower than a,

where ``a`` is a reference point in the baseline's tail: its q-quantile over the *earlier*
windows (predictable, so fixed before the stratum's data arrive). If the exposed latency is no
worse than the tolerated transform of the baseline (X_T ≤ tolerated(X_C) in distribution), then
P(X_T > tolerated(a)) ≤ P(X_C > a) for every a, so the ratio θ of the two tail rates is at most
1 in every stratum, whatever the level, the exposed share or the drift from window to window.
The two counts then go to the same conditional binomial e-process as a rate guard with θ0 = 1
(Lindon & Malek 2022; see ``_evidence``): harm tests θ ≤ 1, safety tests θ ≥ 1. At a = Q_C(q)
the test is exactly about the quantile the guard names (P(X_C > a) = 1 - q, and the tolerance
holds iff P(X_T > tolerated(a)) ≤ 1 - q); a reference that misses the current quantile (the
level moved since the earlier windows) tests another point of the tail, which stays valid under
the ordering above and only changes where the test looks.

Thresholds are rounded to histogram edges in the conservative direction for each test.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from rollwise.core.judgement._histogram import (
    LATENCY_BOUNDARIES_MS,
    add_histograms,
    quantile_bucket,
)
from rollwise.core.judgement._memo import IdentityMemo
from rollwise.core.judgement._observations import LatencySample, RateSample, Tally

#: At most this many earlier windows are read back for a stratum's reference point.
_MAX_LOOKBACK = 96


@dataclass(frozen=True, slots=True)
class TailStrata:
    """A latency series as tail counts: for the harm test and for the safety test, each with
    its thresholds rounded the conservative way."""

    harm: tuple[RateSample, ...]
    safe: tuple[RateSample, ...]


def _minimum_reference_count(quantile: float) -> int:
    """Earlier baseline requests needed before a q-quantile is worth using as a reference:
    about twenty in the tail."""
    return math.ceil(20 / min(1 - quantile, quantile))


def tail_strata(
    samples: Sequence[LatencySample],
    quantile: float,
    tolerated: Callable[[float], float],
    higher_is_worse: bool,
) -> TailStrata:
    """Each stratum of ``samples`` (already paired: both sides of one stage and window) as
    tail counts against the baseline's q-quantile over the earlier windows.

    Strata before enough baseline requests have been seen in earlier windows have no reference
    yet and are left out (the first window of a rollout, typically).
    """
    windows: dict[int, list[LatencySample]] = {}
    for sample in samples:
        windows.setdefault(sample.window, []).append(sample)
    needed = _minimum_reference_count(quantile)
    # (requests, baseline histogram) of each finished window, in time order.
    earlier: list[tuple[int, tuple[int, ...]]] = []
    harm: list[RateSample] = []
    safe: list[RateSample] = []
    for window in sorted(windows):
        group = sorted(windows[window], key=lambda s: s.stage)
        bucket = _reference(earlier, quantile, needed)
        if bucket is not None:
            for sample in group:
                if not sample.exposed or not sample.baseline:
                    continue
                converted = _converted(sample, bucket, tolerated, higher_is_worse)
                harm.append(converted[0])
                safe.append(converted[1])
        earlier.append(_window_baseline(group))
    return TailStrata(tuple(harm), tuple(safe))


#: Conversions already made: a finished window is converted once, not at every tick.
_CONVERTED: IdentityMemo[LatencySample, tuple[RateSample, RateSample]] = IdentityMemo()
#: Each single-stratum window's (requests, baseline histogram, q-quantile bucket).
_WINDOWS: IdentityMemo[LatencySample, tuple[int, tuple[int, ...]]] = IdentityMemo()


def _converted(
    sample: LatencySample,
    bucket: int,
    tolerated: Callable[[float], float],
    higher_is_worse: bool,
) -> tuple[RateSample, RateSample]:
    b = tolerated(LATENCY_BOUNDARIES_MS[bucket])
    return _CONVERTED.get(
        sample,
        (bucket, b, higher_is_worse),
        lambda: _convert(sample, bucket, b, higher_is_worse),
    )


def _convert(
    sample: LatencySample, bucket: int, b: float, higher_is_worse: bool
) -> tuple[RateSample, RateSample]:
    edges = LATENCY_BOUNDARIES_MS
    if higher_is_worse:
        # Harm counts exposed requests above the first edge ≥ b (fewer: conservative);
        # safety above the last edge ≤ b (more: conservative).
        harm_edge = bisect_left(edges, b)
        safe_edge = bisect_right(edges, b) - 1
    else:
        harm_edge = bisect_right(edges, b) - 1
        safe_edge = bisect_left(edges, b)
    baseline = Tally(*_beyond(sample.baseline, bucket, higher_is_worse))
    exposed = sample.exposed
    total = sum(exposed)
    # The two thresholds are a bucket apart at most: the wider count is the narrower one plus
    # the buckets between them.
    if higher_is_worse:  # counts above an edge; harm_edge >= safe_edge
        harm_count = sum(exposed[harm_edge + 1 :])
        safe_count = harm_count + sum(exposed[safe_edge + 1 : harm_edge + 1])
    else:  # counts at or below an edge; harm_edge <= safe_edge
        harm_count = sum(exposed[: harm_edge + 1]) if harm_edge >= 0 else 0
        safe_count = harm_count + sum(exposed[max(harm_edge, -1) + 1 : safe_edge + 1])
    harm = RateSample(Tally(total, harm_count), baseline, sample.stage, sample.window)
    safe = RateSample(Tally(total, safe_count), baseline, sample.stage, sample.window)
    return harm, safe


def _window_baseline(group: Sequence[LatencySample]) -> tuple[int, tuple[int, ...]]:
    """A window's baseline: (requests, histogram) over its strata."""
    if len(group) == 1:
        only = group[0]
        return _WINDOWS.get(only, None, lambda: (sum(only.baseline), tuple(only.baseline)))
    baseline: tuple[int, ...] = ()
    for sample in group:
        baseline = add_histograms(baseline, sample.baseline)
    return sum(baseline), baseline


def _beyond(counts: Sequence[int], edge: int, above: bool) -> tuple[int, int]:
    """(requests, requests beyond the edge): above it (> edge) or at/below it (≤ edge)."""
    total = sum(counts)
    below = sum(counts[: edge + 1]) if edge >= 0 else 0
    return total, (total - below) if above else below


def _reference(
    earlier: Sequence[tuple[int, tuple[int, ...]]], quantile: float, needed: int
) -> int | None:
    """The bucket of the baseline's q-quantile over the latest earlier windows that hold at
    least ``needed`` requests (None if they do not yet, or it lies in the unbounded bucket)."""
    if not earlier:
        return None
    count, histogram = earlier[-1]
    if count < needed:
        total: tuple[int, ...] = ()
        count = 0
        for requests, window_histogram in reversed(earlier[-_MAX_LOOKBACK:]):
            total = add_histograms(total, window_histogram)
            count += requests
            if count >= needed:
                break
        if count < needed:
            return None
        histogram = total
    bucket = _window_quantile(histogram, quantile)
    if bucket is None or bucket >= len(LATENCY_BOUNDARIES_MS):
        return None
    return bucket


@lru_cache(maxsize=4096)
def _window_quantile(histogram: tuple[int, ...], quantile: float) -> int | None:
    return quantile_bucket(histogram, quantile)
