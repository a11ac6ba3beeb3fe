"""Batches written concurrently (threads standing in for replicas' writers): on PostgreSQL no
deadlock and no lost addition, however the batches' keys overlap; the same on SQLite."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, timedelta
from typing import Any

import sqlalchemy as sa

from rollwise.store import AggregateRow, EventBatch, ExposureRow, Store
from rollwise.store import _schema as t
from rollwise.store._merging import histogram_counts
from tests.store._checkout import FLAGS, NOW, PLAN

WRITERS = 8
GROUPS = 25
BUCKETS = 16


def _batch(rng: random.Random, rollout: int, name: str) -> EventBatch:
    """Rows over few keys, in a random order, so that concurrent batches lock the same rows."""
    rows = []
    for segment in rng.sample(["", "tenant=a", "tenant=b", "tenant=c", "tenant=d"], 3):
        for exposed in rng.sample([True, False], 2):
            histogram = tuple(rng.randint(0, 3) for _ in range(BUCKETS))
            rows.append(
                AggregateRow(rollout, 0, 100, exposed, segment, "checkout.latency", 5, 0, histogram)
            )
            rows.append(AggregateRow(rollout, 0, 100, exposed, segment, "checkout.error", 7, 1))
    rng.shuffle(rows)
    units = tuple(
        ExposureRow(
            rollout, f"u{rng.randint(0, 30)}", 0, rng.random() < 0.5, NOW + timedelta(seconds=i)
        )
        for i in range(6)
    )
    return EventBatch(name, "sdk", NOW, tuple(rows), units)


def test_concurrent_groups_add_up_exactly_and_never_deadlock(store: Store) -> None:
    """8 threads write 25 groups of 1–4 batches each at once, every batch touching the same
    keys in its own order, some batch ids sent by two threads at the same time: every write
    succeeds (no deadlock; on SQLite a group refused for the write lock's timeout on a loaded
    machine is sent again), each id is applied once, counts and histograms are the exact sums
    of the batches applied, and each unit has one ledger row consistent with its sightings."""
    store.apply_flags(FLAGS, "flags.yaml", "alice", NOW)
    plan = store.save_plan(PLAN, "plan.yaml", "alice", NOW).record
    rollout = store.start_rollout(plan.id, "alice", NOW).id
    rng = random.Random(11)
    shared = [_batch(rng, rollout, f"shared-{i}") for i in range(10)]
    work: list[list[list[EventBatch]]] = []
    for writer in range(WRITERS):
        groups = []
        for group in range(GROUPS):
            batches = [
                _batch(rng, rollout, f"w{writer}-g{group}-{i}") for i in range(rng.randint(1, 4))
            ]
            if rng.random() < 0.2:
                batches.append(rng.choice(shared))
            groups.append(batches)
        work.append(groups)
    start = threading.Barrier(WRITERS)
    applied: list[tuple[EventBatch, bool]] = []
    failures: list[BaseException] = []
    lock = threading.Lock()

    sqlite = store.engine.dialect.name == "sqlite"
    timed_out: list[str] = []

    def write(groups: list[list[EventBatch]]) -> None:
        start.wait()
        for group in groups:
            for attempt in range(1, 11):
                try:
                    results = store.ingest_many(group)
                except sa.exc.OperationalError as exc:
                    # SQLite's write lock was not free within its busy timeout (the threads
                    # starve one another on a loaded machine): not a deadlock, and nothing was
                    # written, so the group is sent again, as the server's writer would.
                    if sqlite and "database is locked" in str(exc) and attempt < 10:
                        with lock:
                            timed_out.append(group[0].id)
                        continue
                    with lock:
                        failures.append(exc)
                    return
                except BaseException as exc:  # a deadlock would surface here
                    with lock:
                        failures.append(exc)
                    return
                break
            with lock:
                applied.extend(zip(group, results, strict=True))

    threads = [threading.Thread(target=write, args=(groups,)) for groups in work]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    # A group sent again is applied once (below): a transaction refused on the lock wrote
    # nothing.
    print(f"groups sent again after SQLite's busy timeout: {len(timed_out)}")
    taken = [batch for batch, was_applied in applied if was_applied]
    ids = Counter(batch.id for batch in taken)
    sent = {batch.id for groups in work for group in groups for batch in group}
    assert set(ids) == sent and set(ids.values()) == {1}

    expected: dict[tuple[Any, ...], list[Any]] = {}
    for batch in taken:
        for row in batch.aggregates:
            key = (row.stage, row.window, row.exposed, row.segment, row.metric)
            total = expected.setdefault(key, [0, 0, None])
            total[0] += row.requests
            total[1] += row.events
            if row.histogram is not None:
                total[2] = [
                    a + b for a, b in zip(total[2] or [0] * BUCKETS, row.histogram, strict=True)
                ]
    with store.engine.connect() as connection:
        stored = {
            (r.stage, r.window, bool(r.exposed), r.segment, r.metric): [
                r.requests,
                r.events,
                None if r.histogram is None else list(histogram_counts(r.histogram) or ()),
            ]
            for r in connection.execute(sa.select(t.aggregates))
        }
        ledger = {r.unit: r for r in connection.execute(sa.select(t.ledger))}
    assert stored == expected

    sightings: dict[str, list[ExposureRow]] = {}
    for batch in taken:
        for unit in batch.exposures:
            sightings.setdefault(unit.unit, []).append(unit)
    assert set(ledger) == set(sightings)
    for unit, seen in sightings.items():
        row = ledger[unit]
        first_seen = row.first_seen.replace(tzinfo=UTC)
        assert (first_seen, bool(row.first_exposed)) in {(s.at, s.exposed) for s in seen}
        assert bool(row.exposed) == any(s.exposed for s in seen)
        if row.exposed:
            exposed_at = row.exposed_at.replace(tzinfo=UTC)
            assert exposed_at in {s.at for s in seen if s.exposed}
