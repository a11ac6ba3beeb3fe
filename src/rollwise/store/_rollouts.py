"""Plans, rollouts and their transitions: the control plane's other half (see ``_control.py``
for the lock every write here takes first and the live state it is checked against)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from rollwise.core import (
    LIVE_STATUSES,
    REFERENCE_RULES,
    Finding,
    Plan,
    RolloutAction,
    Severity,
    approval_refusal,
    legal_from,
    lint,
    load_plan,
    next_status,
    refusal,
)
from rollwise.core.judgement import Decision, RolloutStatus
from rollwise.store import _schema as t
from rollwise.store._audit import write_audit
from rollwise.store._control import LIVE, ControlStore, rollout_record
from rollwise.store._errors import ConflictError, NotFoundError, RefusedError, StaleVersionError
from rollwise.store._evidence import insert_decision
from rollwise.store._outbox import enqueue
from rollwise.store._records import PlanRecord, RolloutRecord


def finding_dict(finding: Finding) -> dict[str, Any]:
    return {
        "code": finding.code,
        "name": finding.name,
        "severity": finding.severity.value,
        "path": finding.path,
        "line": finding.line,
        "message": finding.message,
    }


@dataclass(frozen=True, slots=True)
class PlanStored:
    record: PlanRecord
    #: The linter's warnings and notes (errors refuse the plan).
    findings: tuple[Finding, ...] = field(default=())


class RolloutStore(ControlStore):
    """Plans and rollouts (mixed into ``Store``)."""

    # --- plans ---------------------------------------------------------------------------

    def _linted(self, plan: Plan) -> tuple[Finding, ...]:
        """Every lint rule against the flags applied now, outside any transaction: some rules
        simulate (RW019 takes seconds) and must not hold the control-plane lock."""
        with self.engine.connect() as connection:
            return tuple(lint(plan, self._flags_in(connection)))

    def _checked(
        self, connection: sa.Connection, plan: Plan, linted: Sequence[Finding]
    ) -> tuple[Finding, ...]:
        """``linted`` with the rules that look names up in the flags run again against the
        flags as they are inside this transaction; errors refuse the plan."""
        fresh = lint(plan, self._flags_in(connection), only=REFERENCE_RULES)
        findings = sorted(
            [f for f in linted if f.code not in REFERENCE_RULES] + fresh,
            key=lambda f: (f.line or 0, f.severity is not Severity.ERROR, f.code),
        )
        errors = [f for f in findings if f.severity is Severity.ERROR]
        if errors:
            raise RefusedError(
                f"the plan has {len(errors)} error(s): "
                + "; ".join(f"{f.path}: {f.message}" for f in errors),
                details={"findings": [finding_dict(f) for f in findings]},
            )
        return tuple(findings)

    def _insert_plan(
        self,
        connection: sa.Connection,
        text: str,
        plan: Plan,
        findings: Sequence[Finding],
        actor: str,
        now: datetime,
    ) -> PlanRecord:
        """Store ``plan`` as its flag's next version, audited with the linter's findings."""
        latest = connection.execute(
            sa.select(sa.func.max(t.plans.c.version)).where(t.plans.c.flag == plan.flag)
        ).scalar()
        version = int(latest or 0) + 1
        plan_id = connection.execute(
            t.plans.insert()
            .values(flag=plan.flag, version=version, text=text, created_at=now, created_by=actor)
            .returning(t.plans.c.id)
        ).scalar_one()
        self._parsed_plans[plan_id] = plan
        write_audit(
            connection,
            now,
            actor,
            "plan.save",
            plan.flag,
            {
                "plan_id": plan_id,
                "version": version,
                "findings": [finding_dict(f) for f in findings],
            },
        )
        return PlanRecord(plan_id, plan.flag, version, text, now, actor)

    def save_plan(self, text: str, source: str, actor: str, now: datetime) -> PlanStored:
        """Lint a plan with the same rules as ``rollwise lint`` against the applied flags and
        store it as the next version for its flag.

        Raises:
            InputError: the plan is invalid.
            RefusedError: the linter finds errors (``details["findings"]``). Nothing is stored.
        """
        plan = load_plan(text, source)
        linted = self._linted(plan)
        with self.engine.begin() as connection:
            self._lock(connection)
            findings = self._checked(connection, plan, linted)
            record = self._insert_plan(connection, text, plan, findings, actor, now)
        return PlanStored(record, findings)

    def plan(self, plan_id: int) -> PlanRecord:
        with self.engine.connect() as connection:
            return self._plan_in(connection, plan_id)[0]

    def parsed_plan(self, plan_id: int) -> Plan:
        with self.engine.connect() as connection:
            return self._plan_in(connection, plan_id)[1]

    def plan_findings(self, plan_id: int) -> list[Finding]:
        """The linter's findings for a stored plan against the flags applied now."""
        with self.engine.connect() as connection:
            return lint(self._plan_in(connection, plan_id)[1], self._flags_in(connection))

    # --- rollouts ------------------------------------------------------------------------

    def start_rollout(
        self, plan_id: int | None, actor: str, now: datetime, *, text: str | None = None
    ) -> RolloutRecord:
        """Start a rollout at its first stage, of a stored plan (``plan_id``) or of the plan
        ``text`` — stored and started in one transaction, so a refused start stores nothing.

        Raises:
            NotFoundError: no such plan.
            InputError: ``text`` is not a valid plan.
            RefusedError: the plan does not lint against the applied flags.
            ConflictError: the flag already has a live (running or paused) rollout.
        """
        if text is not None:
            plan = load_plan(text, "plan")
        elif plan_id is not None:
            plan = self.parsed_plan(plan_id)
        else:
            raise RefusedError("name a stored plan (plan_id) or send one (plan)")
        with self.engine.connect() as connection:
            self._refuse_second(connection, plan.flag)  # before the slow lint, and again below
        linted = self._linted(plan)
        try:
            with self.engine.begin() as connection:
                self._lock(connection)
                self._refuse_second(connection, plan.flag)
                findings = self._checked(connection, plan, linted)
                if text is None:
                    assert plan_id is not None
                    record = self._plan_in(connection, plan_id)[0]
                else:
                    record = self._insert_plan(connection, text, plan, findings, actor, now)
                rollout_id = connection.execute(
                    t.rollouts.insert()
                    .values(
                        flag=plan.flag,
                        plan_id=record.id,
                        status=RolloutStatus.RUNNING.value,
                        stage=0,
                        stage_entered_at=now,
                        started_at=now,
                        version=1,
                        approvals=[],
                    )
                    .returning(t.rollouts.c.id)
                ).scalar_one()
                write_audit(
                    connection,
                    now,
                    actor,
                    "rollout.start",
                    plan.flag,
                    {
                        "rollout_id": rollout_id,
                        "plan_id": record.id,
                        "plan_version": record.version,
                    },
                )
                self._bump_snapshot(connection)
        except IntegrityError:  # the database's own one-live-rollout index, as a last resort
            raise ConflictError(f"flag {plan.flag!r} already has a live rollout") from None
        return self.rollout(rollout_id)

    @staticmethod
    def _refuse_second(connection: sa.Connection, flag: str) -> None:
        live = connection.execute(
            sa.select(t.rollouts.c.id, t.rollouts.c.status).where(
                (t.rollouts.c.flag == flag) & t.rollouts.c.status.in_(LIVE)
            )
        ).first()
        if live is not None:
            raise ConflictError(
                f"flag {flag!r} already has a live rollout ({live.id}, {live.status})",
                details={"rollout_id": live.id},
            )

    def rollout(self, rollout_id: int) -> RolloutRecord:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(t.rollouts).where(t.rollouts.c.id == rollout_id)
            ).one_or_none()
        if row is None:
            raise NotFoundError(f"no rollout {rollout_id}")
        return rollout_record(row)

    def rollouts(self, *, live: bool = False) -> list[RolloutRecord]:
        query = sa.select(t.rollouts).order_by(t.rollouts.c.id)
        if live:
            query = query.where(t.rollouts.c.status.in_(LIVE))
        with self.engine.connect() as connection:
            return [rollout_record(row) for row in connection.execute(query)]

    def transition(
        self,
        rollout: RolloutRecord,
        *,
        action: RolloutAction,
        actor: str,
        now: datetime,
        stage: int | None = None,
        approvals: Sequence[str] | None = None,
        decision: Decision | None = None,
        details: dict[str, Any] | None = None,
        notify: Sequence[tuple[str, bytes]] = (),
    ) -> RolloutRecord:
        """Apply ``action`` to the rollout ``rollout`` was read as, exactly once.

        The state machine's table decides the new status; the UPDATE is guarded by the legal
        from-statuses and the version read, so of two racing changes exactly one applies. The
        decision (if any), the audit entry, the new snapshot version and the webhook notifications
        (``notify``: url, body) are written in the same transaction as the change.

        Raises:
            ConflictError: the table does not allow ``action`` from the rollout's status.
            StaleVersionError: the rollout changed since it was read; nothing was written.
        """
        after = next_status(rollout.status, action)
        if after is None:
            raise ConflictError(
                refusal(rollout.status, action),
                details={"status": rollout.status.value, "action": action.value},
            )
        values: dict[str, Any] = {"version": rollout.version + 1}
        exposure_changes = False
        if after is not rollout.status:
            values["status"] = after.value
            exposure_changes = True
            if after not in LIVE_STATUSES:
                values["ended_at"] = now
        if stage is not None and stage != rollout.stage:
            values["stage"] = stage
            values["stage_entered_at"] = now
            exposure_changes = True
        if approvals is not None:
            values["approvals"] = list(approvals)
        with self.engine.begin() as connection:
            self._lock(connection)
            updated = connection.execute(
                t.rollouts.update()
                .where(
                    (t.rollouts.c.id == rollout.id)
                    & (t.rollouts.c.version == rollout.version)
                    & t.rollouts.c.status.in_(sorted(s.value for s in legal_from(action)))
                )
                .values(**values)
            )
            if updated.rowcount != 1:
                raise StaleVersionError(
                    f"rollout {rollout.id} changed since version {rollout.version} was read; "
                    "read it again"
                )
            if decision is not None:
                insert_decision(connection, rollout.id, decision)
            write_audit(
                connection,
                now,
                actor,
                f"rollout.{action.value}",
                rollout.flag,
                {"rollout_id": rollout.id, "from_version": rollout.version, **(details or {})},
            )
            if exposure_changes:
                self._bump_snapshot(connection)
            enqueue(connection, notify, now)
        return self.rollout(rollout.id)

    def approve(self, rollout_id: int, stage: str, actor: str, now: datetime) -> RolloutRecord:
        """Approve entering the rollout's next stage, when it requires approval and has none.

        Raises:
            RefusedError: the plan has no such stage.
            ConflictError: anything else (not next, needs none, approved already, ended).
        """
        rollout = self.rollout(rollout_id)
        plan = self.parsed_plan(rollout.plan_id)
        if plan.stage_named(stage) is None:
            names = ", ".join(s.name for s in plan.stages)
            raise RefusedError(f"the plan has no stage {stage!r}; stages: {names}")
        why = approval_refusal(plan, rollout.status, rollout.stage, rollout.approvals, stage)
        if why is not None:
            raise ConflictError(why, details={"stage": stage})
        return self.transition(
            rollout,
            action=RolloutAction.APPROVE,
            actor=actor,
            now=now,
            approvals=sorted({*rollout.approvals, stage}),
            details={"reason": stage},  # the stage approved, as the timeline and report read it
        )
