"""From aggregates as the SDKs ship them to the judgement's strata: one definition for the
store and the simulator.

An aggregate is the count of one (stage, window, side, segment, metric): requests and events,
or a latency histogram. The SDKs only ship keys that saw traffic, so a tenant with quiet hours,
or a side with no requests in a window, simply has no aggregate there. The simulator builds its
observations with this same code from aggregates it makes the same way, so whatever the store's
path does with missing windows, the simulator does too.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Generic, NamedTuple, TypeVar

from rollwise.core._plan import GuardKind, Plan
from rollwise.core.judgement._dispersion import Replicates
from rollwise.core.judgement._observations import (
    Exposure,
    LatencySample,
    Observations,
    RateSample,
    SegmentKey,
    Tally,
)


class Aggregate(NamedTuple):
    """One aggregate: the counts of a (stage, window, side, segment, metric)."""

    stage: int
    window: int  # window start, minutes since the epoch
    exposed: bool
    segment: str  # "" for the whole traffic, else "attribute=value"
    metric: str
    requests: int
    events: int = 0
    histogram: Sequence[int] | None = None


class AggregateTable:
    """A rollout's aggregates, one per key: ``put`` sets a key's counts (a later put of the
    same key replaces them, as the store's upsert leaves one row per key), ``observations``
    reads them as strata.

    The strata of each (metric, segment) are kept in (stage, window) order and the exposed
    totals are kept up to date as aggregates are put, so that reading the observations after
    each put (the simulator does, at every tick) costs what changed, not everything so far.
    """

    def __init__(self) -> None:
        self._segments: dict[str, SegmentKey] = {"": None}
        self._rates: dict[tuple[str, SegmentKey], _Series[RateSample]] = {}
        self._latencies: dict[tuple[str, SegmentKey], _Series[LatencySample]] = {}
        # Exposed requests per (metric, segment, stage).
        self._exposed: dict[tuple[str, SegmentKey, int], int] = {}
        self._replicates = Replicates()

    def put(self, aggregate: Aggregate) -> None:
        stage, window, exposed, segment_text, metric, requests, events, histogram = aggregate
        segment = self._segments.get(segment_text)
        if segment_text and segment is None:
            if segment_text.startswith("~"):
                self._replicates.put_segment(
                    segment_text, metric, stage, exposed, requests, events, histogram
                )
                return
            attribute, _, value = segment_text.partition("=")
            segment = self._segments[segment_text] = (attribute, value)
        key = (metric, segment)
        if histogram is not None:
            latencies = self._latencies.get(key)
            if latencies is None:
                latencies = self._latencies[key] = _Series(LatencySample)
            counts = tuple(histogram)
            before = latencies.set(stage, window, exposed, counts)
            if exposed:
                earlier = sum(before) if isinstance(before, tuple) else 0
                self._count(key, stage, sum(counts) - earlier)
        else:
            rates = self._rates.get(key)
            if rates is None:
                rates = self._rates[key] = _Series(RateSample)
            old = rates.set(stage, window, exposed, Tally(requests, events))
            if exposed:
                self._count(key, stage, requests - (old.requests if isinstance(old, Tally) else 0))

    def _count(self, key: tuple[str, SegmentKey], stage: int, added: int) -> None:
        total = (key[0], key[1], stage)
        self._exposed[total] = self._exposed.get(total, 0) + added

    def put_all(self, aggregates: Iterable[Aggregate]) -> None:
        for aggregate in aggregates:
            self.put(aggregate)

    def observations(
        self, plan: Plan, stage: int, exposure: Sequence[Exposure] = ()
    ) -> Observations:
        """The strata up to now, in (stage, window) order, with the stage's sample counts.

        Exposed samples of a stage are its exposed requests summed over its windows, for the
        metric that saw the most (metrics are recorded per request, so any one of them counts
        the requests); per value of ``min_samples_per`` likewise.
        """
        samples = [0] * (stage + 1)
        samples_per: list[dict[str, int]] = [{} for _ in range(stage + 1)]
        per_attribute = [s.min_samples_per for s in plan.stages]
        for (_, segment, row_stage), count in self._exposed.items():
            if row_stage > stage:
                continue
            if segment is None:
                samples[row_stage] = max(samples[row_stage], count)
            elif segment[0] == per_attribute[row_stage]:
                per = samples_per[row_stage]
                per[segment[1]] = max(per.get(segment[1], 0), count)
        return Observations(
            rates={key: series.samples() for key, series in self._rates.items()},
            latencies={key: series.samples() for key, series in self._latencies.items()},
            exposure=exposure,
            samples=samples,
            samples_per=samples_per,
            dispersion={
                guard.metric: self._replicates.of(guard.metric)
                for guard in plan.guards
                if guard.kind is not GuardKind.GAUGE
            },
        )


_Sample = TypeVar("_Sample", RateSample, LatencySample)
_Side = Tally | tuple[int, ...]


class _Series(Generic[_Sample]):
    """One (metric, segment)'s strata in (stage, window) order. A stratum's sample object is
    replaced only when one of its sides is put, so unchanged strata keep their identity from
    one reading to the next (the tail conversion of latency strata caches on it)."""

    def __init__(self, kind: type[_Sample]) -> None:
        self._kind: type[_Sample] = kind
        self._order: list[tuple[int, int]] = []
        self._samples: list[_Sample] = []
        self._at: dict[tuple[int, int], int] = {}
        self._frozen: tuple[_Sample, ...] | None = ()

    def set(self, stage: int, window: int, exposed: bool, side: _Side) -> _Side | None:
        """Set one side of a stratum; returns what that side held before (None if nothing)."""
        label = (stage, window)
        position = self._at.get(label)
        if position is None:
            sample = self._kind(stage=stage, window=window)
            position = bisect_left(self._order, label)
            self._order.insert(position, label)
            self._samples.insert(position, sample)
            if position != len(self._order) - 1:
                self._at = {label: index for index, label in enumerate(self._order)}
            else:
                self._at[label] = position
            before = None
        else:
            sample = self._samples[position]
            before = sample.exposed if exposed else sample.baseline
        # A series of rate samples is only ever given tallies, one of latencies histograms.
        if exposed:
            self._samples[position] = replace(sample, exposed=side)  # type: ignore[arg-type]
        else:
            self._samples[position] = replace(sample, baseline=side)  # type: ignore[arg-type]
        self._frozen = None
        return before

    def samples(self) -> tuple[_Sample, ...]:
        if self._frozen is None:
            self._frozen = tuple(self._samples)
        return self._frozen
