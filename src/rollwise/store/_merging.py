"""A group of SDK batches merged by key in Python before it is written (``_ingest.py``): the
counts of each aggregate key added, its latency histograms added bucket by bucket (dense or
sparse), and each unit's first sighting and first exposure, so that a statement never names a
key twice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from rollwise.core.judgement import LATENCY_BUCKETS
from rollwise.store._errors import RefusedError
from rollwise.store._records import ExposureRow

if TYPE_CHECKING:
    from rollwise.store._ingest import EventBatch

#: (rollout, stage, window, exposed, segment, metric): Python's order on it is the lock order.
AggregateKey = tuple[int, int, int, bool, str, str]
#: The ``histogram`` column as read: ``sparse_histogram``'s form, or the dense list of counts
#: that rows written before 2026-12-02 hold.
StoredHistogram = dict[str, Any] | list[int]


@dataclass(slots=True)
class Sum:
    requests: int
    events: int
    histogram: list[int] | None
    #: The buckets ``histogram`` may have counts in, when the group sent it sparse only (what
    #: the SDK sends: a few dozen of the 432); None when a dense one was added in.
    touched: list[int] | None = None


@dataclass(slots=True)
class _Sighting:
    """A unit's first sighting in a group, and its first exposure (if it was exposed)."""

    first: ExposureRow
    exposure: ExposureRow | None


def _misfit(what: str, buckets: int, stored: int) -> RefusedError:
    return RefusedError(
        f"{what}: a histogram of {buckets} buckets cannot be added to one of {stored}",
        details={"buckets": buckets, "stored_buckets": stored},
    )


def _sum_histograms(histograms: Sequence[Sequence[int]], what: str) -> list[int]:
    """Elementwise sum. Many at once in NumPy (a group sums thousands of 432-bucket
    histograms); Python's integers when int64 could overflow."""
    first = histograms[0]
    for other in histograms[1:]:
        if len(other) != len(first):
            raise _misfit(what, len(other), len(first))
    if len(histograms) == 1:
        return list(first)
    table = np.array(histograms, dtype=np.int64)
    if int(table.max(initial=0)) * len(histograms) < 2**63:
        return [int(total) for total in table.sum(axis=0)]
    return [sum(column) for column in zip(*histograms, strict=True)]


def _histogram_of(
    key: AggregateKey,
    dense: Sequence[Sequence[int]] | None,
    sparse: Sequence[Sequence[int]] | None,
) -> tuple[list[int], list[int] | None]:
    """One key's histograms of a group added up, dense and sparse, and the buckets the sum may
    have counts in when all were sparse (None otherwise). Sparse ones are added a non-zero
    bucket at a time: a latency spans a few dozen of the 432 buckets, so this is several times
    cheaper than adding dense lists."""
    total = _sum_histograms(dense, describe(key)) if dense else [0] * LATENCY_BUCKETS
    touched: set[int] | None = None if dense else set()
    if sparse:
        if len(total) != LATENCY_BUCKETS:
            raise _misfit(describe(key), LATENCY_BUCKETS, len(total))
        for buckets in sparse:
            if len(buckets) % 2:
                raise RefusedError(
                    f"{describe(key)}: sparse buckets are index, count pairs, but there are "
                    f"{len(buckets)} numbers",
                    details={"numbers": len(buckets)},
                )
            pairs = iter(buckets)
            for index, count in zip(pairs, pairs, strict=True):
                if not 0 <= index < LATENCY_BUCKETS:
                    raise RefusedError(
                        f"{describe(key)}: bucket {index} is not one of the {LATENCY_BUCKETS} "
                        f"buckets (0 … {LATENCY_BUCKETS - 1})",
                        details={"bucket": index, "buckets": LATENCY_BUCKETS},
                    )
                total[index] += count
            if touched is not None:
                touched.update(buckets[::2])
    return total, list(touched) if touched is not None else None


def add_histogram(
    stored: StoredHistogram | None, more: list[int], what: str, touched: list[int] | None = None
) -> dict[str, Any]:
    """``stored`` + ``more``, bucket by bucket, as the column stores it (``sparse_histogram``);
    ``stored`` as read from the column (either form), or None for a new row. With
    ``touched`` (``Sum.touched``) only the buckets ``more`` may have counts in are looked at:
    a few dozen instead of 432, on every key of every group written."""
    length = len(more)
    totals: dict[int, int] = {}
    if stored is not None:
        stored_length, totals = _stored_buckets(stored)
        if stored_length != length:
            raise _misfit(what, length, stored_length)
    for index in touched if touched is not None else range(length):
        count = more[index]
        if count:
            totals[index] = totals.get(index, 0) + count
    return sparse_histogram(length, totals)


