"""Each guard as the dashboard draws it: both sides per window, and the judged effect over time.

Per window, the exposed side is drawn against the baseline with a fixed-sample 95 % interval
per side: a picture of the data, not the test. The test is the second series, read from the
decision log: the anytime-valid estimate and bounds the controller judged, against the
tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from rollwise.core import Guard, GuardKind, Tolerance, Worse
from rollwise.core.judgement import (
    LATENCY_BOUNDARIES_MS,
    GaugeReading,
    LatencySample,
    Observations,
    RateSample,
    histogram_quantile,
)
from rollwise.store import DecisionRecord

#: Two-sided 95 %: the standard normal quantile at 0.975.
Z95 = 1.959963984540054
#: A gauge chart keeps at most this many points (the highest reading of each time slice).
MAX_GAUGE_POINTS = 240


def finite(value: float | None) -> float | None:
    """JSON has no infinity: an unbounded number is shown as absent."""
    return value if value is not None and math.isfinite(value) else None


def window_start(window: int) -> datetime:
    """A stored window label (minutes since the epoch) as a time."""
    return datetime.fromtimestamp(window * 60, UTC)


def wilson_interval(events: int, requests: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval for a proportion (Wilson 1927, JASA 22:209), which, unlike the
    normal approximation, stays inside [0, 1] and behaves at rates near 0."""
    if requests <= 0:
        return None
    p = events / requests
    z2n = z * z / requests
    centre = (p + z2n / 2) / (1 + z2n)
    half = z / (1 + z2n) * math.sqrt(p * (1 - p) / requests + z2n / (4 * requests))
    return max(0.0, centre - half), min(1.0, centre + half)


def quantile_interval(
    counts: Sequence[int], quantile: float, z: float = Z95
) -> tuple[float, float | None] | None:
    """A distribution-free interval for a quantile from a latency histogram, in ms.

    The ranks r, s around n·q with Binomial(n, q) spread (normal approximation) bracket the
    quantile with about 95 % coverage (Conover, Practical Nonparametric Statistics, 3rd ed.,
    §3.2); the bounds are the outer edges of the buckets holding those order statistics. The
    upper bound is None when it falls in the unbounded last bucket.
    """
    total = sum(counts)
    if total == 0:
        return None
    spread = z * math.sqrt(total * quantile * (1 - quantile))
    low_rank = max(1, math.floor(total * quantile - spread))
    high_rank = min(total, math.ceil(total * quantile + spread) + 1)
    # Bucket j holds (edge[j-1], edge[j]]; the last bucket is unbounded above.
    edges = LATENCY_BOUNDARIES_MS
    low: float | None = None
    high: float | None = None
    running = 0
    for bucket, count in enumerate(counts):
        running += count
        if low is None and running >= low_rank:
            low = edges[bucket - 1] if bucket > 0 else 0.0
        if running >= high_rank:
            high = edges[bucket] if bucket < len(edges) else None
            break
    return (low or 0.0), high


def tolerated(guard: Guard, baseline: float | None) -> float | None:
    """The worst exposed value the tolerance accepts next to a baseline value."""
    tolerance: Tolerance | None = guard.tolerance
    if tolerance is None or baseline is None:
        return None
    sign = 1 if guard.worse is Worse.HIGHER else -1
    if tolerance.relative:
        return baseline * (1 + sign * tolerance.amount)
    return baseline + sign * tolerance.amount


@dataclass(slots=True)
class _Side:
    requests: int = 0
    events: int = 0
    histogram: list[int] = field(default_factory=list)

    def add(self, requests: int, events: int, histogram: Sequence[int] = ()) -> None:
        self.requests += requests
        self.events += events
        if histogram:
            if not self.histogram:
                self.histogram = [0] * len(histogram)
            for index, count in enumerate(histogram):
                self.histogram[index] += count


def _rate_side(side: _Side) -> dict[str, Any]:
    interval = wilson_interval(side.events, side.requests)
    return {
        "requests": side.requests,
        "events": side.events,
        "value": side.events / side.requests if side.requests else None,
        "lower": interval[0] if interval else None,
        "upper": interval[1] if interval else None,
    }


def _latency_side(side: _Side, quantile: float) -> dict[str, Any]:
    total = sum(side.histogram)
    interval = quantile_interval(side.histogram, quantile)
    return {
        "requests": total,
        "value": finite(histogram_quantile(side.histogram, quantile)) if total else None,
        "lower": interval[0] if interval else None,
        "upper": interval[1] if interval else None,
    }


