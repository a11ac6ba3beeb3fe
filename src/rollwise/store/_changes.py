"""What changed since the controller last looked: the aggregates and ledger rows written since a
watermark, so that a tick reads new data only (migration 0006 versions every row).

A ``ChangeCursor`` marks what has been read. ``changes`` returns every aggregate whose row was
written at or after the cursor, with its current counts (a row read twice is simply read again:
it replaces what was there), and every unit first seen since, once; and the cursor to read from
next. How the watermark is read, per database:

- SQLite has one writer at a time, so ``seq`` (one more than the table's largest, set by a
  trigger) follows commit order: every row committed after the watermark ``max(seq) + 1`` was
  read has a larger ``seq``.
- PostgreSQL commits concurrently, so ``seq`` is the writing transaction's id, and the watermark
  is the ``xmin`` of a snapshot taken before reading: every transaction with a smaller id had
  ended by then, so its rows were visible to the read that followed; a transaction still running
  has an id at least ``xmin``, and its rows are read on a later tick.

Rows at or above the watermark may be read again on the next tick (on PostgreSQL, as long as
any transaction of the server that was running at the read is still running). The cursor
remembers the rows it read at or above the watermark, with their ``seq``, and skips them: a
unit would otherwise be counted twice in the ledger, and an aggregate of a window already folded
would make its rollout be read whole at every tick. Skipping is exact: a row written again
gets a new ``seq`` (a later transaction's id; on SQLite, one more than the largest, its own
included).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa

from rollwise.core import Plan, cumulative_audience
from rollwise.core.judgement import Aggregate, Exposure, RolloutStatus
from rollwise.store import _schema as t
from rollwise.store._control import rollout_record
from rollwise.store._merging import histogram_counts
from rollwise.store._records import RolloutRecord

#: The columns of an aggregate, in ``Aggregate``'s order after the rollout id.
AGGREGATE_COLUMNS = (
    t.aggregates.c.rollout_id,
    t.aggregates.c.stage,
    t.aggregates.c.window,
    t.aggregates.c.exposed,
    t.aggregates.c.segment,
    t.aggregates.c.metric,
    t.aggregates.c.requests,
    t.aggregates.c.events,
    t.aggregates.c.histogram,
)
#: A unit's first sighting: (rollout, unit, stage, exposed then).
Sighting = tuple[int, str, int, bool]
#: Units first seen per (stage, exposed then): the sample-ratio check's counts.
UnitCounts = Counter[tuple[int, bool]]


@dataclass(frozen=True, slots=True)
class ChangeCursor:
    """Where the next read of changes starts: rows versioned at or above these watermarks, and
    the ledger rows at or above its watermark that were counted already."""

    aggregates: int
    ledger: int
    counted: frozenset[Sighting] = field(default=frozenset())
    #: Aggregates read at or above ``aggregates``: (rollout, stage, window, exposed, segment,
    #: metric, seq).
    read: frozenset[tuple[Any, ...]] = field(default=frozenset())


@dataclass(frozen=True, slots=True)
class Changes:
    #: Per rollout, its aggregates written since the cursor, with their current counts.
    aggregates: dict[int, list[Aggregate]]
    #: Per rollout, the units first seen since the cursor, counted per (stage, exposed then).
    units: dict[int, UnitCounts]
    cursor: ChangeCursor


def _watermark(connection: sa.Connection, table: sa.Table) -> int:
    if connection.dialect.name == "postgresql":
        return int(
            connection.execute(
                sa.text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")
            ).scalar_one()
        )
    return int(
        connection.execute(
            sa.select(sa.func.coalesce(sa.func.max(table.c.seq), 0) + 1)
        ).scalar_one()
    )


def change_cursor(engine: sa.Engine) -> ChangeCursor:
    """A cursor at now: read everything before it some other way (``rollout_aggregates``,
    ``unit_counts``), then what changed from it on with ``changes``."""
    with engine.connect() as connection:
        return ChangeCursor(_watermark(connection, t.aggregates), _watermark(connection, t.ledger))


def aggregate_of(row: Sequence[Any]) -> Aggregate:
    """A row of ``AGGREGATE_COLUMNS`` as the judgement reads it."""
    return Aggregate(
        row[1], row[2], bool(row[3]), row[4], row[5], row[6], row[7], histogram_counts(row[8])
    )  # fmt: skip


def changes(engine: sa.Engine, cursor: ChangeCursor, rollout_id: int | None = None) -> Changes:
    """Every aggregate and first sighting written since ``cursor`` (of one rollout when
    ``rollout_id`` is given: a cursor then follows that rollout only), and the next cursor.
    Replicate aggregates (window 0, segment ``~replicate=k``) are delivered like the others:
    the judge's dispersion is made of them."""
    aggregates_since = t.aggregates.c.seq >= cursor.aggregates
    sightings_since = t.ledger.c.seq >= cursor.ledger
    if rollout_id is not None:
        # ``+ 0``: an expression no index covers, so that the rows are found by ``seq`` (the
        # few written since) and not by the primary key's rollout prefix (all the rollout's
        # rows, ~50,000 after a day and a half of the example plan), which SQLite prefers.
        aggregates_since &= t.aggregates.c.rollout_id + 0 == rollout_id
        sightings_since &= t.ledger.c.rollout_id + 0 == rollout_id
    with engine.connect() as connection:
        # The watermarks first: whatever commits after them is read now or next time.
        next_aggregates = _watermark(connection, t.aggregates)
        next_ledger = _watermark(connection, t.ledger)
        rows = connection.execute(
            sa.select(*AGGREGATE_COLUMNS, t.aggregates.c.seq).where(aggregates_since)
        ).all()
        sightings = connection.execute(
            sa.select(
                t.ledger.c.rollout_id,
                t.ledger.c.unit,
                t.ledger.c.stage,
                t.ledger.c.first_exposed,
                t.ledger.c.seq,
            ).where(sightings_since)
        ).all()
    aggregates: dict[int, list[Aggregate]] = {}
    read: set[tuple[Any, ...]] = set()
    for row in rows:
        version = (*row[:6], row[9])
        if row[9] >= next_aggregates:
            read.add(version)  # may be read again next time
        if version in cursor.read:
            continue  # read last time, unchanged since
        aggregates.setdefault(row[0], []).append(aggregate_of(row))
    units: dict[int, UnitCounts] = {}
    again: set[Sighting] = set()
    for rollout_id, unit, stage, first_exposed, seq in sightings:
        sighting = (rollout_id, unit, stage, bool(first_exposed))
        if seq >= next_ledger:
            again.add(sighting)  # may be read again next time
        if sighting not in cursor.counted:
            units.setdefault(rollout_id, Counter())[(stage, bool(first_exposed))] += 1
    return Changes(
        aggregates,
        units,
        ChangeCursor(next_aggregates, next_ledger, frozenset(again), frozenset(read)),
    )


