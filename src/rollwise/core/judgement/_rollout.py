"""A rollout's evidence kept up to date as its aggregates arrive: what the controller and the
simulator judge from, at a cost that grows with what changed, not with everything so far.

``put`` takes an aggregate as the store holds it after a batch (a later put of the same key
replaces it, like ``AggregateTable.put``); ``judged`` returns exactly what ``judge_guards``
returns for the ``AggregateTable`` of the same aggregates, and ``guard_states`` what
``decide_move`` needs of it. Rate series are kept whole (``RateSeries``) and judged from sums
folded per stage (``FoldedRates``); latency series keep their open windows (``FoldedLatency``).
A batch that changes a latency window folded already cannot be replayed: the evidence is then
``stale``, and its owner builds it again from all of the rollout's aggregates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from rollwise.core._plan import Guard, GuardKind, Worse
from rollwise.core.judgement._decision import Judged, judged_segments
from rollwise.core.judgement._folding import FoldedRates
from rollwise.core.judgement._gauges import judge_gauge
from rollwise.core.judgement._intake import EvidenceIntake, _Judged, _Key
from rollwise.core.judgement._intervals import rate_bounds_many
from rollwise.core.judgement._latency_state import FoldedLatency
from rollwise.core.judgement._observations import GaugeReading, SegmentKey
from rollwise.core.judgement._series import RateSeries, stage_of, window_of
from rollwise.core.judgement._verdicts import GuardVerdict, Verdict


class RolloutEvidence(EvidenceIntake):
    """Every guard's evidence for one rollout of ``plan``.

    ``open_minutes``: how long a window stays open to late batches before it is folded (by
    default an hour, and at least two of the plan's windows). ``bounds=False`` promises that
    no verdict will be asked with its bounds (a latency guard then keeps no pooled histograms).
    """

    def _boundary(self) -> int | None:
        return None if self._newest is None else self._newest - self.open_minutes

    def _segments(self, metric: str, attribute: str) -> list[str]:
        """``Observations.segments``: values in order of first appearance."""
        known = self._orders.get((metric, attribute))
        if known is not None and known[0] == self._heads:
            return known[1]
        first: dict[str, tuple[int, int, int]] = {}
        for store in (self._rates, self._latencies):
            for (name, key), series in store.items():
                if name == metric and key is not None and key[0] == attribute:
                    head = series.head()
                    if head is not None:
                        first[key[1]] = head
        order = sorted(first, key=lambda value: (*first[value], value))
        self._orders[(metric, attribute)] = (self._heads, order)
        return order

    def _prepare(self, judged: _Judged) -> None:
        """Create the evidence of the whole and of the segments judged now; forget the others."""
        if judged.heads == self._heads and judged.whole is not None:
            return  # no segment's first stratum changed: the same segments are judged
        judged.heads = self._heads
        guard = judged.guard
        metric = guard.metric
        if guard.kind is GuardKind.RATE:
            whole = self._rates.setdefault((metric, None), RateSeries())
            if judged.whole is None:
                judged.whole = FoldedRates(guard, judged.alpha, self.stages, whole, whole)
        elif judged.whole is None:
            judged.whole = self._latency_evidence(guard, judged.alpha, (metric, None))
        # Each segment at its position's level, as ``judge_guard`` judges it (``judged_segments``).
        wanted = dict(judged_segments(guard, self._segments, judged.alpha))
        if list(judged.segments) == list(wanted):
            return
        kept = {}
        for key, alpha in wanted.items():
            evidence = judged.segments.get(key)
            if evidence is not None and evidence.alpha != alpha:
                # Its rank moved (a value first seen earlier arrived late, or the first
                # stratum's sizes reordered): latency reads its level only when judging; rate
                # sums (and a unit's own history) are found again from the series kept whole.
                if isinstance(evidence, FoldedLatency):
                    evidence.alpha = alpha
                else:
                    evidence = None
            if evidence is None:
                if guard.kind is GuardKind.RATE:
                    series = self._rates.setdefault((metric, key), RateSeries())
                    evidence = FoldedRates(
                        guard,
                        alpha,
                        self.stages,
                        series,
                        self._rates[(metric, None)],
                        unit=key[0] == self.plan.unit,
                    )
                else:
                    evidence = self._latency_evidence(guard, alpha, (metric, key))
            kept[key] = evidence
        judged.segments = kept

    def _latency_evidence(self, guard: Guard, alpha: float, key: _Key) -> FoldedLatency:
        """A latency series' evidence from its open windows (stale if some are folded)."""
        evidence = FoldedLatency(guard, alpha, self.stages, pooled=self.bounds)
        series = self._latencies.get(key)
        if series is None:
            return evidence
        floor, earliest = self._floor, series.earliest
        if floor is not None and earliest is not None and earliest < floor:
            self._stale = True  # it has windows whose histograms are gone
        for label in sorted(series.open):
            if key[1] is None:
                evidence.set(stage_of(label), window_of(label), *series.open[label])
            else:
                self._feed_latency(evidence, key, label, stage_of(label), window_of(label))
        return evidence

    @property
    def stale(self) -> bool:
        """Whether a batch changed what was folded already: build the evidence again from all
        of the rollout's aggregates before judging."""
        return self._stale or any(
            isinstance(evidence, FoldedLatency) and evidence.stale
            for judged in self._guards
            for evidence in (judged.whole, *judged.segments.values())
        )

    def _ready(self) -> None:
        """Choose each guard's judged series, then drop what no series reads any more."""
        for judged in self._guards:
            if judged.guard.kind is not GuardKind.GAUGE:
                self._prepare(judged)
            if judged.guard.kind is not GuardKind.GAUGE:
                dispersion = self._replicates.of(judged.guard.metric)
                for evidence in (judged.whole, *judged.segments.values()):
                    if evidence is not None:
                        evidence.disperse(dispersion)
        self._evaluated()

    def _evaluated(self) -> None:
        """After judging: drop the histograms of the windows older than the open horizon (each
        series' evidence keeps what it still reads)."""
        boundary = self._boundary()
        if boundary is None or (self._floor is not None and boundary <= self._floor):
            return
        self._floor = boundary
        for series in self._latencies.values():
            series.drop_before(boundary)

    def judged(
        self,
        stage: int,
        now: datetime,
        gauges: Mapping[str, Sequence[GaugeReading]] | None = None,
        *,
        bounds: bool = False,
        pending_segment_bounds: bool = True,
    ) -> Judged:
        """``judge_guards(plan, observations, stage, now, bounds=...,
        pending_segment_bounds=...)`` for the observations these aggregates make."""
        self._ready()
        boundary = self._boundary()
        verdicts: list[GuardVerdict] = []
        segment_verdicts: list[GuardVerdict] = []
        states: list[tuple[Guard, Verdict, GuardVerdict]] = []
        for judged in self._guards:
            guard = judged.guard
            if guard.kind is GuardKind.GAUGE:
                overall = judge_gauge(guard, (gauges or {}).get(guard.metric, ()), now)
                segments: list[GuardVerdict] = []
            elif isinstance(judged.whole, FoldedRates):
                overall, *segments = self._rate_verdicts(
                    judged, stage, boundary, bounds, pending_segment_bounds
                )
            else:
                assert judged.whole is not None
                overall = judged.whole.verdict(stage, boundary, None, bounds)
                segments = [
                    evidence.verdict(stage, boundary, key, bounds)
                    for key, evidence in judged.segments.items()
                ]
            verdicts.append(overall)
            segment_verdicts.extend(segments)
            harmed = [v for v in (overall, *segments) if v.verdict is Verdict.HARM]
            states.append(
                (guard, Verdict.HARM, harmed[0]) if harmed else (guard, overall.verdict, overall)
            )
        return Judged(tuple(verdicts), tuple(segment_verdicts), tuple(states))

    def _rate_verdicts(
        self,
        judged: _Judged,
        stage: int,
        boundary: int | None,
        bounds: bool,
        pending_segment_bounds: bool,
    ) -> list[GuardVerdict]:
        """A rate guard's verdicts, whole traffic first; the bounds of all that need them found
        in one search (``rate_bounds_many``: the same bounds as one series at a time)."""
        assert isinstance(judged.whole, FoldedRates)
        series: list[tuple[SegmentKey, FoldedRates]] = [(None, judged.whole)]
        series += [(k, e) for k, e in judged.segments.items() if isinstance(e, FoldedRates)]
        verdicts = []
        wanted: list[int] = []
        for index, (key, evidence) in enumerate(series):
            verdict, facts = evidence.unbounded(stage, boundary, key)
            verdicts.append((verdict, facts))
            pending = pending_segment_bounds or key is None
            if evidence.wants_bounds(verdict, bounds, pending):
                wanted.append(index)
        inputs = []
        for index in wanted:
            evidence = series[index][1]
            history, now = evidence.bounds_strata(stage)
            inputs.append((history, now, evidence.tests.log_harm, evidence.tests.log_safe))
        found = rate_bounds_many(
            inputs,
            judged.guard.worse is Worse.HIGHER,
            self.stages,
            [series[index][1].dispersion.phi for index in wanted],
        )
        result = [verdict for verdict, _ in verdicts]
        for index, shown in zip(wanted, found, strict=True):
            key, evidence = series[index]
            result[index] = evidence.bounded(verdicts[index][1], shown, key)
        return result

    def guard_states(
        self,
        stage: int,
        now: datetime,
        gauges: Mapping[str, Sequence[GaugeReading]] | None = None,
    ) -> GuardStatesNow:
        """What ``decide_move`` asks, answered lazily at ``stage``."""
        self._ready()
        return GuardStatesNow(self, stage, now, gauges or {})


class GuardStatesNow:
    """``decide_move``'s view of a ``RolloutEvidence`` at one stage and time."""

    def __init__(
        self,
        evidence: RolloutEvidence,
        stage: int,
        now: datetime,
        gauges: Mapping[str, Sequence[GaugeReading]],
    ) -> None:
        self._evidence = evidence
        self._stage = stage
        self._now = now
        self._gauges = gauges
        self._boundary = evidence._boundary()

    def harmed(self, index: int) -> bool:
        judged = self._evidence._guards[index]
        guard = judged.guard
        if guard.kind is GuardKind.GAUGE:
            verdict = judge_gauge(guard, self._gauges.get(guard.metric, ()), self._now)
            return verdict.verdict is Verdict.HARM
        assert judged.whole is not None
        stage, boundary = self._stage, self._boundary
        if judged.whole.harmed(stage, boundary):
            return True
        return any(evidence.harmed(stage, boundary) for evidence in judged.segments.values())

    def verdict(self, index: int) -> Verdict:
        judged = self._evidence._guards[index]
        guard = judged.guard
        if guard.kind is GuardKind.GAUGE:
            return judge_gauge(guard, self._gauges.get(guard.metric, ()), self._now).verdict
        assert judged.whole is not None
        return judged.whole.verdict(self._stage, self._boundary, None, False).verdict
