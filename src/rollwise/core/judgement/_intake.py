"""How a rollout's aggregates reach its evidence: each put routed to its raw series (kept for
what the judgement reads: a segment no guard splits by and no gate counts is dropped), the
gates' sample counts kept up to date, and the series' evidence told what changed. The judging
itself is ``RolloutEvidence`` (``_rollout.py``), built on this."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from rollwise.core._plan import Guard, GuardKind, Plan
from rollwise.core.judgement._aggregates import Aggregate
from rollwise.core.judgement._decision import harm_alpha
from rollwise.core.judgement._dispersion import Replicates
from rollwise.core.judgement._folding import FoldedRates
from rollwise.core.judgement._latency_state import FoldedLatency
from rollwise.core.judgement._observations import Exposure, GaugeReading, Observations, SegmentKey
from rollwise.core.judgement._series import LatencySeries, RateSeries, label_of

_Key = tuple[str, SegmentKey]
# What a segment's aggregates are kept for (``EvidenceIntake._role``).
_JUDGED, _COUNTED, _IGNORED = 1, 2, 3


class _Judged:
    """One guard's series: the whole traffic and the segments judged now (``segments`` order).
    ``alpha`` is the whole traffic's level (``harm_alpha``); each segment's evidence keeps its
    position's (``segment_alpha``)."""

    __slots__ = ("alpha", "guard", "heads", "segments", "whole")

    def __init__(self, guard: Guard, alpha: float) -> None:
        self.guard = guard
        self.alpha = alpha
        self.heads = -1  # ``RolloutEvidence._heads`` when the segments were chosen
        self.whole: FoldedRates | FoldedLatency | None = None
        self.segments: dict[tuple[str, str], FoldedRates | FoldedLatency] = {}