def rollout_aggregates(
    engine: sa.Engine, rollout_ids: Collection[int]
) -> Iterator[tuple[int, list[Aggregate]]]:
    """Every aggregate of these rollouts, one rollout at a time, in (stage, window) order."""
    ids = sorted(rollout_ids)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        with engine.connect() as connection:
            result = connection.execution_options(yield_per=20_000).execute(
                sa.select(*AGGREGATE_COLUMNS)
                .where(t.aggregates.c.rollout_id.in_(chunk))
                .order_by(t.aggregates.c.rollout_id, t.aggregates.c.stage, t.aggregates.c.window)
            )
            current: int | None = None
            batch: list[Aggregate] = []
            for row in result:
                if row[0] != current:
                    if current is not None:
                        yield current, batch
                    current, batch = row[0], []
                batch.append(aggregate_of(row))
            if current is not None:
                yield current, batch


def unit_counts(
    engine: sa.Engine, rollout_ids: Collection[int], cursor: ChangeCursor
) -> dict[int, UnitCounts]:
    """Units first seen per (stage, exposed then) of these rollouts, as counted up to
    ``cursor``: rows before its watermark, and those at or above it it counted already."""
    ids = sorted(rollout_ids)
    counts: dict[int, UnitCounts] = {rollout_id: Counter() for rollout_id in ids}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(
                    t.ledger.c.rollout_id,
                    t.ledger.c.stage,
                    t.ledger.c.first_exposed,
                    sa.func.count(),
                )
                .where(t.ledger.c.rollout_id.in_(chunk))
                .where((t.ledger.c.seq < cursor.ledger) | t.ledger.c.seq.is_(None))
                .group_by(t.ledger.c.rollout_id, t.ledger.c.stage, t.ledger.c.first_exposed)
            ).all()
        for rollout_id, stage, first_exposed, count in rows:
            counts[rollout_id][(stage, bool(first_exposed))] += int(count)
    for rollout_id, _, stage, first_exposed in cursor.counted:
        if rollout_id in counts:
            counts[rollout_id][(stage, first_exposed)] += 1
    return counts


class RunningRollouts:
    """The running rollouts, read again only where they changed: each tick reads every running
    rollout's (id, version) — every transition bumps the version — and the whole record of the
    new and changed ones only."""

    def __init__(self) -> None:
        self._records: dict[int, RolloutRecord] = {}

    def read(self, engine: sa.Engine) -> list[RolloutRecord]:
        with engine.connect() as connection:
            versions = dict(
                connection.execute(
                    sa.select(t.rollouts.c.id, t.rollouts.c.version).where(
                        t.rollouts.c.status == RolloutStatus.RUNNING.value
                    )
                ).all()
            )
            stale = [
                rollout_id
                for rollout_id, version in versions.items()
                if rollout_id not in self._records or self._records[rollout_id].version != version
            ]
            for start in range(0, len(stale), 500):
                rows = connection.execute(
                    sa.select(t.rollouts).where(t.rollouts.c.id.in_(stale[start : start + 500]))
                ).all()
                for row in rows:
                    self._records[row.id] = rollout_record(row)
        for gone in [rollout_id for rollout_id in self._records if rollout_id not in versions]:
            del self._records[gone]
        return [
            record
            for rollout_id, record in sorted(self._records.items())
            if record.status is RolloutStatus.RUNNING and rollout_id in versions
        ]


def ledger_exposure(ledger_rows: Sequence[Any], plan: Plan, stage: int) -> list[Exposure]:
    """Per stage, units first seen in it by side (the sample-ratio check's input)."""
    exposure = [Exposure() for _ in range(stage + 1)]
    for ledger_stage, exposed, count in ledger_rows:
        # Units first seen in a stage were exposed with the stage's assigned share — unless the
        # audience also names segments, whose members are exposed whatever their bucket: then
        # the check cannot tell, and is left out.
        if ledger_stage <= stage and not cumulative_audience(plan, ledger_stage).segments:
            current = exposure[ledger_stage]
            exposure[ledger_stage] = (
                replace(current, exposed_units=current.exposed_units + count)
                if exposed
                else replace(current, baseline_units=current.baseline_units + count)
            )
    return exposure
