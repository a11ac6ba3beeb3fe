"""The store: flags, plans, rollouts, decisions, the audit log, aggregates, the ledger, tokens.

SQLite by default (one file, WAL), PostgreSQL by URL; migrations are applied on open. Every
change writes its audit entry in the same transaction. Control-plane writes (``_control.py``)
are checked against the live state in the transaction that writes them, and rollout
transitions are guarded by the state machine and the version the caller read, so two
controllers (or a restarted one) can never apply the same transition twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from rollwise.core import GuardKind, InputError, Plan
from rollwise.core.judgement import (
    AggregateTable,
    Decision,
    GaugeReading,
    Observations,
)
from rollwise.store import _schema as t
from rollwise.store._batch_check import BatchChecks
from rollwise.store._changes import AGGREGATE_COLUMNS, aggregate_of, ledger_exposure
from rollwise.store._evidence import decision_evidence, insert_decision
from rollwise.store._followed import FollowedObservations
from rollwise.store._ingest import GAUGE_RETENTION, IngestStore
from rollwise.store._migrate import migrate
from rollwise.store._outbox import OutboxStore
from rollwise.store._pool import ping_when_idle
from rollwise.store._records import (
    AuditEntry,
    DecisionRecord,
    ExposedUnits,
    RolloutRecord,
)
from rollwise.store._rollouts import RolloutStore
from rollwise.store._tokens import TokenStore

__all__ = ["GAUGE_RETENTION", "Store", "build_observations", "decision_evidence"]


def _utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; everything in rollwise is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


#: A ledger entry as the store lists it: the unit, the stage and the time of its first exposure.
LedgerEntry = tuple[str, int, datetime]
_LEDGER_ENTRY = (t.ledger.c.unit, t.ledger.c.exposed_stage, t.ledger.c.exposed_at)


def _exposed(rollout_id: int, from_stage: int = 0) -> Any:
    """The ledger rows of the rollout's exposed units, first exposed at ``from_stage`` or later."""
    ledger = t.ledger.c
    rows = (ledger.rollout_id == rollout_id) & (ledger.exposed == sa.true())
    return rows & (ledger.exposed_stage >= from_stage) if from_stage else rows


def _entries(rows: Iterable[Any]) -> list[LedgerEntry]:
    return [(row.unit, row.exposed_stage, _utc(row.exposed_at)) for row in rows]


