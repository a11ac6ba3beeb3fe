"""The ingest path: SDK event batches written as set operations, once each.

A group of batches (one, or several that the server's writer coalesced) is written in one
transaction with one statement per table: the batch ids (``INSERT … ON CONFLICT DO NOTHING
RETURNING``: a retried id is counted once, a duplicate inside the group too), the aggregates
(``INSERT … ON CONFLICT DO UPDATE``, counts added by the database, plus one statement writing
the merged latency histograms back, sparse: ``_merging.sparse_histogram``), the ledger
(``INSERT … ON CONFLICT DO UPDATE … WHERE``), and the gauge readings. Rows of the group are
merged by key in Python first (``_merging.py``), so a statement never names a key twice. The
aggregate statements are of fixed text on either database (``_ingest_pg.py`` takes arrays,
``_ingest_sqlite.py`` plain tuples), and on PostgreSQL the ledger's too.

Why it is right when batches are written concurrently (several threads, or several replicas on
PostgreSQL):

- Every statement takes its row locks in one global order: batch ids, then aggregate keys, then
  ledger keys, each sorted the same way in every process. Transactions that lock in one order
  cannot wait for each other in a cycle, so they cannot deadlock.
- A histogram is read through the upsert that locked its row (``ON CONFLICT DO UPDATE …
  RETURNING`` acts on the row's latest committed version, waiting for a concurrent writer to
  finish, and holds the lock until commit); no other transaction can change the row between
  that read and the write-back, so no addition is lost. Rows are inserted with an empty
  histogram, so "what was there" + "what this group adds" is right for new rows too.
- On SQLite the transaction's first statement takes the database's write lock, so nothing else
  writes until it commits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rollwise.store import _ingest_pg, _ingest_sqlite
from rollwise.store import _schema as t
from rollwise.store._errors import NotFoundError
from rollwise.store._merging import AggregateKey, Merged, Sum, add_histogram, describe
from rollwise.store._pool import reading
from rollwise.store._records import AggregateRow, ExposureRow, GaugeRow

__all__ = ["GAUGE_RETENTION", "EventBatch", "IngestStore"]

#: How long gauge readings are kept (guards read the latest few).
GAUGE_RETENTION = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class EventBatch:
    """One SDK batch as the store writes it: its id, who sent it, when it arrived, its rows."""

    id: str
    source: str
    received_at: datetime
    aggregates: tuple[AggregateRow, ...] = ()
    exposures: tuple[ExposureRow, ...] = ()
    gauges: tuple[GaugeRow, ...] = ()

    @property
    def rows(self) -> int:
        return len(self.aggregates) + len(self.exposures) + len(self.gauges)


def _insert(connection: sa.Connection, table: sa.Table) -> Any:
    """The dialect's INSERT, which has ``on_conflict_do_update`` (SQLite ≥ 3.24, PostgreSQL)."""
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    return insert(table)


