"""Prometheus as a guard source: counts per side and window, fetched by the controller.

For each running rollout whose plan has guards with a Prometheus ``source``
(``rollwise.core._sources``), each tick reads the ranges that ended since the last read: the
rollout's windows (its plan's ``stratum``), cut where the stage changed, once a range ended
``lag`` ago (scrapes land meanwhile). Per range and side it evaluates the guard's queries at the
range's end with ``{variant}`` the side's variant and ``{window}`` the range's length, and writes
what they return to the store as aggregates — requests and events, or a latency histogram — of
that stage and window, the shape SDK batches have. The controller then judges them with the same
anytime-valid tests. Each range is written as a batch whose id names the rollout, guard, stage and
range, so a range read again (after a restart) is not counted twice.

Failure policy: no data (an empty vector, NaN) writes nothing for that side, so a guard without
data stays pending — never safe. A query that fails (unreachable server, timeout, an error
answer, a body that is not Prometheus') leaves the range to be read again at the next tick; after
``failures`` failures in a row the rollout is paused with the error as the reason (``poll``'s
answer). Nothing raised here reaches the controller's tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from rollwise.core import GuardKind, Plan
from rollwise.core._sources import VARIANT, WINDOW, PrometheusSource
from rollwise.sources._promql import PrometheusApi, QueryError
from rollwise.store import AggregateRow, EventBatch, GaugeRow, RolloutRecord, Store

logger = logging.getLogger("rollwise.sources.prometheus")

SOURCE = "prometheus"
#: Seconds between two readings of a gauge guard's query.
GAUGE_EVERY = timedelta(seconds=15)
#: The most ranges one guard reads in one tick (a rollout seen late catches up over ticks).
MAX_RANGES_PER_TICK = 60


@dataclass
class _Cursor:
    """How far a guard of a rollout has been read, and its failures in a row."""

    until: datetime
    failures: int = 0
    error: str = ""
    failed_at: datetime | None = None


def first_of_metric(plan: Plan, index: int) -> int:
    """The first guard of ``plan`` on guard ``index``'s metric: it alone reads the metric's
    counts (a p95 and a p99 guard share them; the plan refuses guards on one metric whose
    sources differ)."""
    metric = plan.guards[index].metric
    return next(i for i, guard in enumerate(plan.guards) if guard.metric == metric)


def _resume(rollout: RolloutRecord, plan: Plan) -> datetime:
    """Where a guard is read from when this feed first sees the rollout (a start, a restart, a
    failover): the window before the current stage's start, so that the previous stage's last
    ranges (read a window and a lag late) are not lost; aligned to the windows as the first
    reads were, so that ranges read before are the same batches and counted once."""
    lag = max((g.source.lag for g in plan.guards if g.source is not None), default=timedelta())
    step = plan.stratum.total_seconds()
    back = (rollout.stage_entered_at - lag - plan.stratum).timestamp() // step * step
    return max(rollout.started_at, datetime.fromtimestamp(back, UTC))


class PrometheusFeed:
    """Reads the Prometheus-fed guards of the running rollouts into the store."""

    def __init__(
        self,
        store: Store,
        default_url: str | None = None,
        *,
        client: httpx.Client | None = None,
    ) -> None:
        self.store = store
        self.default_url = default_url.rstrip("/") if default_url else None
        self.api = PrometheusApi(client)
        self._cursors: dict[tuple[int, int], _Cursor] = {}
        #: Reads failed, over the feed's life (queries made: ``api.queries``).
        self.failed = 0

    def close(self) -> None:
        self.api.close()

    def poll(
        self, running: Sequence[RolloutRecord], plan_of: Callable[[int], Plan], now: datetime
    ) -> dict[int, str]:
        """Read what ended since the last poll, for every Prometheus-fed guard of ``running``.
        Returns the rollouts to pause: id → why (a guard's queries failed ``failures`` times in
        a row)."""
        live = {rollout.id for rollout in running}
        for key in [key for key in self._cursors if key[0] not in live]:
            del self._cursors[key]
        self.api.reset()  # a Prometheus that failed this tick is not asked again in it
        pause: dict[int, str] = {}
        for rollout in running:
            try:
                plan = plan_of(rollout.plan_id)
            except Exception:
                continue  # the controller says why it cannot judge this rollout
            for index, guard in enumerate(plan.guards):
                source = guard.source
                if source is None or first_of_metric(plan, index) != index:
                    continue  # a later guard on the same metric shares the first one's counts
                cursor = self._cursors.get((rollout.id, index))
                if cursor is None:
                    cursor = self._cursors[rollout.id, index] = _Cursor(_resume(rollout, plan))
                try:
                    self._read(rollout, plan, index, source, cursor, now)
                except Exception as error:  # never out of a tick: a failure of this guard
                    reason = self._failed(rollout, guard.metric, source, cursor, error, now)
                    if reason:
                        pause[rollout.id] = reason
                else:
                    cursor.failures = 0
        return pause

    def _failed(
        self,
        rollout: RolloutRecord,
        metric: str,
        source: PrometheusSource,
        cursor: _Cursor,
        error: Exception,
        now: datetime,
    ) -> str:
        """Count a failed read; the pause's reason once ``failures`` in a row were counted.
        Failures count at most once per ``lag`` (at least 10 s), so that a Prometheus
        restarting for a few seconds does not pause every rollout it feeds."""
        self.failed += 1
        text = str(error) if isinstance(error, QueryError) else f"{type(error).__name__}: {error}"
        cursor.error = text
        spacing = max(source.lag, timedelta(seconds=10))
        if cursor.failed_at is not None and now - cursor.failed_at < spacing:
            return ""
        cursor.failures += 1
        cursor.failed_at = now
        logger.warning(
            "rollout %s, guard %s: Prometheus read failed (%d in a row): %s",
            rollout.id,
            metric,
            cursor.failures,
            text,
        )
        if cursor.failures < source.failures:
            return ""
        cursor.failures = 0
        return (
            f"guard {metric}: its Prometheus queries failed {source.failures} times in a row "
            f"({text}); paused until a person looks at it"
        )

    # --- one guard -----------------------------------------------------------------------

    def _read(
        self,
        rollout: RolloutRecord,
        plan: Plan,
        index: int,
        source: PrometheusSource,
        cursor: _Cursor,
        now: datetime,
    ) -> None:
        guard = plan.guards[index]
        url = source.url or self.default_url
        if url is None:
            raise QueryError("no Prometheus URL: set the source's url or --prometheus-url")
        if guard.kind is GuardKind.GAUGE:
            if now - cursor.until >= GAUGE_EVERY:
                value = self.api.scalar(url, source, source.query or "", now)
                if value is not None:
                    batch = EventBatch(
                        f"{SOURCE}:{rollout.id}:{index}:gauge:{int(now.timestamp())}",
                        SOURCE,
                        now,
                        gauges=(GaugeRow(guard.metric, value, now),),
                    )
                    self.store.ingest_many([batch])
                cursor.until = now
            return
        ranges = _ranges(
            plan.stratum, cursor.until, now - source.lag, rollout.stage, rollout.stage_entered_at
        )
        if not ranges:
            return
        variants = {True: plan.variant, False: self._baseline_variant(plan, source)}
        for start, end, stage in ranges:
            rows: list[AggregateRow] = []
            window = int(start.timestamp() // 60) // _minutes(plan) * _minutes(plan)
            by = guard.by[0] if guard.by else None
            for exposed, variant in variants.items():
                found = self.counts(url, source, guard.kind, guard.metric, variant, start, end, by)
                for segment, (requests, events, histogram) in found.items():
                    rows.append(
                        AggregateRow(
                            rollout.id,
                            stage,
                            window,
                            exposed,
                            segment,
                            guard.metric,
                            requests,
                            events,
                            histogram,
                        )
                    )
            if rows:
                batch_id = (
                    f"{SOURCE}:{rollout.id}:{index}:{stage}:"
                    f"{int(start.timestamp())}-{int(end.timestamp())}"
                )
                self.store.ingest_many([EventBatch(batch_id, SOURCE, now, tuple(rows))])
            cursor.until = end

    def _baseline_variant(self, plan: Plan, source: PrometheusSource) -> str:
        if source.baseline_variant:
            return source.baseline_variant
        if plan.rollback_to:
            return plan.rollback_to
        flag = self.store.flags().flags.get(plan.flag)
        if flag is None:
            raise QueryError(f"flag {plan.flag!r} is not applied: no baseline variant")
        return flag.safe_default.name

    def counts(
        self,
        url: str,
        source: PrometheusSource,
        kind: GuardKind,
        metric: str,
        variant: str,
        start: datetime,
        end: datetime,
        by: str | None = None,
    ) -> dict[str, Counts]:
        """One side's counts in [start, end) per segment (``""``: the whole traffic); empty
        for no data. With ``by`` (the guard's one ``by`` attribute) each series of the
        queries' answer is that attribute's value (``sum by (tenant) (...)``): a segment
        ``tenant=acme`` each, and the whole traffic their sum."""
        seconds = f"{max(1, round((end - start).total_seconds()))}s"

        def fill(query: str) -> str:
            return query.replace(VARIANT, variant).replace(WINDOW, seconds)

        found: dict[str, Counts] = {}
        if kind is GuardKind.RATE:
            requests = self.api.values(url, source, fill(source.requests or ""), end, by)
            events = self.api.values(url, source, fill(source.events or ""), end, by)
            for segment, value in requests.items():
                total = max(0, round(value))
                # Two counters read apart may disagree by an extrapolated fraction.
                failed = min(total, max(0, round(events.get(segment, 0.0))))
                if total:
                    found[segment] = (total, failed, None)
            return _with_whole(found, by)
        for segment, histogram in self.api.histograms(
            url, source, fill(source.buckets or ""), end, metric, by
        ).items():
            if sum(histogram):
                found[segment] = (sum(histogram), 0, histogram)
        return _with_whole(found, by)


#: A side's counts of one segment in a range: (requests, events, histogram or None).
Counts = tuple[int, int, tuple[int, ...] | None]


def _with_whole(found: dict[str, Counts], by: str | None) -> dict[str, Counts]:
    """With ``by``, the whole traffic (``""``) is the sum of the segments."""
    if by is None or not found:
        return found
    requests = sum(counts[0] for counts in found.values())
    events = sum(counts[1] for counts in found.values())
    histograms = [counts[2] for counts in found.values() if counts[2] is not None]
    histogram = tuple(map(sum, zip(*histograms, strict=True))) if histograms else None
    return {"": (requests, events, histogram), **found}


def _minutes(plan: Plan) -> int:
    return int(plan.stratum.total_seconds() // 60)


def _ranges(
    stratum: timedelta, since: datetime, until: datetime, stage: int, stage_entered_at: datetime
) -> list[tuple[datetime, datetime, int]]:
    """The ranges [start, end) to read, after ``since`` and ending by ``until``: windows of
    ``stratum`` aligned to the clock, cut at the current ``stage``'s start (before it: the stage
    before). Only whole ranges: the window still running is read once it ended."""
    step = stratum.total_seconds()
    ranges: list[tuple[datetime, datetime, int]] = []
    start = since
    while len(ranges) < MAX_RANGES_PER_TICK:
        boundary = datetime.fromtimestamp((start.timestamp() // step + 1) * step, UTC)
        end, at = boundary, stage
        if start < stage_entered_at:
            at = max(0, stage - 1)
            end = min(boundary, stage_entered_at)
        if end > until:
            break
        ranges.append((start, end, at))
        start = end
    return ranges
