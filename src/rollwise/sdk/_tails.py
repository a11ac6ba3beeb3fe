"""Where a latency guard's tail begins, as this client sees its baseline: the point its
replicates count the requests beyond.

The judge discounts a latency guard's tail test by the dispersion between units, as it does a
rate's (docs/judgement.md, "Clustered units"): per replicate of units, how many requests there
were and how many were slower than the tail point. The judge's own tail point (the baseline's
quantile over earlier windows) is not known here, so the client takes its own: the quantile
(``LiveRollout.tails``) of the baseline latencies it recorded in the stage, once it holds
enough of them for the quantile to be read (20 beyond it, as the judge asks of its reference).
φ is the same for an indicator and its complement, and moves slowly with the point; clients
whose points differ a little only add spread between replicates, which makes φ larger, never
smaller. The point is fixed between two cuts, so recording reads one dictionary.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Protocol

from rollwise.sdk._snapshot import LiveRollout

#: (rollout, stage, metric)
TailKey = tuple[int, int, str]
#: Stages whose baseline histograms are kept at most; beyond, those without outcomes in the
#: last cut are forgotten.
MAX_TAILS = 256


class _Counted(Protocol):
    histogram: list[int] | None


class TailPoints:
    """Per (rollout, stage, latency metric): the baseline histogram recorded in the stage, and
    the bucket of its quantile once it holds enough requests (``points``, read when recording:
    a request in a later bucket is beyond the tail)."""

    def __init__(self) -> None:
        self.points: dict[TailKey, int] = {}
        self._seen: dict[TailKey, tuple[float, list[int]]] = {}

    def add(
        self, rows: Iterable[tuple[tuple[LiveRollout, int, bool, object, str], _Counted]]
    ) -> None:
        """Add a cut's baseline rows of the tail metrics (at a cut, not when recording)."""
        for (rollout, _, exposed, _, metric), row in rows:
            if exposed or row.histogram is None:
                continue
            quantile = rollout.tails.get(metric)
            if quantile is None:
                continue
            key = (rollout.id, rollout.stage, metric)
            seen = self._seen.get(key)
            if seen is None:
                self._seen[key] = (quantile, list(row.histogram))
            else:
                kept = seen[1]
                for bucket, count in enumerate(row.histogram):
                    if count:
                        kept[bucket] += count

    def refresh(self, active: set[tuple[int, int]]) -> None:
        """Read the points again; forget stages without outcomes in this cut if too many are
        kept. The new points replace the old in one assignment."""
        if len(self._seen) > MAX_TAILS:
            self._seen = {k: v for k, v in self._seen.items() if (k[0], k[1]) in active}
        points: dict[TailKey, int] = {}
        for key, (quantile, histogram) in self._seen.items():
            point = tail_point(histogram, quantile)
            if point is not None:
                points[key] = point
        self.points = points


def tail_point(histogram: Sequence[int], quantile: float) -> int | None:
    """The bucket holding the ``quantile`` of ``histogram``; None before it holds 20 requests
    beyond the quantile's share (20 / (1 - quantile) in all)."""
    total = sum(histogram)
    if total < math.ceil(20 / (1 - quantile)):
        return None
    wanted = quantile * total
    running = 0
    for bucket, count in enumerate(histogram):
        running += count
        if running >= wanted:
            return bucket
    return len(histogram) - 1