class IngestStore:
    """Writing SDK batches (mixed into ``Store``)."""

    engine: sa.Engine

    def ingest(
        self,
        batch_id: str,
        source: str,
        aggregates: Iterable[AggregateRow],
        exposures: Iterable[ExposureRow],
        now: datetime,
        gauges: Iterable[GaugeRow] = (),
    ) -> bool:
        """Add a batch of aggregates and exposures, once. Returns False when the batch was
        applied before (a retry), and applies nothing then. All of a batch or none of it.

        Raises:
            NotFoundError: a row names a rollout that does not exist; nothing was applied.
        """
        batch = EventBatch(
            batch_id, source, now, tuple(aggregates), tuple(exposures), tuple(gauges)
        )
        return self.ingest_many([batch])[0]

    def ingest_many(self, batches: Sequence[EventBatch]) -> list[bool]:
        """Write ``batches`` in one transaction; per batch, whether it was applied (False: its
        id was applied before, or earlier in ``batches``). All of them or none.

        Raises:
            NotFoundError: a row names a rollout that does not exist; nothing was applied.
            RefusedError: a histogram cannot be added to the stored one; nothing was applied.
        """
        if not batches:
            return []
        self._refuse_unknown_rollouts(batches)
        # The merging is done before the transaction, so that the write lock (on SQLite, the
        # whole database's) is held for the statements only: assume every batch is new, and
        # merge again in the rare case that one is not.
        first: dict[str, EventBatch] = {}
        for batch in batches:
            first.setdefault(batch.id, batch)
        unique = list(first.values())
        merged = Merged.of(unique)
        with self.engine.begin() as connection:
            new = self._claim(connection, batches)
            applied: list[bool] = []
            for batch in batches:
                applied.append(batch.id in new)
                new.discard(batch.id)  # a second copy inside the group is a duplicate
            taken = [batch for batch, kept in zip(batches, applied, strict=True) if kept]
            if len(taken) != len(unique):
                merged = Merged.of(taken)
            self._add_aggregates(connection, merged.aggregates)
            self._add_exposures(connection, merged.sightings)
            self._add_gauges(connection, taken)
        return applied

    def _refuse_unknown_rollouts(self, batches: Sequence[EventBatch]) -> None:
        named = {row.rollout_id for batch in batches for row in batch.aggregates}
        named |= {unit.rollout_id for batch in batches for unit in batch.exposures}
        if not named:
            return
        with reading(self.engine) as connection:
            known = set(
                connection.execute(
                    sa.select(t.rollouts.c.id).where(t.rollouts.c.id.in_(named))
                ).scalars()
            )
        if named - known:
            missing = ", ".join(str(i) for i in sorted(named - known))
            raise NotFoundError(
                f"the batch names unknown rollout(s): {missing}",
                details={"rollouts": sorted(named - known)},
            )

    @staticmethod
    def _claim(connection: sa.Connection, batches: Sequence[EventBatch]) -> set[str]:
        """Record the batch ids not seen before (sorted: the first lock order) and return
        them."""
        first: dict[str, EventBatch] = {}
        for batch in batches:
            first.setdefault(batch.id, batch)
        statement = (
            _insert(connection, t.batches)
            .on_conflict_do_nothing(index_elements=["id"])
            .returning(t.batches.c.id)
        )
        rows = [
            {"id": batch_id, "received_at": batch.received_at, "source": batch.source}
            for batch_id, batch in sorted(first.items())
        ]
        return set(connection.execute(statement, rows).scalars())

    @staticmethod
    def _add_aggregates(connection: sa.Connection, merged: dict[AggregateKey, Sum]) -> None:
        """One upsert for every key (counts added in SQL, rows locked in key order, their
        histograms returned), then the merged histograms written back in key order."""
        if not merged:
            return
        keys = sorted(merged)
        counts = [(merged[key].requests, merged[key].events) for key in keys]
        # One statement each of fixed text per database (_ingest_pg.py, _ingest_sqlite.py).
        postgresql = connection.dialect.name == "postgresql"
        statements = _ingest_pg if postgresql else _ingest_sqlite
        stored = statements.upsert_counts(connection, keys, counts)
        written = [
            (key, add_histogram(stored[key], adding, describe(key), merged[key].touched))
            for key in keys
            if (adding := merged[key].histogram) is not None
        ]
        if written:
            statements.write_histograms(
                connection, [key for key, _ in written], [h for _, h in written]
            )

    @staticmethod
    def _add_exposures(connection: sa.Connection, sightings: list[dict[str, Any]]) -> None:
        """One upsert: a unit's first sighting is kept; a unit seen unexposed and now exposed
        gets its first exposure (stage and time); an exposed unit is left as it is."""
        if not sightings:
            return
        # One statement of fixed text per database (_ingest_pg.py, _ingest_sqlite.py).
        if connection.dialect.name == "postgresql":
            _ingest_pg.add_sightings(connection, sightings)
        else:
            _ingest_sqlite.add_sightings(connection, sightings)

    @staticmethod
    def _add_gauges(connection: sa.Connection, batches: Sequence[EventBatch]) -> None:
        """Insert the readings; drop the metrics' readings older than ``GAUGE_RETENTION``
        (gauge guards look at the latest readings only)."""
        readings = [
            {"metric": g.metric, "at": g.at, "value": g.value} for b in batches for g in b.gauges
        ]
        if not readings:
            return
        connection.execute(t.gauges.insert(), readings)
        cutoff = max(b.received_at for b in batches if b.gauges) - GAUGE_RETENTION
        old = (t.gauges.c.metric.in_(sorted({r["metric"] for r in readings}))) & (
            t.gauges.c.at < cutoff
        )
        if connection.dialect.name == "postgresql":
            # Readings another transaction is deleting are skipped, not waited for: that
            # transaction removes them, and a delete never waits on another (no lock cycle).
            doomed = sa.select(t.gauges.c.id).where(old).with_for_update(skip_locked=True)
            connection.execute(t.gauges.delete().where(t.gauges.c.id.in_(doomed.scalar_subquery())))
        else:
            connection.execute(t.gauges.delete().where(old))
