"""What the controller reads at a tick: the rows written since its last read, each write read,
each unit counted once — also while other transactions are still writing (PostgreSQL)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from rollwise.core.judgement import Aggregate
from rollwise.store import AggregateRow, ExposureRow, Store
from rollwise.store import _schema as t
from rollwise.store._changes import change_cursor, changes, rollout_aggregates, unit_counts

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
FLAGS = "flags:\n  f:\n    variants: [off, on]\n"
PLAN = """
flag: f
unit: user
guards: [{metric: errors, kind: rate, tolerance: 10%}]
stages: [{name: a, audience: {percent: 5}}, {name: b, audience: {percent: 100}}]
"""


def _rollout(store: Store) -> int:
    store.apply_flags(FLAGS, "flags.yaml", "alice", NOW)
    return store.start_rollout(None, "alice", NOW, text=PLAN).id


def test_changes_follow_every_write_and_count_each_unit_once(store: Store) -> None:
    """After a cursor, the aggregates written since come back with their current counts, and a
    unit first seen since is counted once, however often the changes are read."""
    rollout = _rollout(store)
    cursor = change_cursor(store.engine)
    rows = [
        AggregateRow(rollout, 0, 600, True, "", "errors", 100, 2),
        AggregateRow(rollout, 0, 600, False, "", "errors", 1900, 20),
    ]
    units = [ExposureRow(rollout, "u1", 0, True, NOW), ExposureRow(rollout, "u2", 0, False, NOW)]
    assert store.ingest("b1", "sdk", rows, units, NOW)
    found = changes(store.engine, cursor)
    assert sorted(found.aggregates[rollout]) == [
        Aggregate(0, 600, False, "", "errors", 1900, 20),
        Aggregate(0, 600, True, "", "errors", 100, 2),
    ]
    assert found.units == {rollout: Counter({(0, True): 1, (0, False): 1})}
    again = changes(store.engine, found.cursor)
    assert again.units == {}
    # A row read again is read with its current counts (it replaces what was kept).
    assert set(again.aggregates.get(rollout, [])) <= set(found.aggregates[rollout])
    more = [AggregateRow(rollout, 0, 600, True, "", "errors", 50, 1)]
    assert store.ingest("b2", "sdk", more, [ExposureRow(rollout, "u1", 0, True, NOW)], NOW)
    latest = changes(store.engine, again.cursor)
    assert Aggregate(0, 600, True, "", "errors", 150, 3) in latest.aggregates[rollout]
    assert latest.units == {}  # u1 was seen before
    # What a controller starting now reads whole, and counts, agrees.
    (whole,) = rollout_aggregates(store.engine, [rollout])
    assert whole[0] == rollout and len(whole[1]) == 2
    assert unit_counts(store.engine, [rollout], latest.cursor)[rollout] == Counter(
        {(0, True): 1, (0, False): 1}
    )


def test_a_write_still_running_during_a_read_is_read_next_time(store: Store) -> None:
    """On PostgreSQL, rows versioned by a transaction that commits after a later one are not
    lost: the watermark is the oldest running transaction, not the newest row seen."""
    if store.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: versions follow commit order")
    rollout = _rollout(store)
    cursor = change_cursor(store.engine)
    with store.engine.connect() as slow:
        slow.execute(
            t.aggregates.insert().values(
                rollout_id=rollout, stage=0, window=600, exposed=True, segment="",
                metric="errors", requests=7, events=1, histogram=None,
            )
        )  # fmt: skip
        slow.execute(
            t.ledger.insert().values(
                rollout_id=rollout, unit="slow", stage=0, exposed=True, first_seen=NOW,
                first_exposed=True, exposed_stage=0, exposed_at=NOW,
            )
        )  # fmt: skip
        first = changes(store.engine, cursor)
        assert first.aggregates == {} and first.units == {}
        rows = [AggregateRow(rollout, 0, 615, True, "", "errors", 3, 0)]
        assert store.ingest("fast", "sdk", rows, [ExposureRow(rollout, "fast", 0, True, NOW)], NOW)
        second = changes(store.engine, first.cursor)
        assert [a.window for a in second.aggregates[rollout]] == [615]
        slow.commit()
    third = changes(store.engine, second.cursor)
    # 615 was read while the slow transaction held the watermark back: not read again (a
    # folded window read again would make its rollout be read whole at every tick).
    assert [a.window for a in third.aggregates[rollout]] == [600]
    assert third.units == {rollout: Counter({(0, True): 1})}  # "slow"; "fast" is not again
    # Written again: read again, with its counts now.
    assert store.ingest("again", "sdk", rows, [], NOW)
    fourth = changes(store.engine, third.cursor)
    assert [(a.window, a.requests) for a in fourth.aggregates[rollout]] == [(615, 6)]
    assert changes(store.engine, fourth.cursor).aggregates == {}
    with store.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(t.ledger)).scalar() == 2
