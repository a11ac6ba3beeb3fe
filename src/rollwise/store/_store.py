"""The store: flags, plans, rollouts, decisions, the audit log, aggregates, the ledger, tokens.

SQLite by default (one file, WAL), PostgreSQL by URL; migrations are applied on open. Every
change writes its audit entry in the same transaction, and rollout transitions are guarded by
the version the caller read, so two controllers (or a restarted one) can never apply the same
transition twice.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from rollwise.core import (
    FlagSet,
    GuardKind,
    InputError,
    Plan,
    cumulative_audience,
    load_flags,
    load_plan,
)
from rollwise.core.judgement import (
    Aggregate,
    AggregateTable,
    Decision,
    Exposure,
    GaugeReading,
    Observations,
    RolloutStatus,
)
from rollwise.store import _schema as t
from rollwise.store._errors import ConflictError, NotFoundError, StaleVersionError
from rollwise.store._migrate import migrate
from rollwise.store._records import (
    AggregateRow,
    AuditEntry,
    DecisionRecord,
    ExposureRow,
    GaugeRow,
    PlanRecord,
    Role,
    RolloutRecord,
    TokenRecord,
)

_SNAPSHOT = "snapshot_version"
#: How long gauge readings are kept (guards read the latest few).
GAUGE_RETENTION = timedelta(days=1)
_LIVE = (RolloutStatus.RUNNING.value, RolloutStatus.PAUSED.value)


def _utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; everything in rollwise is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Store:
    """All persistent state of a rollwise server."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._parsed_flags: tuple[int, FlagSet] | None = None

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect and migrate. ``sqlite:///path.db`` or ``postgresql://…``.

        Raises:
            InputError: the URL is not one the store can use.
        """
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        try:
            engine = sa.create_engine(url, pool_pre_ping=True)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise InputError(f"cannot use database URL {url!r}: {exc}", path="--db") from None
        if engine.dialect.name == "sqlite":
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        elif engine.dialect.name != "postgresql":
            raise InputError("the store runs on SQLite or PostgreSQL", path="--db")
        migrate(engine)
        return cls(engine)

    def close(self) -> None:
        self.engine.dispose()

    # --- audit and snapshot version ------------------------------------------------------

    @staticmethod
    def _audit(
        connection: sa.Connection,
        now: datetime,
        actor: str,
        action: str,
        target: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        connection.execute(
            t.audit.insert().values(
                at=now, actor=actor, action=action, target=target, details=details or {}
            )
        )

    @staticmethod
    def _bump_snapshot(connection: sa.Connection) -> int:
        updated = connection.execute(
            t.meta.update().where(t.meta.c.key == _SNAPSHOT).values(value=t.meta.c.value + 1)
        )
        if updated.rowcount == 0:
            connection.execute(t.meta.insert().values(key=_SNAPSHOT, value=1))
            return 1
        return int(
            connection.execute(
                sa.select(t.meta.c.value).where(t.meta.c.key == _SNAPSHOT)
            ).scalar_one()
        )

    def snapshot_version(self) -> int:
        with self.engine.connect() as connection:
            value = connection.execute(
                sa.select(t.meta.c.value).where(t.meta.c.key == _SNAPSHOT)
            ).scalar_one_or_none()
        return int(value or 0)

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

    # --- flags ---------------------------------------------------------------------------

    def apply_flags(self, text: str, source: str, actor: str, now: datetime) -> int:
        """Validate and store a flags file; returns the new snapshot version.

        Raises:
            InputError: the file is invalid; nothing is stored.
        """
        flags = load_flags(text, source)
        with self.engine.begin() as connection:
            latest = connection.execute(sa.select(sa.func.max(t.flag_files.c.version))).scalar()
            version = int(latest or 0) + 1
            connection.execute(
                t.flag_files.insert().values(
                    version=version, text=text, applied_at=now, applied_by=actor
                )
            )
            self._audit(
                connection,
                now,
                actor,
                "flags.apply",
                source,
                {
                    "version": version,
                    "flags": sorted(flags.flags),
                    "segments": sorted(flags.segments),
                },
            )
            return self._bump_snapshot(connection)

    def flags_text(self) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(t.flag_files.c.text).order_by(t.flag_files.c.version.desc()).limit(1)
            ).scalar_one_or_none()

    def _applied_flags(self) -> FlagSet:
        """The latest applied flags file, parsed once per version (files never change)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(t.flag_files.c.version, t.flag_files.c.text)
                .order_by(t.flag_files.c.version.desc())
                .limit(1)
            ).one_or_none()
        if row is None:
            return FlagSet()
        cached = self._parsed_flags
        if cached is None or cached[0] != row.version:
            cached = self._parsed_flags = (row.version, load_flags(row.text, "stored flags"))
        return cached[1]

    def flags(self) -> FlagSet:
        """The applied flags, with their kill switches."""
        flags = self._applied_flags()
        killed = self.kill_switches()
        return replace(
            flags,
            flags={
                key: replace(flag, killed=killed.get(key, flag.killed))
                for key, flag in flags.flags.items()
            },
            version=self.snapshot_version(),
        )

    def kill_switches(self) -> dict[str, bool]:
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(t.kill_switches.c.flag, t.kill_switches.c.killed))
            return {row.flag: bool(row.killed) for row in rows}

    def set_killed(self, flag: str, killed: bool, actor: str, now: datetime) -> int:
        """Turn a flag's kill switch on or off; returns the new snapshot version.

        Raises:
            NotFoundError: no applied flag has that key.
        """
        if flag not in self.flags().flags:
            raise NotFoundError(f"unknown flag {flag!r}")
        with self.engine.begin() as connection:
            updated = connection.execute(
                t.kill_switches.update()
                .where(t.kill_switches.c.flag == flag)
                .values(killed=killed, changed_at=now, changed_by=actor)
            )
            if updated.rowcount == 0:
                connection.execute(
                    t.kill_switches.insert().values(
                        flag=flag, killed=killed, changed_at=now, changed_by=actor
                    )
                )
            self._audit(connection, now, actor, "flag.kill" if killed else "flag.unkill", flag)
            return self._bump_snapshot(connection)

    # --- plans ---------------------------------------------------------------------------

    def save_plan(self, text: str, source: str, actor: str, now: datetime) -> PlanRecord:
        """Validate and store a plan as the next version for its flag.

        Raises:
            InputError: the plan is invalid; nothing is stored.
        """
        plan = load_plan(text, source)
        with self.engine.begin() as connection:
            latest = connection.execute(
                sa.select(sa.func.max(t.plans.c.version)).where(t.plans.c.flag == plan.flag)
            ).scalar()
            version = int(latest or 0) + 1
            plan_id = connection.execute(
                t.plans.insert()
                .values(
                    flag=plan.flag, version=version, text=text, created_at=now, created_by=actor
                )
                .returning(t.plans.c.id)
            ).scalar_one()
            self._audit(
                connection,
                now,
                actor,
                "plan.save",
                plan.flag,
                {"plan_id": plan_id, "version": version},
            )
        return PlanRecord(plan_id, plan.flag, version, text, now, actor)

    def plan(self, plan_id: int) -> PlanRecord:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(t.plans).where(t.plans.c.id == plan_id)
            ).one_or_none()
        if row is None:
            raise NotFoundError(f"no plan {plan_id}")
        return PlanRecord(
            row.id, row.flag, row.version, row.text, _utc(row.created_at), row.created_by
        )

    def parsed_plan(self, plan_id: int) -> Plan:
        record = self.plan(plan_id)
        return load_plan(record.text, f"plan {record.flag} v{record.version}")

    # --- rollouts ------------------------------------------------------------------------

    @staticmethod
    def _rollout(row: Any) -> RolloutRecord:
        return RolloutRecord(
            row.id,
            row.flag,
            row.plan_id,
            RolloutStatus(row.status),
            row.stage,
            _utc(row.stage_entered_at),
            _utc(row.started_at),
            _utc(row.ended_at) if row.ended_at else None,
            row.version,
            tuple(row.approvals or ()),
        )

    def start_rollout(self, plan_id: int, actor: str, now: datetime) -> RolloutRecord:
        """Start a rollout of a stored plan at its first stage.

        Raises:
            NotFoundError: no such plan, or its flag is not applied.
            ConflictError: the flag already has a live (running or paused) rollout.
        """
        plan = self.plan(plan_id)
        if plan.flag not in self.flags().flags:
            raise NotFoundError(f"the plan's flag {plan.flag!r} is not in the applied flags")
        try:
            with self.engine.begin() as connection:
                rollout_id = connection.execute(
                    t.rollouts.insert()
                    .values(
                        flag=plan.flag,
                        plan_id=plan_id,
                        status=RolloutStatus.RUNNING.value,
                        stage=0,
                        stage_entered_at=now,
                        started_at=now,
                        version=1,
                        approvals=[],
                    )
                    .returning(t.rollouts.c.id)
                ).scalar_one()
                self._audit(
                    connection,
                    now,
                    actor,
                    "rollout.start",
                    plan.flag,
                    {"rollout_id": rollout_id, "plan_id": plan_id, "plan_version": plan.version},
                )
                self._bump_snapshot(connection)
        except IntegrityError:
            raise ConflictError(f"flag {plan.flag!r} already has a live rollout") from None
        return self.rollout(rollout_id)

    def rollout(self, rollout_id: int) -> RolloutRecord:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(t.rollouts).where(t.rollouts.c.id == rollout_id)
            ).one_or_none()
        if row is None:
            raise NotFoundError(f"no rollout {rollout_id}")
        return self._rollout(row)

    def rollouts(self, *, live: bool = False) -> list[RolloutRecord]:
        query = sa.select(t.rollouts).order_by(t.rollouts.c.id)
        if live:
            query = query.where(t.rollouts.c.status.in_(_LIVE))
        with self.engine.connect() as connection:
            return [self._rollout(row) for row in connection.execute(query)]

    def transition(
        self,
        rollout: RolloutRecord,
        *,
        actor: str,
        action: str,
        now: datetime,
        status: RolloutStatus | None = None,
        stage: int | None = None,
        approvals: Sequence[str] | None = None,
        decision: Decision | None = None,
        details: dict[str, Any] | None = None,
    ) -> RolloutRecord:
        """Apply a change to the rollout ``rollout`` was read as, exactly once.

        The decision (if any), the audit entry and the new snapshot version are written in the
        same transaction as the change.

        Raises:
            StaleVersionError: the rollout changed since it was read; nothing was written.
        """
        values: dict[str, Any] = {"version": rollout.version + 1}
        exposure_changes = False
        if status is not None and status is not rollout.status:
            values["status"] = status.value
            exposure_changes = True
            if status in (RolloutStatus.ROLLED_BACK, RolloutStatus.COMPLETED):
                values["ended_at"] = now
        if stage is not None and stage != rollout.stage:
            values["stage"] = stage
            values["stage_entered_at"] = now
            exposure_changes = True
        if approvals is not None:
            values["approvals"] = list(approvals)
        with self.engine.begin() as connection:
            updated = connection.execute(
                t.rollouts.update()
                .where(t.rollouts.c.id == rollout.id, t.rollouts.c.version == rollout.version)
                .values(**values)
            )
            if updated.rowcount != 1:
                raise StaleVersionError(
                    f"rollout {rollout.id} changed since version {rollout.version} was read"
                )
            if decision is not None:
                self._insert_decision(connection, rollout.id, decision)
            self._audit(
                connection,
                now,
                actor,
                action,
                rollout.flag,
                {"rollout_id": rollout.id, "from_version": rollout.version, **(details or {})},
            )
            if exposure_changes:
                self._bump_snapshot(connection)
        return self.rollout(rollout.id)

    @staticmethod
    def _insert_decision(connection: sa.Connection, rollout_id: int, decision: Decision) -> None:
        connection.execute(
            t.decisions.insert().values(
                rollout_id=rollout_id,
                at=decision.at,
                stage=decision.stage,
                move=decision.move.value,
                reasons=list(decision.reasons),
                evidence=decision_evidence(decision),
            )
        )

    def record_decisions(self, decisions: Sequence[tuple[int, Decision]]) -> None:
        """Keep several holds in one transaction (one commit per tick, not per rollout)."""
        if not decisions:
            return
        with self.engine.begin() as connection:
            for rollout_id, decision in decisions:
                self._insert_decision(connection, rollout_id, decision)

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

    # --- events --------------------------------------------------------------------------

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
        applied before (a retry), and applies nothing then. All of a batch or none of it."""
        rows = list(aggregates)
        units = list(exposures)
        readings = [{"metric": g.metric, "at": g.at, "value": g.value} for g in gauges]
        named = {row.rollout_id for row in rows} | {unit.rollout_id for unit in units}
        if named:
            with self.engine.connect() as connection:
                known = set(
                    connection.execute(
                        sa.select(t.rollouts.c.id).where(t.rollouts.c.id.in_(named))
                    ).scalars()
                )
            if named - known:
                missing = ", ".join(str(i) for i in sorted(named - known))
                raise NotFoundError(f"the batch names unknown rollout(s): {missing}")
        for _attempt in range(3):
            try:
                with self.engine.begin() as connection:
                    connection.execute(
                        t.batches.insert().values(id=batch_id, received_at=now, source=source)
                    )
                    self._add_counts(connection, [row for row in rows if row.histogram is None])
                    for row in rows:
                        if row.histogram is not None:
                            self._add_aggregate(connection, row)
                    for unit in units:
                        self._add_exposure(connection, unit)
                    if readings:
                        connection.execute(t.gauges.insert(), readings)
                        # Gauge guards look at the latest readings only: keep a day of them.
                        cutoff = now - GAUGE_RETENTION
                        for metric in {reading["metric"] for reading in readings}:
                            connection.execute(
                                t.gauges.delete().where(
                                    (t.gauges.c.metric == metric) & (t.gauges.c.at < cutoff)
                                )
                            )
                return True
            except IntegrityError:
                if self._batch_seen(batch_id):
                    return False
                # Two batches created the same new aggregate at once: the loser retries.
                continue
        raise ConflictError(f"batch {batch_id!r} kept colliding with concurrent batches")

    def _batch_seen(self, batch_id: str) -> bool:
        with self.engine.connect() as connection:
            return (
                connection.execute(
                    sa.select(t.batches.c.id).where(t.batches.c.id == batch_id)
                ).first()
                is not None
            )

    @staticmethod
    def _add_counts(connection: sa.Connection, rows: Sequence[AggregateRow]) -> None:
        """Add count-only aggregates with one upsert statement (SQLite and PostgreSQL both
        have INSERT … ON CONFLICT DO UPDATE)."""
        if not rows:
            return
        if connection.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        merged: dict[tuple[int, int, int, bool, str, str], list[int]] = {}
        for row in rows:
            key = (row.rollout_id, row.stage, row.window, row.exposed, row.segment, row.metric)
            counts = merged.setdefault(key, [0, 0])
            counts[0] += row.requests
            counts[1] += row.events
        statement = insert(t.aggregates)
        statement = statement.on_conflict_do_update(
            index_elements=["rollout_id", "stage", "window", "exposed", "segment", "metric"],
            set_={
                "requests": t.aggregates.c.requests + statement.excluded.requests,
                "events": t.aggregates.c.events + statement.excluded.events,
            },
        )
        connection.execute(
            statement,
            [
                {
                    "rollout_id": key[0],
                    "stage": key[1],
                    "window": key[2],
                    "exposed": key[3],
                    "segment": key[4],
                    "metric": key[5],
                    "requests": counts[0],
                    "events": counts[1],
                    "histogram": None,
                }
                for key, counts in merged.items()
            ],
        )

    @staticmethod
    def _add_aggregate(connection: sa.Connection, row: AggregateRow) -> None:
        key = (
            (t.aggregates.c.rollout_id == row.rollout_id)
            & (t.aggregates.c.stage == row.stage)
            & (t.aggregates.c.window == row.window)
            & (t.aggregates.c.exposed == row.exposed)
            & (t.aggregates.c.segment == row.segment)
            & (t.aggregates.c.metric == row.metric)
        )
        existing = connection.execute(
            sa.select(t.aggregates.c.histogram).where(key).with_for_update()
        ).one_or_none()
        if existing is None:
            connection.execute(
                t.aggregates.insert().values(
                    rollout_id=row.rollout_id,
                    stage=row.stage,
                    window=row.window,
                    exposed=row.exposed,
                    segment=row.segment,
                    metric=row.metric,
                    requests=row.requests,
                    events=row.events,
                    histogram=list(row.histogram) if row.histogram is not None else None,
                )
            )
            return
        histogram = existing.histogram
        if row.histogram is not None:
            histogram = (
                [a + b for a, b in zip(histogram, row.histogram, strict=True)]
                if histogram
                else list(row.histogram)
            )
        connection.execute(
            t.aggregates.update()
            .where(key)
            .values(
                requests=t.aggregates.c.requests + row.requests,
                events=t.aggregates.c.events + row.events,
                histogram=histogram,
            )
        )

    @staticmethod
    def _add_exposure(connection: sa.Connection, unit: ExposureRow) -> None:
        key = (t.ledger.c.rollout_id == unit.rollout_id) & (t.ledger.c.unit == unit.unit)
        seen = connection.execute(sa.select(t.ledger.c.exposed).where(key)).first()
        if seen is None:
            connection.execute(
                t.ledger.insert().values(
                    rollout_id=unit.rollout_id,
                    unit=unit.unit,
                    stage=unit.stage,
                    exposed=unit.exposed,
                    first_seen=unit.at,
                    first_exposed=unit.exposed,
                    exposed_stage=unit.stage if unit.exposed else None,
                    exposed_at=unit.at if unit.exposed else None,
                )
            )
        elif unit.exposed and not seen.exposed:
            # The unit joined the exposed side later: its first exposure is now.
            connection.execute(
                t.ledger.update()
                .where(key & (t.ledger.c.exposed == sa.false()))
                .values(exposed=True, exposed_stage=unit.stage, exposed_at=unit.at)
            )

    def ledger(self, rollout_id: int) -> list[tuple[str, int, datetime]]:
        """Exposed units with the stage and time of their first exposure."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(t.ledger.c.unit, t.ledger.c.exposed_stage, t.ledger.c.exposed_at)
                .where((t.ledger.c.rollout_id == rollout_id) & (t.ledger.c.exposed == sa.true()))
                .order_by(t.ledger.c.exposed_at, t.ledger.c.unit)
            ).all()
        return [(row.unit, row.exposed_stage, _utc(row.exposed_at)) for row in rows]

    def data_fingerprints(self, rollout_ids: Sequence[int]) -> dict[int, tuple[int, ...]]:
        """Per rollout, numbers that change whenever its aggregates or ledger change (one
        grouped query each), so a controller can reuse what it read before."""
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
        """The rollout's aggregates and ledger as the judgement reads them."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(t.aggregates)
                .where(t.aggregates.c.rollout_id == rollout.id)
                .order_by(t.aggregates.c.stage, t.aggregates.c.window)
            ).all()
            ledger_rows = connection.execute(
                sa.select(t.ledger.c.stage, t.ledger.c.first_exposed, sa.func.count())
                .where(t.ledger.c.rollout_id == rollout.id)
                .group_by(t.ledger.c.stage, t.ledger.c.first_exposed)
            ).all()
        observations = build_observations(rows, ledger_rows, plan, rollout.stage)
        metrics = [g.metric for g in plan.guards if g.kind is GuardKind.GAUGE]
        if metrics:
            observations = replace(observations, gauges=self.gauge_readings(metrics))
        return observations

    # --- tokens --------------------------------------------------------------------------

    def create_token(
        self, name: str, role: Role, actor: str, now: datetime
    ) -> tuple[TokenRecord, str]:
        """A new token; the secret is returned once and only its hash is stored."""
        secret = f"rw_{role.value}_{secrets.token_urlsafe(32)}"
        return self._insert_token(secret, name, role, actor, now), secret

    def ensure_token(
        self, secret: str, name: str, role: Role, actor: str, now: datetime
    ) -> TokenRecord:
        """A token with a secret chosen outside (``ROLLWISE_ADMIN_TOKEN``), created once."""
        existing = self.authenticate(secret)
        return (
            existing if existing is not None else self._insert_token(secret, name, role, actor, now)
        )

    def _insert_token(
        self, secret: str, name: str, role: Role, actor: str, now: datetime
    ) -> TokenRecord:
        token_id = secrets.token_hex(8)
        with self.engine.begin() as connection:
            connection.execute(
                t.tokens.insert().values(
                    id=token_id,
                    name=name,
                    role=role.value,
                    secret_hash=_secret_hash(secret),
                    created_at=now,
                )
            )
            self._audit(
                connection, now, actor, "token.create", token_id, {"name": name, "role": role.value}
            )
        return TokenRecord(token_id, name, role, now)

    def authenticate(self, secret: str) -> TokenRecord | None:
        """The live token with this secret, or None."""
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(t.tokens).where(t.tokens.c.secret_hash == _secret_hash(secret))
            ).one_or_none()
        if row is None or row.revoked_at is not None:
            return None
        return TokenRecord(row.id, row.name, Role(row.role), _utc(row.created_at))

    def revoke_token(self, token_id: str, actor: str, now: datetime) -> None:
        with self.engine.begin() as connection:
            updated = connection.execute(
                t.tokens.update().where(t.tokens.c.id == token_id).values(revoked_at=now)
            )
            if updated.rowcount == 0:
                raise NotFoundError(f"no token {token_id!r}")
            self._audit(connection, now, actor, "token.revoke", token_id)

    def has_tokens(self) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(t.tokens.c.id).limit(1)).first() is not None


def decision_evidence(decision: Decision) -> dict[str, Any]:
    """A decision's numbers as JSON-ready data (what the decision log shows)."""

    def verdict(v: Any) -> dict[str, Any]:
        return {
            "metric": v.metric,
            "kind": v.kind.value,
            "verdict": v.verdict.value,
            "sentence": v.sentence,
            "segment": list(v.segment) if v.segment else None,
            "estimate": v.estimate,
            "lower": v.lower,
            "upper": v.upper,
            "threshold": v.threshold,
            "tolerance": v.tolerance,
            "exposed": [v.exposed.requests, v.exposed.events] if v.exposed else None,
            "baseline": [v.baseline.requests, v.baseline.events] if v.baseline else None,
        }

    return {
        "verdicts": [verdict(v) for v in decision.verdicts],
        "segments": [verdict(v) for v in decision.segment_verdicts if v.verdict.value != "pending"],
        "gates": [
            {
                "name": g.name,
                "met": g.met,
                "sentence": g.sentence,
                "current": g.current,
                "required": g.required,
            }
            for g in decision.gates
        ],
        "trigger": verdict(decision.trigger) if decision.trigger else None,
    }


def build_observations(
    rows: Sequence[Any], ledger_rows: Sequence[Any], plan: Plan, stage: int
) -> Observations:
    """Aggregate rows (the columns of t.aggregates) and ledger counts → the judgement's strata,
    through the same ``AggregateTable`` the simulator uses."""
    table = AggregateTable()
    for _, *columns in rows:
        table.put(Aggregate(*columns))
    return table.observations(plan, stage, ledger_exposure(ledger_rows, plan, stage))


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