class EvidenceIntake:
    """The aggregates side of ``RolloutEvidence``."""

    def __init__(self, plan: Plan, *, open_minutes: int | None = None, bounds: bool = True) -> None:
        self.plan = plan
        self.bounds = bounds
        self.stages = len(plan.stages)
        window = int(plan.stratum.total_seconds() // 60)
        self.open_minutes = open_minutes if open_minutes is not None else max(60, 2 * window)
        self._stale = False
        #: Bumped by every put that changed something.
        self.version = 0
        self._names: dict[str, SegmentKey] = {"": None}
        self._rates: dict[_Key, RateSeries] = {}
        self._latencies: dict[_Key, LatencySeries] = {}
        self._exposed: dict[tuple[str, SegmentKey, int], int] = {}
        self._best: dict[tuple[SegmentKey, int], int] = {}
        self._newest: int | None = None
        self._floor: int | None = None  # latency histograms before this window are dropped
        self._heads = 0  # bumped when a segment's first stratum changes
        self._roles: dict[tuple[str, str], int] = {}
        #: The units' replicates, for each rate metric's dispersion (``_dispersion.py``).
        self._replicates = Replicates()
        #: Attributes whose values' exposed requests a gate counts (``min_samples_per``).
        self._sampled = {s.min_samples_per for s in plan.stages if s.min_samples_per}
        self._per_attribute = [s.min_samples_per for s in plan.stages]
        self._orders: dict[tuple[str, str], tuple[int, list[str]]] = {}
        self._guards = [
            _Judged(guard, harm_alpha(plan, guard.on_regression)) for guard in plan.guards
        ]
        self._by_metric: dict[str, list[_Judged]] = {}
        for judged in self._guards:
            if judged.guard.kind is not GuardKind.GAUGE:
                self._by_metric.setdefault(judged.guard.metric, []).append(judged)

    # --- aggregates ---------------------------------------------------------------------

    def put_all(self, aggregates: Iterable[Aggregate]) -> None:
        for aggregate in aggregates:
            self.put(aggregate)

    def put(self, aggregate: Aggregate) -> None:
        stage, window, exposed, text, metric, requests, events, histogram = aggregate
        segment = self._names.get(text)
        if text and segment is None:
            if text.startswith("~"):
                if self._replicates.put_segment(
                    text, metric, stage, exposed, requests, events, histogram
                ):
                    self.version += 1
                return
            attribute, _, value = text.partition("=")
            segment = self._names[text] = (attribute, value)
        if histogram is None:
            self.put_rate(metric, segment, stage, window, exposed, requests, events)
        elif segment is None:
            self.put_latency(metric, stage, window, exposed, tuple(histogram))
        else:
            if self._newest is None or window > self._newest:
                self._newest = window
            if self._role(metric, segment[0]) is not _IGNORED:
                label = label_of(stage, window)
                self._put_latency(metric, segment, stage, window, label, exposed, tuple(histogram))

    def put_latency(
        self, metric: str, stage: int, window: int, exposed: bool, histogram: tuple[int, ...]
    ) -> None:
        """One side of the whole traffic's latency stratum: ``put`` of a histogram aggregate
        without a segment, already parsed (the simulator's hot loop)."""
        if self._newest is None or window > self._newest:
            self._newest = window
        label = label_of(stage, window)
        self._put_latency(metric, None, stage, window, label, exposed, histogram)

    def _role(self, metric: str, attribute: str) -> int:
        """What a segment of ``metric`` split by ``attribute`` is for: judged (a guard on the
        metric splits by it), counted (exposed samples per value: ``min_samples_per``) or
        nothing the judgement reads."""
        role = self._roles.get((metric, attribute))
        if role is None:
            if any(attribute in judged.guard.by for judged in self._by_metric.get(metric, ())):
                role = _JUDGED
            elif any(stage.min_samples_per == attribute for stage in self.plan.stages):
                role = _COUNTED
            else:
                role = _IGNORED
            self._roles[(metric, attribute)] = role
        return role

    def keeps(self, metric: str, segment: SegmentKey, exposed: bool) -> bool:
        """Whether a rate aggregate of this key is read at all (the others may be left out)."""
        if segment is None:
            return True
        role = self._role(metric, segment[0])
        return role is _JUDGED or (role is _COUNTED and exposed)

    def put_rate(
        self,
        metric: str,
        segment: SegmentKey,
        stage: int,
        window: int,
        exposed: bool,
        requests: int,
        events: int,
    ) -> None:
        """One side of a rate stratum: ``put`` of a count aggregate, already parsed."""
        self.put_rates(metric, stage, window, exposed, (segment,), (requests,), (events,))

    def put_rates(
        self,
        metric: str,
        stage: int,
        window: int,
        exposed: bool,
        segments: Sequence[SegmentKey],
        requests: Sequence[int],
        events: Sequence[int],
    ) -> None:
        """One side of a stratum of ``metric`` for several segments at once (the simulator's
        hot loop)."""
        if self._newest is None or window > self._newest:
            self._newest = window
        label = label_of(stage, window)
        judged = self._by_metric.get(metric, ())
        rates, sampled = self._rates, self._sampled
        changes = 0
        for segment, count, failed in zip(segments, requests, events, strict=True):
            key = (metric, segment)
            series = rates.get(key)
            if series is None:
                if segment is not None:
                    role = self._role(metric, segment[0])
                    if role is _IGNORED or (role is _COUNTED and not exposed):
                        continue
                series = rates[key] = RateSeries(counted=segment is not None and role is _COUNTED)
            elif series.counted and not exposed:
                continue
            before = series.set(label, exposed, count, failed)
            if before is None:
                continue
            changes += 1
            if exposed and (segment is None or segment[0] in sampled):
                self._add_exposed(metric, segment, stage, count - before)
            if segment is None:
                for guard in judged:
                    if isinstance(guard.whole, FoldedRates):
                        guard.whole.changed(label, exposed)
                    if not exposed:  # the whole's baseline: what segments are paired with
                        for evidence in guard.segments.values():
                            if isinstance(evidence, FoldedRates):
                                evidence.whole_changed(label)
                continue
            if series.labels[0] == label:
                self._heads += 1
            for guard in judged:
                found = guard.segments.get(segment)
                if isinstance(found, FoldedRates):
                    found.changed(label, exposed)
        self.version += changes

    def _add_exposed(self, metric: str, segment: SegmentKey, stage: int, added: int) -> None:
        """Exposed requests per (metric, segment, stage), and their largest over the metrics
        per (segment, stage): the gates' sample counts (``AggregateTable.observations``)."""
        key = (metric, segment, stage)
        before = self._exposed.get(key, 0)
        after = self._exposed[key] = before + added
        best_key = (segment, stage)
        best = self._best.get(best_key)
        if best is None or after >= best:
            self._best[best_key] = after
        elif before == best:  # the largest went down: find it again
            self._best[best_key] = max(
                count for (_, seg, st), count in self._exposed.items() if (seg, st) == best_key
            )

    def _put_latency(
        self,
        metric: str,
        segment: SegmentKey,
        stage: int,
        window: int,
        label: int,
        exposed: bool,
        histogram: tuple[int, ...],
    ) -> None:
        if self._floor is not None and window < self._floor:
            self._stale = True  # a window folded already: only all the aggregates can tell
            return
        key = (metric, segment)
        series = self._latencies.get(key)
        if series is None:
            series = self._latencies[key] = LatencySeries()
        before = series.set(label, exposed, histogram)
        if before is None:
            return
        self.version += 1
        if exposed and (segment is None or segment[0] in self._sampled):
            self._add_exposed(metric, segment, stage, sum(histogram) - before)
        if segment is not None and series.first == label:
            self._heads += 1
        for judged in self._by_metric.get(metric, ()):
            if segment is None:
                if isinstance(judged.whole, FoldedLatency):
                    judged.whole.set(stage, window, *series.open[label])
                if not exposed:
                    for key_, evidence in judged.segments.items():
                        if isinstance(evidence, FoldedLatency):
                            self._feed_latency(evidence, (metric, key_), label, stage, window)
            elif segment[0] in judged.guard.by:
                found = judged.segments.get(segment)
                if isinstance(found, FoldedLatency):
                    self._feed_latency(found, key, label, stage, window)

    def _feed_latency(
        self, evidence: FoldedLatency, key: _Key, label: int, stage: int, window: int
    ) -> None:
        """A segment's stratum with the whole's baseline where it has none
        (``paired_latencies``)."""
        series = self._latencies.get(key)
        sides = series.open.get(label) if series is not None else None
        if sides is None:
            return
        exposed, baseline = sides
        if not any(baseline):
            whole = self._latencies.get((key[0], None))
            found = whole.open.get(label) if whole is not None else None
            if found is not None:
                baseline = found[1]
        evidence.set(stage, window, exposed, baseline)

    # --- what the decision reads --------------------------------------------------------

    def observations(
        self,
        stage: int,
        exposure: Sequence[Exposure] = (),
        gauges: Mapping[str, Sequence[GaugeReading]] | None = None,
    ) -> Observations:
        """The gates' inputs (samples per stage, exposure, gauges), as ``AggregateTable``
        counts them; the strata themselves are judged here, not handed over."""
        samples = [0] * (stage + 1)
        samples_per: list[dict[str, int]] = [{} for _ in range(stage + 1)]
        per_attribute = self._per_attribute
        for (segment, row_stage), count in self._best.items():
            if row_stage > stage:
                continue
            if segment is None:
                samples[row_stage] = count
            elif segment[0] == per_attribute[row_stage]:
                samples_per[row_stage][segment[1]] = count
        return Observations(
            exposure=exposure, samples=samples, samples_per=samples_per, gauges=gauges or {}
        )