def sparse_histogram(length: int, totals: dict[int, int]) -> dict[str, Any]:
    """A histogram as the aggregates' ``histogram`` column stores it since 2026-12-02: its
    number of buckets and its non-zero buckets as index, count pairs in index order (the
    SDK's sparse form). A latency spans a few dozen of the 432 buckets, so the row is read
    and written back (JSON) at several times less cost than the dense list stored before,
    which is still read (``histogram_counts``) and becomes sparse when next written."""
    flat: list[int] = []
    for index in sorted(totals):
        flat += (index, totals[index])
    return {"length": length, "buckets": flat}


def _stored_buckets(stored: StoredHistogram) -> tuple[int, dict[int, int]]:
    """A stored histogram, either form: its length and non-zero buckets."""
    if isinstance(stored, dict):
        buckets = stored["buckets"]
        return int(stored["length"]), dict(zip(buckets[::2], buckets[1::2], strict=True))
    return len(stored), {index: count for index, count in enumerate(stored) if count}


def histogram_counts(stored: StoredHistogram | None) -> tuple[int, ...] | None:
    """A stored histogram (either form, or None) as its bucket counts."""
    if stored is None:
        return None
    if isinstance(stored, dict):
        counts = [0] * int(stored["length"])
        buckets = stored["buckets"]
        for position in range(0, len(buckets), 2):
            counts[buckets[position]] = buckets[position + 1]
        return tuple(counts)
    return tuple(stored)


def describe(key: AggregateKey) -> str:
    rollout, stage, window, exposed, segment, metric = key
    side = "exposed" if exposed else "baseline"
    return f"rollout {rollout} stage {stage} window {window} {side} {segment!r} {metric}"


#: The columns of a ledger row as ``Merged.sightings`` holds them, in the order the upserts
#: take them (``_ingest_pg.py``, ``_ingest_sqlite.py``).
SIGHTING_COLUMNS = (
    "rollout_id",
    "unit",
    "stage",
    "exposed",
    "first_seen",
    "first_exposed",
    "exposed_stage",
    "exposed_at",
)


@dataclass(frozen=True, slots=True)
class Merged:
    """A group's rows merged by key: what its statements write."""

    aggregates: dict[AggregateKey, Sum]
    #: Ledger rows, sorted by (rollout, unit): each unit's first sighting and first exposure.
    sightings: list[dict[str, Any]]

    @classmethod
    def of(cls, batches: Sequence[EventBatch]) -> Merged:
        """Raises RefusedError: histograms of one key differ in length."""
        counts: dict[AggregateKey, list[int]] = {}
        histograms: dict[AggregateKey, list[Sequence[int]]] = {}
        sparse: dict[AggregateKey, list[Sequence[int]]] = {}
        for batch in batches:
            for row in batch.aggregates:
                key = (row.rollout_id, row.stage, row.window, row.exposed, row.segment, row.metric)
                total = counts.get(key)
                if total is None:
                    total = counts[key] = [0, 0]
                total[0] += row.requests
                total[1] += row.events
                if row.histogram is not None:
                    histograms.setdefault(key, []).append(row.histogram)
                if row.buckets is not None:
                    sparse.setdefault(key, []).append(row.buckets)
        aggregates = {}
        for key, (requests, events) in counts.items():
            dense, loose = histograms.get(key), sparse.get(key)
            histogram, touched = (
                _histogram_of(key, dense, loose) if dense or loose else (None, None)
            )
            aggregates[key] = Sum(requests, events, histogram, touched)
        seen: dict[tuple[int, str], _Sighting] = {}
        for batch in batches:
            for unit in batch.exposures:
                sighting = seen.get((unit.rollout_id, unit.unit))
                if sighting is None:
                    seen[(unit.rollout_id, unit.unit)] = _Sighting(
                        unit, unit if unit.exposed else None
                    )
                elif unit.exposed and sighting.exposure is None:
                    sighting.exposure = unit
        sightings = []
        for (rollout_id, name), sighting in sorted(seen.items(), key=lambda item: item[0]):
            exposure = sighting.exposure
            sightings.append(
                {
                    "rollout_id": rollout_id,
                    "unit": name,
                    "stage": sighting.first.stage,
                    "exposed": exposure is not None,
                    "first_seen": sighting.first.at,
                    "first_exposed": sighting.first.exposed,
                    "exposed_stage": exposure.stage if exposure is not None else None,
                    "exposed_at": exposure.at if exposure is not None else None,
                }
            )
        return cls(aggregates, sightings)