def _pooled(
    samples: Iterable[RateSample | LatencySample],
) -> dict[int, tuple[_Side, _Side, set[int]]]:
    """Per window, both sides summed over the stages that window saw (a window can straddle an
    expansion: the chart shows time, the judgement keeps the strata apart)."""
    windows: dict[int, tuple[_Side, _Side, set[int]]] = {}
    for sample in samples:
        exposed, baseline, stages = windows.setdefault(sample.window, (_Side(), _Side(), set()))
        stages.add(sample.stage)
        if isinstance(sample, RateSample):
            exposed.add(sample.exposed.requests, sample.exposed.events)
            baseline.add(sample.baseline.requests, sample.baseline.events)
        else:
            exposed.add(sum(sample.exposed), 0, sample.exposed)
            baseline.add(sum(sample.baseline), 0, sample.baseline)
    return windows


def guard_windows(
    guard: Guard, observations: Observations, length: timedelta
) -> list[dict[str, Any]]:
    """Per window, oldest first: each side's value with its 95 % interval, and the worst
    exposed value the tolerance would accept next to that window's baseline. ``length`` is
    the windows' length: the plan's stratum, per which the SDKs aggregate."""
    key = (guard.metric, None)
    samples: Sequence[RateSample | LatencySample]
    if guard.kind is GuardKind.RATE:
        samples = observations.rates.get(key, ())
    elif guard.kind is GuardKind.LATENCY:
        samples = observations.latencies.get(key, ())
    else:
        return []
    quantile = guard.quantile or 0.95
    points = []
    for window, (exposed, baseline, stages) in sorted(_pooled(samples).items()):
        if guard.kind is GuardKind.RATE:
            sides = _rate_side(exposed), _rate_side(baseline)
        else:
            sides = _latency_side(exposed, quantile), _latency_side(baseline, quantile)
        start = window_start(window)
        points.append(
            {
                "start": start.isoformat(),
                "end": (start + length).isoformat(),
                "stages": sorted(stages),
                "exposed": sides[0],
                "baseline": sides[1],
                "tolerated": finite(tolerated(guard, sides[1]["value"])),
            }
        )
    return points


def gauge_points(
    readings: Sequence[GaugeReading], start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Readings between ``start`` and ``end``; when there are many, the highest of each equal
    slice of time, so that a spike is never thinned away."""
    inside = [r for r in readings if start <= r.at <= end]
    if len(inside) > MAX_GAUGE_POINTS:
        span = (inside[-1].at - inside[0].at) / MAX_GAUGE_POINTS or timedelta(microseconds=1)
        slices: dict[int, GaugeReading] = {}
        for reading in inside:
            index = min(int((reading.at - inside[0].at) / span), MAX_GAUGE_POINTS - 1)
            kept = slices.get(index)
            if kept is None or reading.value > kept.value:
                slices[index] = reading
        inside = [slices[index] for index in sorted(slices)]
    return [{"at": r.at.isoformat(), "value": r.value} for r in inside]


def effect_threshold(guard: Guard, baseline_quantile: float | None) -> float | None:
    """What the judged effect is held against when the evidence does not say: for latency,
    the tolerated difference in ms (a relative tolerance at the pooled baseline quantile)."""
    tolerance = guard.tolerance
    if guard.kind is not GuardKind.LATENCY or tolerance is None:
        return None
    sign = 1 if guard.worse is Worse.HIGHER else -1
    if not tolerance.relative:
        return sign * tolerance.amount
    if baseline_quantile is None:
        return None
    return sign * tolerance.amount * baseline_quantile


def effect_point(
    verdict: Mapping[str, Any], at: datetime, stage: int, *, live: bool
) -> dict[str, Any]:
    return {
        "at": at.isoformat(),
        "stage": stage,
        "estimate": finite(verdict.get("estimate")),
        "lower": finite(verdict.get("lower")),
        "upper": finite(verdict.get("upper")),
        "threshold": finite(verdict.get("threshold")),
        "verdict": verdict.get("verdict", "pending"),
        "live": live,
    }


def effect_points(
    guard: Guard, decisions: Sequence[DecisionRecord], live: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """The guard's overall verdict at each kept decision, oldest first, then the live one."""
    points = []
    for decision in decisions:
        for verdict in decision.evidence.get("verdicts", ()):
            if verdict.get("metric") == guard.metric and not verdict.get("segment"):
                points.append(effect_point(verdict, decision.at, decision.stage, live=False))
                break
    if live is not None:
        points.append(live)
    return points


def pooled_baseline_quantile(guard: Guard, observations: Observations) -> float | None:
    """The baseline's quantile over every window: the reference for a relative tolerance."""
    total = _Side()
    for sample in observations.latencies.get((guard.metric, None), ()):
        total.add(sum(sample.baseline), 0, sample.baseline)
    return finite(histogram_quantile(total.histogram, guard.quantile or 0.95))
