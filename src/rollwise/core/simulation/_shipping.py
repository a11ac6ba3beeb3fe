"""A simulated window's counts shipped the way an SDK ships them: one aggregate per (side,
segment, metric) that saw requests — into an ``AggregateTable`` (the full judgement) or straight
into a rollout's ``RolloutEvidence`` (the incremental one, without making the aggregates)."""

from __future__ import annotations

import numpy as np

from rollwise.core.judgement import LATENCY_BOUNDARIES_MS, Aggregate, SegmentKey
from rollwise.core.judgement._rollout import RolloutEvidence
from rollwise.core.simulation._population import Population


class WindowShipping:
    """The aggregates side of ``Simulation``."""

    population: Population
    rate_metrics: list[str]
    latency_metrics: list[str]
    keys: list[SegmentKey]
    segment_texts: list[str]
    membership: np.ndarray
    _rows: dict[tuple[str, bool], tuple[list[SegmentKey], np.ndarray]]

    def _empty_stratum(self) -> dict[tuple[str, bool], np.ndarray]:
        cells = len(self.population.cells)
        buckets = len(LATENCY_BOUNDARIES_MS) + 1
        counts = {
            (name, side): np.zeros(cells, dtype=np.int64)
            for name in ["requests", *self.rate_metrics]
            for side in (True, False)
        }
        for metric in self.latency_metrics:
            for side in (True, False):
                counts[metric, side] = np.zeros(buckets, dtype=np.int64)
        return counts

    def _aggregates(
        self, label: tuple[int, int], counts: dict[tuple[str, bool], np.ndarray]
    ) -> list[Aggregate]:
        """The current window's aggregates as an SDK would ship them: the whole traffic and
        every segment, by matrix product; only the keys that saw requests."""
        stage, window = label
        membership = self.membership
        result: list[Aggregate] = []
        for side in (True, False):
            requests = membership @ counts["requests", side]
            for metric in self.rate_metrics:
                events = membership @ counts[metric, side]
                for row, text in enumerate(self.segment_texts):
                    if requests[row]:
                        result.append(
                            Aggregate(
                                stage,
                                window,
                                side,
                                text,
                                metric,
                                int(requests[row]),
                                int(events[row]),
                            )
                        )
            if requests[0]:
                result.extend(self._latencies(stage, window, side, counts))
        return result

    def _latencies(
        self, stage: int, window: int, side: bool, counts: dict[tuple[str, bool], np.ndarray]
    ) -> list[Aggregate]:
        """The window's latency histograms of one side, the whole traffic's only."""
        return [
            Aggregate(
                stage,
                window,
                side,
                "",
                metric,
                int(counts[metric, side].sum()),
                0,
                counts[metric, side].tolist(),
            )
            for metric in self.latency_metrics
        ]

    def _put(
        self,
        evidence: RolloutEvidence,
        label: tuple[int, int],
        counts: dict[tuple[str, bool], np.ndarray],
    ) -> None:
        """``_aggregates`` put straight into the evidence (the same keys and counts, without
        making an ``Aggregate`` of each)."""
        stage, window = label
        for side in (True, False):
            requests = counts["requests", side]
            whole = -1  # the whole traffic's requests (row 0 of every metric's rows), if read
            for metric in self.rate_metrics:
                rows = self._rows.get((metric, side))
                if rows is None:
                    kept = [
                        row
                        for row, key in enumerate(self.keys)
                        if evidence.keeps(metric, key, side)
                    ]
                    rows = self._rows[metric, side] = (
                        [self.keys[row] for row in kept],
                        self.membership[kept],
                    )
                keys, membership = rows
                seen = (membership @ requests).tolist()
                whole = seen[0]
                events = (membership @ counts[metric, side]).tolist()
                if all(seen):
                    evidence.put_rates(metric, stage, window, side, keys, seen, events)
                else:  # only keys that saw requests, as an SDK ships them
                    shipped = [i for i, count in enumerate(seen) if count]
                    evidence.put_rates(
                        metric,
                        stage,
                        window,
                        side,
                        [keys[i] for i in shipped],
                        [seen[i] for i in shipped],
                        [events[i] for i in shipped],
                    )
            if whole > 0 or (whole < 0 and requests.any()):
                for metric in self.latency_metrics:
                    histogram = tuple(counts[metric, side].tolist())
                    evidence.put_latency(metric, stage, window, side, histogram)
