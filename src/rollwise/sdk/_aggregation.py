"""Outcomes and exposures, aggregated in memory until the next batch is cut.

Attribution without a warehouse (DESIGN.md): when the application records an outcome, each
live rollout whose guards name the metric re-evaluates its flag for the context, and the outcome
is added to the counts of (rollout, stage, window, exposed, segment, metric), once for the whole
traffic (segment ``""``) and once per attribute the rollout splits by (``tenant=acme``).
A window lasts the rollout's ``window_minutes`` (its plan's stratum, a divisor of an hour, so
windows line up with the hours of the clock) and is labelled by its start in minutes since the
epoch. Latencies go into histograms with the judge's fixed bucket edges. Raw events never leave
here.

Memory is bounded whatever the load: at most ``max_keys`` keys between two cuts (an outcome
that would need a new key beyond that is dropped and counted) and at most ``max_exposures``
remembered exposures (``_exposures.py``: each is shipped once, and forgotten once the server has
it and room is needed).

Each recording thread adds to its own shard, under the shard's lock, which only a cut ever
contends. One lock shared by all recording threads measured 2.5 to 3.7 times fewer outcomes per
second with 2 to 4 threads (benchmarks/ingestion.py): under the GIL, a thread preempted while
holding it makes every other thread block on it, and they fall into lockstep (a lock convoy).

An outcome is counted once per rollout, into a row of its shard: (rollout, window, side, the
texts of the attributes the rollout splits by, metric). The row knows the keys it feeds (the
whole traffic's and one per segment), and a cut adds each row into them: the same sums as
counting each outcome into each key, which cost about three times as much per outcome.

A rate guard's outcome (a latency's, once ``_tails.py`` has its tail point) is also counted
into its unit's *replicate* (``replicate_of`` the unit), per (rollout, stage, side, metric,
replicate): aggregates with window ``REPLICATE_WINDOW`` and segment ``~replicate=k``, whose
spread is how the judge measures how far a unit's requests move together (docs/judgement.md,
"Clustered units"). They are cut every ``REPLICATE_INTERVAL`` seconds (or at
``cut(everything=True)``), and at once when their stage no longer records outcomes.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence

from rollwise.core import folded_user, unit_text
from rollwise.core.judgement import (
    LATENCY_BOUNDARIES_MS,
    LATENCY_BUCKETS,
    REPLICATE_WINDOW,
    replicate_of,
    replicate_segment,
)
from rollwise.sdk._cut import AggregateKey, Cut, Tally, add_tally, segment_value
from rollwise.sdk._exposures import UNATTRIBUTABLE, ExposureMemory
from rollwise.sdk._shards import ReplicateKey, Row, Shard
from rollwise.sdk._snapshot import LiveRollout
from rollwise.sdk._tails import TailPoints
from rollwise.sdk._throttle import Throttle

#: An outcome as the client hands it over: (metric, milliseconds or None, failed or None).
Outcome = tuple[str, float | None, bool | None]
#: Outcomes of one context as recorded: (rollouts, the context's values, outcomes, time).
Recorded = tuple[Sequence["LiveRollout"], Mapping[str, object], Sequence[Outcome], float]

_EDGES = LATENCY_BOUNDARIES_MS
_bucket = bisect_left


#: Gauge readings kept between two batches, at most.
MAX_GAUGE_READINGS = 1_000
#: Seconds between two cuts that take the replicates' counts.
REPLICATE_INTERVAL = 60.0


def _replicate(rollout: LiveRollout, values: Mapping[str, object]) -> int:
    """The replicate of the context's unit, read as ``Aggregates.expose`` reads it; -1 when the
    context has no usable unit."""
    value = values.get(rollout.unit)
    if value is None and rollout.unit == "user":
        value = folded_user(values)
    unit = unit_text(value)
    return -1 if unit is None else replicate_of(unit)


class Aggregates:
    """The in-memory aggregates of one live client. Thread-safe: each recording thread holds
    its own shard's lock, which only a cut also takes; a cut swaps every shard out."""

    def __init__(
        self,
        *,
        max_keys: int = 50_000,
        max_exposures: int = 100_000,
        clock: Callable[[], float],
        log: Throttle | None = None,
        replicate_interval: float = REPLICATE_INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # Registers shards and guards the gauges; never taken while recording an outcome.
        self._lock = threading.Lock()
        self.clock = clock
        #: Called at the start of every cut: outcomes handed over but not attributed yet are
        #: attributed first (``_deferred.py``).
        self.before_cut: Callable[[], None] | None = None
        self._monotonic = monotonic
        self._replicate_interval = replicate_interval
        self._replicates_due = -math.inf  # the first cut takes them
        self._max_keys = max_keys
        self._local = threading.local()
        self._shards: list[Shard] = []
        # Keys created since the last cut, across shards. ``next()`` on a count is one C call,
        # so threads can share it without a lock.
        self._new_keys = itertools.count()
        self._dropped_by_gone_threads = 0
        self._exposures = ExposureMemory(max_exposures=max_exposures, clock=clock, log=log)
        self._tails = TailPoints()
        # The exposures' own methods, bound once: ``expose`` runs at every evaluation.
        self.expose = self._exposures.expose
        self.acknowledged = self._exposures.acknowledged
        self.lost = self._exposures.lost
        self._gauges: list[tuple[str, float, float]] = []
        self.gauges_dropped = 0

    @property
    def outcomes_dropped(self) -> int:
        """Outcome additions dropped because ``max_keys`` keys were in use."""
        return self._dropped_by_gone_threads + sum(shard.dropped for shard in self._shards)

    def add(
        self,
        rollouts: Sequence[LiveRollout],
        values: Mapping[str, object],
        outcomes: Sequence[Outcome],
        now: float | None = None,
    ) -> None:
        """Attribute ``outcomes`` of one context, recorded at ``now`` (default: the clock's
        now), to each rollout guarding their metrics.

        Raises:
            Exception: a broken predicate or value; the caller catches and logs it.
        """
        self.add_all([(rollouts, values, outcomes, self.clock() if now is None else now)])

    def add_all(
        self,
        recorded: Iterable[Recorded],
        failed: Callable[[Sequence[Outcome]], None] | None = None,
    ) -> None:
        """``add`` each of ``recorded`` in turn, in one hold of this thread's shard. An outcome
        that cannot be attributed goes to ``failed`` (the others are added), or, without it,
        raises."""
        try:
            shard: Shard = self._local.shard
        except AttributeError:
            shard = self._register()
        # Only this thread and a cut take this lock, so working under it blocks no one.
        tail_points = self._tails.points
        with shard.lock:
            for rollouts, values, outcomes, now in recorded:
                try:
                    self._add(shard, tail_points, rollouts, values, outcomes, now)
                except Exception:
                    if failed is None:
                        raise
                    failed(outcomes)

    def _add(
        self,
        shard: Shard,
        tail_points: Mapping[tuple[int, int, str], int],
        rollouts: Sequence[LiveRollout],
        values: Mapping[str, object],
        outcomes: Sequence[Outcome],
        now: float,
    ) -> None:
        """``add`` of one context, under the shard's lock."""
        rows, replicates = shard.rows, shard.replicates
        for rollout in rollouts:
            # Which side of the rollout the context is on, and its segments' texts.
            resolution = rollout.flag.program.run(values)
            if resolution.reason in UNATTRIBUTABLE:
                continue
            exposed = resolution.variant == rollout.variant
            texts: tuple[str | None, ...] = ()
            if rollout.split_by:
                found = []
                for attribute in rollout.split_by:
                    value = values.get(attribute)
                    if value.__class__ is not str:
                        if value is None and attribute == "user":
                            value = folded_user(values)
                        value = segment_value(value)
                    found.append(value or None)
                texts = tuple(found)
            guarded, minutes = rollout.metrics, rollout.window_minutes
            window = int(now // (60 * minutes)) * minutes
            replicate: int | None = None  # looked up at the first rate outcome only
            for metric, milliseconds, failed in outcomes:
                if metric not in guarded:
                    continue
                row = rows.get((rollout, window, exposed, texts, metric))
                if row is None:
                    row = self._row(shard, rollout, window, exposed, texts, metric)
                if row.missing:
                    shard.dropped += row.missing
                row.requests += 1
                if failed:
                    row.events += 1
                bucket = -1
                if milliseconds is not None:
                    # latency_bucket(), inlined: this runs for every latency.
                    if row.histogram is None:
                        row.histogram = [0] * LATENCY_BUCKETS
                    bucket = _bucket(_EDGES, milliseconds)
                    row.histogram[bucket] += 1
                # The replicate counts: a rate's failures, or a latency's requests beyond
                # the tail point (none before the client has one: ``_tails.py``).
                if guarded[metric] == "rate":
                    if failed is None:
                        continue
                    beyond = failed
                else:
                    point = tail_points.get((rollout.id, rollout.stage, metric), -1)
                    if point < 0 or bucket < 0:
                        continue
                    beyond = bucket > point
                if replicate is None:
                    replicate = _replicate(rollout, values)
                if replicate < 0:
                    continue
                row = replicates.get((rollout, exposed, replicate, metric))
                if row is None:
                    row = self._replicate_row(shard, rollout, exposed, replicate, metric)
                if row.missing:
                    shard.dropped += row.missing
                row.requests += 1
                if beyond:
                    row.events += 1

    def _row(
        self,
        shard: Shard,
        rollout: LiveRollout,
        window: int,
        exposed: bool,
        texts: tuple[str | None, ...],
        metric: str,
    ) -> Row:
        """A new row of ``shard`` (whose lock is held), with the keys it adds to: a key new
        to the shard takes one of the ``max_keys`` between two cuts, or is missing."""
        segments = [""]
        for attribute, text in zip(rollout.split_by, texts, strict=True):
            if text:
                segments.append(f"{attribute}={text}")
        keys: list[AggregateKey] = []
        missing = 0
        for segment in segments:
            key = (rollout.id, rollout.stage, window, exposed, segment, metric)
            if key not in shard.keys:
                if next(self._new_keys) >= self._max_keys:
                    missing += 1
                    continue
                shard.keys.add(key)
            keys.append(key)
        row = shard.rows[(rollout, window, exposed, texts, metric)] = Row(keys, missing)
        return row

    def _replicate_row(
        self, shard: Shard, rollout: LiveRollout, exposed: bool, replicate: int, metric: str
    ) -> Row:
        """A new replicate row of ``shard`` (whose lock is held), feeding the replicate's key
        (window ``REPLICATE_WINDOW``) unless it is missing beyond ``max_keys``."""
        segment = replicate_segment(replicate)
        key = (rollout.id, rollout.stage, REPLICATE_WINDOW, exposed, segment, metric)
        keys = [key]
        if key not in shard.keys:
            if next(self._new_keys) >= self._max_keys:
                keys = []
            else:
                shard.keys.add(key)
        row = shard.replicates[(rollout, exposed, replicate, metric)] = Row(keys, 1 - len(keys))
        return row

    def _register(self) -> Shard:
        shard = Shard(threading.current_thread())
        with self._lock:
            self._shards.append(shard)
        self._local.shard = shard
        return shard

    def after_fork(self) -> None:
        """In a forked child: the rows recorded so far are the parent's to send, and their
        locks may be held by threads that did not come along. Start with none."""
        self._lock = threading.Lock()
        self._local = threading.local()
        self._shards = []
        self._gauges = []
        self._new_keys = itertools.count()
        self._exposures.after_fork()

    def gauge(self, metric: str, value: float) -> None:
        """Keep a reading of a system-wide gauge (queue depth, consumer lag) for the next batch;
        at most ``MAX_GAUGE_READINGS`` per batch period (the oldest are dropped and counted)."""
        with self._lock:
            self._gauges.append((metric, value, self.clock()))
            if len(self._gauges) > MAX_GAUGE_READINGS:
                del self._gauges[0]
                self.gauges_dropped += 1

    def cut(self, everything: bool = False) -> Cut:
        """Take what was aggregated so far, leaving empty aggregates behind: everything but the
        replicates' counts, which are taken only every ``replicate_interval`` seconds (or when
        ``everything``) and otherwise keep adding up — while their stage still records outcomes
        (those of a stage left behind go at once). Outcomes handed over and not attributed yet
        are attributed first (``before_cut``)."""
        if self.before_cut is not None:
            self.before_cut()
        with self._lock:
            shards = list(self._shards)
            gauges, self._gauges = self._gauges, []
            self._new_keys = itertools.count()
            now = self._monotonic()
            replicates_now = everything or now >= self._replicates_due
            if replicates_now:
                self._replicates_due = now + self._replicate_interval
        # Threads that had ended before their shard is emptied below cannot add to it again:
        # those shards can be let go once emptied (a pool that replaces threads does not grow
        # the list). A thread that ends later is let go at the next cut.
        gone = [shard for shard in shards if not shard.thread.is_alive()]
        taken: list[Iterable[Row]] = []
        active: set[tuple[int, int]] = set()  # (rollout, stage) with outcomes in this cut
        for shard in shards:
            with shard.lock:
                rows, shard.rows, shard.keys = shard.rows, {}, set()
            taken.append(rows.values())
            active.update((rollout.id, rollout.stage) for rollout, *_ in rows)
            self._tails.add(rows.items())
        for shard in shards:
            with shard.lock:
                if replicates_now or shard in gone:
                    replicates, shard.replicates = shard.replicates, {}
                else:
                    replicates = {}
                    kept: dict[ReplicateKey, Row] = {}
                    for where, row in shard.replicates.items():
                        if not row.keys:
                            continue  # missed ``max_keys``: a new chance in the next period
                        # Still recording: keep adding up. A stage no longer recorded goes
                        # now, before the server stops taking it.
                        live = (where[0].id, where[0].stage) in active
                        (kept if live else replicates)[where] = row
                    shard.replicates = kept
            taken.append(replicates.values())
        merged: dict[AggregateKey, Tally] = {}
        for row in itertools.chain.from_iterable(taken):
            for key in row.keys:
                into = merged.get(key)
                if into is None:
                    into = merged[key] = Tally()
                add_tally(into, row)
        self._tails.refresh(active)
        if gone:
            with self._lock:
                self._dropped_by_gone_threads += sum(shard.dropped for shard in gone)
                self._shards = [shard for shard in self._shards if shard not in gone]
        return Cut(merged, self._exposures.take(), gauges)

    @property
    def exposures_dropped(self) -> int:
        return self._exposures.dropped

    @property
    def remembered_exposures(self) -> int:
        return self._exposures.remembered
