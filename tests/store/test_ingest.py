"""The ingest path on SQLite and PostgreSQL: a group of batches written as set operations adds up
exactly like the batches one at a time, counts each batch id once, and costs a fixed number of
statements whatever the number of rows."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from rollwise.core.judgement import LATENCY_BUCKETS
from rollwise.store import (
    AggregateRow,
    EventBatch,
    ExposureRow,
    GaugeRow,
    NotFoundError,
    RefusedError,
    RolloutRecord,
    Store,
)
from rollwise.store import _schema as t
from rollwise.store._merging import histogram_counts
from tests.store._checkout import FLAGS, NOW, PLAN

BUCKETS = 8


def _started(store: Store) -> RolloutRecord:
    store.apply_flags(FLAGS, "flags.yaml", "alice", NOW)
    plan = store.save_plan(PLAN, "plan.yaml", "alice", NOW).record
    return store.start_rollout(plan.id, "alice", NOW)


def _aggregates(store: Store) -> dict[tuple[Any, ...], tuple[int, int, list[int] | None]]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(t.aggregates)).all()
    return {
        (r.rollout_id, r.stage, r.window, bool(r.exposed), r.segment, r.metric): (
            r.requests,
            r.events,
            _counts(r.histogram),
        )
        for r in rows
    }


def _counts(stored: object) -> list[int] | None:
    """The histogram column as its bucket counts (the column keeps them sparse)."""
    counts = histogram_counts(stored)
    return None if counts is None else list(counts)


def _ledger(store: Store) -> dict[tuple[int, str], tuple[Any, ...]]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(t.ledger)).all()

    def utc(moment: datetime | None) -> datetime | None:
        return None if moment is None else moment.replace(tzinfo=moment.tzinfo or UTC)

    return {
        (r.rollout_id, r.unit): (
            r.stage,
            bool(r.exposed),
            utc(r.first_seen),
            bool(r.first_exposed),
            r.exposed_stage,
            utc(r.exposed_at),
        )
        for r in rows
    }


def _random_batch(rng: random.Random, rollout: int, name: str) -> EventBatch:
    """Rows over a small key space (so batches collide), some repeated inside the batch."""
    rows = []
    for _ in range(rng.randint(0, 12)):
        key = (rollout, rng.randint(0, 1), 100 + rng.randint(0, 2), rng.random() < 0.5)
        segment = rng.choice(["", "tenant=acme", "tenant=globex"])
        if rng.random() < 0.5:
            histogram = tuple(rng.randint(0, 5) for _ in range(BUCKETS))
            rows.append(
                AggregateRow(*key, segment, "checkout.latency", sum(histogram), 0, histogram)
            )
        else:
            requests = rng.randint(0, 50)
            rows.append(
                AggregateRow(*key, segment, "checkout.error", requests, rng.randint(0, requests))
            )
    units = [
        ExposureRow(
            rollout,
            f"u{rng.randint(0, 15)}",
            rng.randint(0, 1),
            rng.random() < 0.4,
            NOW + timedelta(seconds=rng.randint(0, 3600)),
        )
        for _ in range(rng.randint(0, 8))
    ]
    return EventBatch(name, "sdk", NOW, tuple(rows), tuple(units))


class Model:
    """The ingest semantics, one row at a time, as the store had them before set operations."""

    def __init__(self) -> None:
        self.batches: set[str] = set()
        self.aggregates: dict[tuple[Any, ...], tuple[int, int, list[int] | None]] = {}
        self.ledger: dict[tuple[int, str], tuple[Any, ...]] = {}

    def ingest(self, batch: EventBatch) -> bool:
        if batch.id in self.batches:
            return False
        self.batches.add(batch.id)
        for row in batch.aggregates:
            key = (row.rollout_id, row.stage, row.window, row.exposed, row.segment, row.metric)
            requests, events, histogram = self.aggregates.get(key, (0, 0, None))
            if row.histogram is not None:
                histogram = (
                    [a + b for a, b in zip(histogram, row.histogram, strict=True)]
                    if histogram
                    else list(row.histogram)
                )
            self.aggregates[key] = (requests + row.requests, events + row.events, histogram)
        for unit in batch.exposures:
            key2 = (unit.rollout_id, unit.unit)
            seen = self.ledger.get(key2)
            if seen is None:
                exposed = (unit.stage, unit.at) if unit.exposed else (None, None)
                self.ledger[key2] = (unit.stage, unit.exposed, unit.at, unit.exposed, *exposed)
            elif unit.exposed and not seen[1]:
                self.ledger[key2] = (seen[0], True, seen[2], seen[3], unit.stage, unit.at)
        return True


def test_groups_add_up_exactly_like_their_batches_one_at_a_time(store: Store) -> None:
    """60 random batches (repeated keys, retried and duplicated ids, units seen unexposed then
    exposed) written in groups of 1 to 10: counts, histograms, ledger and the applied flags are
    those of applying each batch in turn."""
    rollout = _started(store)
    rng = random.Random(20261126)
    model = Model()
    written: list[EventBatch] = []
    for group_number in range(12):
        group = []
        for _ in range(rng.randint(1, 10)):
            if written and rng.random() < 0.15:
                group.append(rng.choice(written))  # a retry of an earlier batch
            elif group and rng.random() < 0.1:
                group.append(group[-1])  # the same id twice in one group
            else:
                group.append(_random_batch(rng, rollout.id, f"batch-{group_number}-{len(group)}"))
        expected = [model.ingest(batch) for batch in group]
        assert store.ingest_many(group) == expected
        written += group
    assert _aggregates(store) == model.aggregates
    assert _ledger(store) == model.ledger
    with store.engine.connect() as connection:
        stored = set(connection.execute(sa.select(t.batches.c.id)).scalars())
    assert stored == model.batches


def test_a_unit_seen_twice_in_a_group_keeps_its_first_sighting_and_first_exposure(
    store: Store,
) -> None:
    """Unexposed then exposed in one group: first seen unexposed, exposed at the exposed
    sighting; exposed first: the later sightings change nothing."""
    rollout = _started(store)
    later, last = NOW + timedelta(minutes=1), NOW + timedelta(minutes=2)
    units = (
        ExposureRow(rollout.id, "joins", 0, False, NOW),
        ExposureRow(rollout.id, "first", 0, True, NOW),
        ExposureRow(rollout.id, "joins", 1, True, later),
        ExposureRow(rollout.id, "first", 1, False, later),
        ExposureRow(rollout.id, "joins", 1, True, last),
    )
    assert store.ingest_many([EventBatch("ledger-1", "sdk", NOW, (), units)]) == [True]
    ledger = _ledger(store)
    assert ledger[(rollout.id, "joins")] == (0, True, NOW, False, 1, later)
    assert ledger[(rollout.id, "first")] == (0, True, NOW, True, 0, NOW)


def test_a_bad_batch_stores_nothing_of_its_group(store: Store) -> None:
    """An unknown rollout or a histogram that does not fit refuses the whole group: no id
    used up, no count, no ledger entry, no gauge reading."""
    rollout = _started(store)
    good = EventBatch(
        "good-batch",
        "sdk",
        NOW,
        (AggregateRow(rollout.id, 0, 100, True, "", "checkout.latency", 3, 0, (1, 2, 0)),),
        (ExposureRow(rollout.id, "acme", 0, True, NOW),),
        (GaugeRow("payments.queue_depth", 3.0, NOW),),
    )
    unknown = EventBatch(
        "unknown-rollout", "sdk", NOW, (AggregateRow(rollout.id + 1, 0, 100, True, "", "m", 1),)
    )
    with pytest.raises(NotFoundError, match=rf"unknown rollout\(s\): {rollout.id + 1}"):
        store.ingest_many([good, unknown])
    misfit = EventBatch(
        "misfit",
        "sdk",
        NOW,
        (AggregateRow(rollout.id, 0, 100, True, "", "checkout.latency", 1, 0, (1,)),),
    )
    with pytest.raises(RefusedError, match="a histogram of 1 buckets cannot be added to one of 3"):
        store.ingest_many([good, misfit])
    assert _aggregates(store) == {} and _ledger(store) == {} and store.gauge_versions() == {}
    assert store.ingest_many([good]) == [True]
    with pytest.raises(RefusedError, match="cannot be added"):
        store.ingest_many([misfit])
    assert _aggregates(store)[(rollout.id, 0, 100, True, "", "checkout.latency")] == (
        3,
        0,
        [1, 2, 0],
    )


def test_sparse_and_dense_histograms_add_up_alike(store: Store) -> None:
    """Latency rows sent dense (432 counts) or sparse (non-zero buckets), mixed on the same keys
    and written in random groups: every stored histogram is the bucket-wise sum of all."""
    rollout = _started(store)
    rng = random.Random(20261201)
    expected: dict[tuple[Any, ...], list[int]] = {}
    batches = []
    for number in range(40):
        rows = []
        for _ in range(rng.randint(1, 6)):
            key = (rollout.id, 0, 100 + rng.randint(0, 1), rng.random() < 0.5, "")
            counts = [0] * LATENCY_BUCKETS
            for _ in range(rng.randint(0, 30)):
                counts[rng.choice([0, LATENCY_BUCKETS - 1, rng.randrange(LATENCY_BUCKETS)])] += 1
            total = expected.setdefault((*key, "checkout.latency"), [0] * LATENCY_BUCKETS)
            total[:] = [a + b for a, b in zip(total, counts, strict=True)]
            if rng.random() < 0.5:
                rows.append(
                    AggregateRow(*key, "checkout.latency", sum(counts), 0, histogram=tuple(counts))
                )
            else:
                flat = tuple(x for i, n in enumerate(counts) if n for x in (i, n))
                rows.append(AggregateRow(*key, "checkout.latency", sum(counts), 0, buckets=flat))
        batches.append(EventBatch(f"mixed-{number}", "sdk", NOW, tuple(rows)))
    while batches:
        size = rng.randint(1, 8)
        assert store.ingest_many(batches[:size]) == [True] * len(batches[:size])
        del batches[:size]
    stored = _aggregates(store)
    assert {key: histogram for key, (_, _, histogram) in stored.items()} == expected
    assert all(requests == sum(expected[key]) for key, (requests, _, _) in stored.items())


def test_a_histogram_stored_dense_before_is_added_to_and_read_alike(store: Store) -> None:
    """Rows written before histograms were stored sparse hold the dense list of 432 counts: a
    new group adds to it bucket by bucket, the judgement's read (``observations``) gives the
    sum, and the row is written back sparse (non-zero buckets only)."""
    rollout = _started(store)
    dense = [0] * LATENCY_BUCKETS
    dense[3], dense[40], dense[LATENCY_BUCKETS - 1] = 5, 2, 1
    with store.engine.begin() as connection:
        connection.execute(
            t.aggregates.insert().values(
                rollout_id=rollout.id, stage=0, window=100, exposed=True, segment="",
                metric="checkout.latency", requests=8, events=0, histogram=dense,
            )
        )  # fmt: skip
    row = AggregateRow(rollout.id, 0, 100, True, "", "checkout.latency", 4, 0, buckets=(3, 1, 7, 3))
    assert store.ingest_many([EventBatch("after", "sdk", NOW, (row,))]) == [True]
    summed = list(dense)
    summed[3] += 1
    summed[7] += 3
    assert _aggregates(store)[(rollout.id, 0, 100, True, "", "checkout.latency")] == (
        12,
        0,
        summed,
    )
    with store.engine.connect() as connection:
        raw = connection.execute(sa.select(t.aggregates.c.histogram)).scalar_one()
    assert raw == {"length": LATENCY_BUCKETS, "buckets": [3, 6, 7, 3, 40, 2, 431, 1]}
    plan = store.parsed_plan(rollout.plan_id)
    observations = store.observations(store.rollout(rollout.id), plan)
    samples = observations.latencies[("checkout.latency", None)]
    assert [(list(sample.exposed), sample.window) for sample in samples] == [(summed, 100)]


@pytest.mark.parametrize("index", [-1, LATENCY_BUCKETS])
def test_a_sparse_bucket_outside_the_histogram_stores_nothing(store: Store, index: int) -> None:
    """A caller of the store that skipped the HTTP checks: an index outside 0 … 431 (a negative
    one would add to a bucket counted from the end) refuses the group; nothing is stored."""
    rollout = _started(store)
    good = AggregateRow(rollout.id, 0, 100, True, "", "checkout.latency", 1, 0, buckets=(3, 1))
    bad = AggregateRow(rollout.id, 0, 100, True, "", "checkout.latency", 1, 0, buckets=(index, 1))
    with pytest.raises(RefusedError, match=f"bucket {index} is not one of the {LATENCY_BUCKETS}"):
        store.ingest_many(
            [EventBatch("good", "sdk", NOW, (good,)), EventBatch("bad", "sdk", NOW, (bad,))]
        )
    assert _aggregates(store) == {}
    dense = AggregateRow(rollout.id, 0, 100, True, "", "checkout.latency", 1, 0, (1, 0, 0))
    with pytest.raises(RefusedError, match=f"a histogram of {LATENCY_BUCKETS} buckets cannot"):
        store.ingest_many(
            [EventBatch("dense", "sdk", NOW, (dense,)), EventBatch("good", "sdk", NOW, (good,))]
        )
    assert _aggregates(store) == {}


@pytest.fixture
def statements(store: Store) -> Iterator[list[str]]:
    """The SQL statements the store sends (an executemany counts once)."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        found = re.match(
            r"\s*(INSERT INTO|UPDATE|DELETE FROM|SELECT\\s.*?\\sFROM)\s+(\w+)", statement, re.S
        )
        sent.append(f"{found.group(1).split()[0]} {found.group(2)}" if found else statement[:30])

    sa.event.listen(store.engine, "before_cursor_execute", record)
    yield sent
    sa.event.remove(store.engine, "before_cursor_execute", record)