def _epoch_minutes(column: Any, dialect: str) -> Any:
    """Whole minutes since the epoch of a stored time, in SQL. SQLite keeps times as UTC text
    (``2026-11-26 09:14:59.999999``) and its ``strftime`` rounds the fraction (to 09:15): the
    seconds are read from the first 19 characters."""
    if dialect == "postgresql":
        return sa.cast(sa.func.floor(sa.extract("epoch", column) / 60), sa.BigInteger)
    return sa.cast(sa.func.strftime("%s", sa.func.substr(column, 1, 19)), sa.BigInteger) // 60


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Store(RolloutStore, TokenStore, OutboxStore, IngestStore, BatchChecks):
    """All persistent state of a rollwise server: the control plane (``ControlStore``,
    ``RolloutStore``), tokens (``TokenStore``), and here the SDKs' aggregates, the ledger and the
    decision log."""

    def __init__(self, engine: sa.Engine) -> None:
        RolloutStore.__init__(self)
        self.engine = engine
        self.followed = FollowedObservations(engine)

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect and migrate. ``sqlite:///path.db`` or ``postgresql://…``.

        Raises:
            InputError: the URL is not one the store can use.
        """
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        if url.startswith("sqlite:///") and ":memory:" not in url:
            # A file cannot go away (no ping per checkout: a statement per SDK batch), and a
            # connection costs little to keep: keep enough for every thread the server reads
            # from (auth, batch checks, the writer, the controller) instead of opening and
            # closing overflow connections, pragmas and all, under load.
            options: dict[str, Any] = {"pool_size": 16, "max_overflow": 48}
        else:
            options = {}
        try:
            engine = sa.create_engine(url, **options)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise InputError(f"cannot use database URL {url!r}: {exc}", path="--db") from None
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        elif engine.dialect.name == "postgresql":
            ping_when_idle(engine)  # a pooled connection can die with its server
        else:
            raise InputError("the store runs on SQLite or PostgreSQL", path="--db")
        migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    def audit_log(self, limit: int = 100, target: str | None = None) -> list[AuditEntry]:
        """The newest entries first."""
        query = sa.select(t.audit).order_by(t.audit.c.id.desc()).limit(limit)
        if target is not None:
            query = query.where(t.audit.c.target == target)
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [
            AuditEntry(row.id, _utc(row.at), row.actor, row.action, row.target, dict(row.details))
            for row in rows
        ]

    def record_decisions(self, decisions: Sequence[tuple[int, Decision]]) -> None:
        """Keep several holds in one transaction (one commit per tick, not per rollout)."""
        if not decisions:
            return
        with self.engine.begin() as connection:
            for rollout_id, decision in decisions:
                insert_decision(connection, rollout_id, decision)

    def decisions(
        self, rollout_id: int, limit: int = 200, after: int | None = None
    ) -> list[DecisionRecord]:
        """The newest first; with ``after``, only those kept after the decision of that id
        (the log is append-only, so a reader can follow it)."""
        query = sa.select(t.decisions).where(t.decisions.c.rollout_id == rollout_id)
        if after is not None:
            query = query.where(t.decisions.c.id > after)
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(t.decisions.c.id.desc()).limit(limit)).all()
        return [
            DecisionRecord(
                r.id, r.rollout_id, _utc(r.at), r.stage, r.move, tuple(r.reasons), dict(r.evidence)
            )
            for r in rows
        ]

    def ledger(self, rollout_id: int) -> list[LedgerEntry]:
        """Exposed units with the stage and time of their first exposure, in that order."""
        query = sa.select(*_LEDGER_ENTRY).where(_exposed(rollout_id))
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(t.ledger.c.exposed_at, t.ledger.c.unit))
            return _entries(rows)

    def ledger_page(
        self, rollout_id: int, *, after: str | None, limit: int, from_stage: int = 0
    ) -> tuple[list[LedgerEntry], bool, int]:
        """A page of ``ledger``, in the order of the units (the table's key: a page reads a
        range of its index, however many units the rollout exposed): up to ``limit`` exposed
        units after ``after``, first exposed at ``from_stage`` or later; whether more follow;
        and how many there are in all."""
        exposed = _exposed(rollout_id, from_stage)
        query = sa.select(*_LEDGER_ENTRY).where(exposed)
        if after is not None:
            query = query.where(t.ledger.c.unit > after)
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(t.ledger.c.unit).limit(limit + 1)).all()
            total = connection.execute(sa.select(sa.func.count()).where(exposed)).scalar_one()
        return _entries(rows[:limit]), len(rows) > limit, int(total)

    def exposed_units(self, rollout_id: int, window_minutes: int) -> ExposedUnits:
        """The rollout's exposed units counted per stage and per window of ``window_minutes``
        (windows start at multiples of it since the epoch, as the SDKs' do), by the database:
        two grouped queries, whatever the number of units."""
        exposed = _exposed(rollout_id)
        with self.engine.connect() as connection:
            minute = _epoch_minutes(t.ledger.c.exposed_at, connection.dialect.name)
            window = (minute // window_minutes * window_minutes).label("window")
            per_window = connection.execute(
                sa.select(window, sa.func.count()).where(exposed).group_by(window).order_by(window)
            ).all()
            per_stage = connection.execute(
                sa.select(t.ledger.c.exposed_stage, sa.func.count())
                .where(exposed)
                .group_by(t.ledger.c.exposed_stage)
            ).all()
        return ExposedUnits(
            {int(stage): int(count) for stage, count in per_stage},
            [(int(start), int(count)) for start, count in per_window],
        )

    def data_fingerprints(self, rollout_ids: Sequence[int]) -> dict[int, tuple[int, ...]]:
        """Per rollout, numbers that change whenever its aggregates or ledger change (one
        grouped query each), so a controller can reuse what it read before. Replicate
        aggregates count: the judge reads them too."""
        if not rollout_ids:
            return {}
        ids = list(rollout_ids)
        with self.engine.connect() as connection:
            aggregate_rows = connection.execute(
                sa.select(
                    t.aggregates.c.rollout_id,
                    sa.func.count(),
                    sa.func.sum(t.aggregates.c.requests),
                    sa.func.sum(t.aggregates.c.events),
                )
                .where(t.aggregates.c.rollout_id.in_(ids))
                .group_by(t.aggregates.c.rollout_id)
            ).all()
            ledger_rows = connection.execute(
                sa.select(t.ledger.c.rollout_id, sa.func.count())
                .where(t.ledger.c.rollout_id.in_(ids))
                .group_by(t.ledger.c.rollout_id)
            ).all()
        fingerprints: dict[int, tuple[int, ...]] = dict.fromkeys(ids, (0, 0, 0, 0))
        for rollout_id, count, requests, events in aggregate_rows:
            fingerprints[rollout_id] = (int(count), int(requests or 0), int(events or 0), 0)
        for rollout_id, units in ledger_rows:
            fingerprints[rollout_id] = (*fingerprints[rollout_id][:3], int(units))
        return fingerprints

    def gauge_versions(self) -> dict[str, int]:
        """Per gauge metric, the id of its newest reading (changes with every reading)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(t.gauges.c.metric, sa.func.max(t.gauges.c.id)).group_by(t.gauges.c.metric)
            ).all()
        return {metric: int(latest) for metric, latest in rows}

    def gauge_readings(
        self, metrics: Iterable[str], limit: int = 64
    ) -> dict[str, tuple[GaugeReading, ...]]:
        """The newest ``limit`` readings of each metric, oldest first."""
        readings: dict[str, tuple[GaugeReading, ...]] = {}
        with self.engine.connect() as connection:
            for metric in metrics:
                rows = connection.execute(
                    sa.select(t.gauges.c.at, t.gauges.c.value)
                    .where(t.gauges.c.metric == metric)
                    .order_by(t.gauges.c.at.desc(), t.gauges.c.id.desc())
                    .limit(limit)
                ).all()
                readings[metric] = tuple(
                    GaugeReading(_utc(at), value) for at, value in reversed(rows)
                )
        return readings

    def observations(self, rollout: RolloutRecord, plan: Plan) -> Observations:
        """The rollout's aggregates and ledger as the judgement reads them (replicate
        aggregates included: they are the judge's, for its dispersion)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(*AGGREGATE_COLUMNS)
                .where(t.aggregates.c.rollout_id == rollout.id)
                .order_by(t.aggregates.c.stage, t.aggregates.c.window)
            ).all()
            ledger_rows = connection.execute(
                sa.select(t.ledger.c.stage, t.ledger.c.first_exposed, sa.func.count())
                .where(t.ledger.c.rollout_id == rollout.id)
                .group_by(t.ledger.c.stage, t.ledger.c.first_exposed)
            ).all()
        return self._with_gauges(build_observations(rows, ledger_rows, plan, rollout.stage), plan)

    def followed_observations(self, rollout: RolloutRecord, plan: Plan) -> Observations:
        """What ``observations`` reads, for the API's reads of running rollouts: the rollouts
        asked for lately are kept and only their rows written since the last call are read
        (``_followed.py``)."""
        return self._with_gauges(self.followed.observations(rollout, plan), plan)

    def _with_gauges(self, observations: Observations, plan: Plan) -> Observations:
        metrics = [g.metric for g in plan.guards if g.kind is GuardKind.GAUGE]
        if metrics:
            observations = replace(observations, gauges=self.gauge_readings(metrics))
        return observations


def build_observations(
    rows: Sequence[Any], ledger_rows: Sequence[Any], plan: Plan, stage: int
) -> Observations:
    """Aggregate rows (the columns of t.aggregates) and ledger counts → the judgement's strata,
    through the same ``AggregateTable`` the simulator uses."""
    table = AggregateTable()
    for row in rows:
        table.put(aggregate_of(row))
    return table.observations(plan, stage, ledger_exposure(ledger_rows, plan, stage))
