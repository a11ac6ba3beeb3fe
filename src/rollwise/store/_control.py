"""The control-plane half of the store: the lock, the live state, flags files and kill switches
(plans and rollouts build on it in ``_rollouts.py``).

Every write here is checked against what is running *in the transaction that writes it*: the
transaction first locks the ``control_lock`` row (an UPDATE, so on SQLite it takes the write lock
before anything is read, and on PostgreSQL it serialises control-plane writers), then reads the
live state, checks, and only then writes. A refused request raises before its first write and
leaves no plan version, audit entry or snapshot bump behind.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from rollwise.core import (
    LIVE_STATUSES,
    FlagSet,
    InputError,
    LiveRollout,
    Plan,
    flags_conflicts,
    load_flags,
    load_plan,
    served_flag,
)
from rollwise.core._flagdiff import Change, diff_flags
from rollwise.core.judgement import RolloutStatus
from rollwise.store import _schema as t
from rollwise.store._audit import write_audit
from rollwise.store._errors import ConflictError, NotFoundError
from rollwise.store._pool import reading
from rollwise.store._records import PlanRecord, RolloutRecord

_SNAPSHOT = "snapshot_version"
_LOCK = "control_lock"
LIVE = tuple(sorted(s.value for s in LIVE_STATUSES))
#: The version of the latest applied flags file (NULL before the first).
LATEST_FLAGS = sa.select(sa.func.max(t.flag_files.c.version))


def utc(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; everything in rollwise is UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class FlagsApplied:
    """What applying a flags file did (or, for a dry run, would do)."""

    snapshot_version: int
    changes: tuple[Change, ...] = ()
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.changes)


def rollout_record(row: Any) -> RolloutRecord:
    return RolloutRecord(
        row.id,
        row.flag,
        row.plan_id,
        RolloutStatus(row.status),
        row.stage,
        utc(row.stage_entered_at),
        utc(row.started_at),
        utc(row.ended_at) if row.ended_at else None,
        row.version,
        tuple(row.approvals or ()),
    )


class ControlStore:
    """Flags, kill switches, plans and rollouts (mixed into ``Store``)."""

    engine: sa.Engine

    def __init__(self) -> None:
        self._parsed_flags: tuple[int, FlagSet] | None = None
        # Stored plans never change (a new version is a new plan): each is parsed once.
        self._parsed_plans: dict[int, Plan] = {}

    # --- the lock, the version, the live state ------------------------------------------

    @staticmethod
    def _lock(connection: sa.Connection) -> None:
        """Serialise control-plane writes: taken first in each of their transactions."""
        updated = connection.execute(
            t.meta.update().where(t.meta.c.key == _LOCK).values(value=t.meta.c.value + 1)
        )
        if updated.rowcount == 0:  # a database older than migration 0004's row
            connection.execute(t.meta.insert().values(key=_LOCK, value=1))

    @staticmethod
    def _bump_snapshot(connection: sa.Connection) -> int:
        updated = connection.execute(
            t.meta.update().where(t.meta.c.key == _SNAPSHOT).values(value=t.meta.c.value + 1)
        )
        if updated.rowcount == 0:
            connection.execute(t.meta.insert().values(key=_SNAPSHOT, value=1))
            return 1
        return ControlStore._version(connection)

    @staticmethod
    def _version(connection: sa.Connection) -> int:
        value = connection.execute(
            sa.select(t.meta.c.value).where(t.meta.c.key == _SNAPSHOT)
        ).scalar_one_or_none()
        return int(value or 0)

    def snapshot_version(self) -> int:
        with reading(self.engine) as connection:
            return self._version(connection)

    def _flags_in(self, connection: sa.Connection) -> FlagSet:
        """The latest applied flags file (``_flags_at``)."""
        return self._flags_at(connection, connection.execute(LATEST_FLAGS).scalar())

    def _flags_at(self, connection: sa.Connection, version: int | None) -> FlagSet:
        """The flags file of ``version`` (None: none applied yet), read and parsed once per
        version (files never change): every SDK batch with a gauge reading asks, and a file
        may hold a thousand flags."""
        if version is None:
            return FlagSet()
        cached = self._parsed_flags
        if cached is None or cached[0] != version:
            text = connection.execute(
                sa.select(t.flag_files.c.text).where(t.flag_files.c.version == version)
            ).scalar_one()
            return self._keep_parsed(version, load_flags(text, "stored flags"))
        return cached[1]

    def _keep_parsed(self, version: int, flags: FlagSet) -> FlagSet:
        """Keep ``flags`` as the parsed file of ``version`` (the one committed with that
        version), unless a newer version is kept already: two threads may finish in either
        order, and the newest is the one asked for next."""
        cached = self._parsed_flags
        if cached is None or cached[0] <= version:
            self._parsed_flags = (version, flags)
        return flags

    def _plan_in(self, connection: sa.Connection, plan_id: int) -> tuple[PlanRecord, Plan]:
        row = connection.execute(sa.select(t.plans).where(t.plans.c.id == plan_id)).one_or_none()
        if row is None:
            raise NotFoundError(f"no plan {plan_id}")
        record = PlanRecord(
            row.id, row.flag, row.version, row.text, utc(row.created_at), row.created_by
        )
        plan = self._parsed_plans.get(plan_id)
        if plan is None:
            plan = self._parsed_plans[plan_id] = load_plan(
                record.text, f"plan {record.flag} v{record.version}"
            )
        return record, plan

    def _live_in(self, connection: sa.Connection) -> list[tuple[RolloutRecord, Plan]]:
        rows = connection.execute(
            sa.select(t.rollouts).where(t.rollouts.c.status.in_(LIVE)).order_by(t.rollouts.c.id)
        ).all()
        return [(rollout_record(row), self._plan_in(connection, row.plan_id)[1]) for row in rows]

    # --- flags ---------------------------------------------------------------------------

    def apply_flags(
        self,
        text: str,
        source: str,
        actor: str,
        now: datetime,
        *,
        dry_run: bool = False,
        prune: bool = False,
    ) -> FlagsApplied:
        """Validate a flags file against what is running and store it, in one transaction.

        An identical file (same flags, segments and metrics) changes nothing and keeps the
        snapshot version. ``dry_run`` checks and reports without writing.

        Raises:
            InputError: the file is invalid.
            ConflictError: it would leave a live rollout's flag, variant, unit or segments
                undefined (``details["conflicts"]`` names each), or it drops flags without
                ``prune``. Nothing is stored.
        """
        flags = load_flags(text, source)
        with self.engine.begin() as connection:
            self._lock(connection)
            current = self._flags_in(connection)
            changes = tuple(diff_flags(current, flags))
            removed = [c.name for c in changes if c.kind == "flag" and c.change == "removed"]
            if removed and not prune:
                raise ConflictError(
                    f"the file leaves out {len(removed)} applied flag(s): "
                    f"{', '.join(removed)}; apply with prune to delete them",
                    details={"conflicts": [f"flag {key}: would be deleted" for key in removed]},
                )
            live = self._live_in(connection)
            conflicts = flags_conflicts(
                flags, [LiveRollout(r.id, r.stage, plan) for r, plan in live]
            )
            for rollout, plan in live:
                flag = flags.flags.get(rollout.flag)
                if flag is None or conflicts:
                    continue
                try:  # the snapshot SDKs are served must still build
                    served_flag(flag, plan, rollout.status, rollout.stage, flags.segments)
                except InputError as exc:
                    conflicts.append(f"flag {rollout.flag}: rollout {rollout.id}: {exc.message}")
            if conflicts:
                raise ConflictError(
                    "the flags file conflicts with live rollouts: " + "; ".join(conflicts),
                    details={"conflicts": conflicts},
                )
            if dry_run or not changes:
                return FlagsApplied(self._version(connection), changes, dry_run)
            latest = connection.execute(sa.select(sa.func.max(t.flag_files.c.version))).scalar()
            version = int(latest or 0) + 1
            connection.execute(
                t.flag_files.insert().values(
                    version=version, text=text, applied_at=now, applied_by=actor
                )
            )
            write_audit(
                connection,
                now,
                actor,
                "flags.apply",
                source,
                {"version": version, "changes": [c.as_dict() for c in changes]},
            )
            applied = FlagsApplied(self._bump_snapshot(connection), changes)
        # Committed: the next kill switch and batch check read this file, already parsed here
        # (reading a thousand flags again took the first kill switch after an apply 0.7 s).
        self._keep_parsed(version, flags)
        return applied

    def flags_text(self) -> str | None:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(t.flag_files.c.text).order_by(t.flag_files.c.version.desc()).limit(1)
            ).scalar_one_or_none()

    def flags(self) -> FlagSet:
        """The applied flags, with their kill switches."""
        with self.engine.connect() as connection:
            flags = self._flags_in(connection)
            killed = self._kill_switches(connection)
            version = self._version(connection)
        return replace(
            flags,
            flags={
                key: replace(flag, killed=killed.get(key, flag.killed))
                for key, flag in flags.flags.items()
            },
            version=version,
        )

    @staticmethod
    def _kill_switches(connection: sa.Connection) -> dict[str, bool]:
        rows = connection.execute(sa.select(t.kill_switches.c.flag, t.kill_switches.c.killed))
        return {row.flag: bool(row.killed) for row in rows}

    def kill_switches(self) -> dict[str, bool]:
        with self.engine.connect() as connection:
            return self._kill_switches(connection)

    def set_killed(self, flag: str, killed: bool, actor: str, now: datetime) -> tuple[int, bool]:
        """Turn a flag's kill switch on or off. Returns the snapshot version and whether
        anything changed: killing a killed flag (or lifting a switch that is off) writes
        nothing and keeps the version.

        Raises:
            NotFoundError: no applied flag has that key.
        """
        with self.engine.begin() as connection:
            self._lock(connection)
            if flag not in self._flags_in(connection).flags:
                raise NotFoundError(f"unknown flag {flag!r}")
            if self._kill_switches(connection).get(flag, False) == killed:
                return self._version(connection), False
            version = self._bump_snapshot(connection)
            values = {"killed": killed, "changed_at": now, "changed_by": actor, "version": version}
            updated = connection.execute(
                t.kill_switches.update().where(t.kill_switches.c.flag == flag).values(**values)
            )
            if updated.rowcount == 0:
                connection.execute(t.kill_switches.insert().values(flag=flag, **values))
            write_audit(connection, now, actor, "flag.kill" if killed else "flag.unkill", flag)
            return version, True

    def kill_flips(self, after: int, upto: int) -> dict[int, tuple[str, bool]]:
        """The versions in (``after``, ``upto``] made by a kill switch flip alone, each with its
        flag and new state: a replica sends them to its SDK streams as ``event: kill``. A
        version missing here changed something else (or its flag was flipped again since): it
        goes out as the whole snapshot."""
        switches = t.kill_switches
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(switches.c.version, switches.c.flag, switches.c.killed).where(
                    switches.c.version > after, switches.c.version <= upto
                )
            )
            return {int(row.version): (row.flag, bool(row.killed)) for row in rows}