def test_a_batch_costs_the_same_statements_whatever_its_size(
    store: Store, statements: list[str]
) -> None:
    """Ten rows or 10,000 exposures and 2,000 aggregates: one statement per table (and one
    histogram write-back), or a few pages of thousands of rows, never one per row."""
    rollout = _started(store)

    def batch(name: str, size: int) -> EventBatch:
        rows = tuple(
            AggregateRow(
                rollout.id,
                0,
                100 + i % 50,
                i % 2 == 0,
                f"tenant=t{i // 100}",
                "checkout.latency",
                1,
                0,
                (1, 0, 0),
            )
            for i in range(size // 5)
        ) + tuple(
            AggregateRow(
                rollout.id,
                0,
                100 + i % 50,
                i % 2 == 0,
                f"tenant=t{i // 100}",
                "checkout.error",
                10,
                1,
            )
            for i in range(size // 5)
        )
        units = tuple(
            ExposureRow(rollout.id, f"{name}-{i}", 0, i % 3 == 0, NOW) for i in range(size)
        )
        return EventBatch(name, "sdk", NOW, rows, units)

    statements.clear()
    store.ingest_many([batch("small", 10)])
    small = list(statements)
    statements.clear()
    store.ingest_many([batch("large", 10_000)])
    # The upserts may be sent in pages (SQLAlchemy's insertmanyvalues on PostgreSQL; on SQLite
    # 1,000 aggregates or 4,000 units a statement): 2,000 keys and 10,000 units are at most a
    # handful of pages.
    assert len(statements) <= len(small) + 4, (small, statements)
    assert set(statements) == set(small), (small, statements)
    assert statements.count("INSERT ledger") <= 3 and statements.count("UPDATE aggregates") == 1


def test_a_duplicate_inside_a_group_leaves_the_group_in_order(store: Store) -> None:
    """[A, B, A] in one transaction: A applied once, and first: a unit A saw unexposed and B
    exposed is first seen unexposed, exposed at B's sighting."""
    rollout = _started(store)
    later = NOW + timedelta(minutes=1)
    a = EventBatch("batch-a", "sdk", NOW, (), (ExposureRow(rollout.id, "acme", 0, False, NOW),))
    b = EventBatch("batch-b", "sdk", later, (), (ExposureRow(rollout.id, "acme", 0, True, later),))
    assert store.ingest_many([a, b, a]) == [True, True, False]
    assert _ledger(store)[(rollout.id, "acme")] == (0, True, NOW, False, 0, later)


def test_the_ledger_rows_on_sqlite_are_stored_as_sqlalchemy_stores_them(tmp_path: Any) -> None:
    """The SQLite ledger upsert is the driver's own SQL: the same rows, to the character, as
    SQLAlchemy's statement writes (times as its column type writes them), first sightings and
    later exposures alike."""
    from rollwise.store import _ingest_sqlite

    def rows(connection: sa.Connection) -> list[tuple[Any, ...]]:
        return list(
            connection.exec_driver_sql(
                "SELECT rollout_id, unit, stage, exposed, first_seen, first_exposed,"
                " exposed_stage, exposed_at, typeof(first_seen) FROM ledger ORDER BY unit"
            )
        )

    def sightings(rng: random.Random) -> list[dict[str, Any]]:
        found = []
        for unit in sorted(rng.sample(range(40), 25)):
            exposed = rng.random() < 0.5
            at = NOW + timedelta(seconds=rng.randint(0, 10**6), microseconds=rng.choice([0, 7]))
            found.append(
                {
                    "rollout_id": 1,
                    "unit": f"u{unit:02d}",
                    "stage": rng.randint(0, 3),
                    "exposed": exposed,
                    "first_seen": at,
                    "first_exposed": exposed and rng.random() < 0.5,
                    "exposed_stage": rng.randint(0, 3) if exposed else None,
                    "exposed_at": at + timedelta(minutes=1) if exposed else None,
                }
            )
        return found

    stored = []
    for way in ("sqlalchemy", "driver"):
        engine = sa.create_engine(f"sqlite:///{tmp_path / way}.db")
        t.ledger.create(engine)
        rng = random.Random(5)
        with engine.begin() as connection:
            for _ in range(3):  # first sightings, then exposures of units seen unexposed
                batch = sightings(rng)
                if way == "driver":
                    _ingest_sqlite.add_sightings(connection, batch)
                    continue
                statement = sa.dialects.sqlite.insert(t.ledger)
                statement = statement.on_conflict_do_update(
                    index_elements=["rollout_id", "unit"],
                    set_={
                        "exposed": sa.true(),
                        "exposed_stage": statement.excluded.exposed_stage,
                        "exposed_at": statement.excluded.exposed_at,
                    },
                    where=(t.ledger.c.exposed == sa.false())
                    & (statement.excluded.exposed == sa.true()),
                )
                connection.execute(statement, batch)
            stored.append(rows(connection))
        engine.dispose()
    assert stored[0] == stored[1] and len(stored[0]) > 25
    assert any(row[7] is not None for row in stored[0]) and stored[0][0][-1] == "text"
