"""The stage timeline of a rollout, replayed from the audit log: when each stage was entered
and left, and how (expanded, rolled back, completed), with the people's actions around it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from rollwise.core import Plan, cumulative_audience
from rollwise.core.judgement import RolloutStatus
from rollwise.store import AuditEntry, RolloutRecord

_TRANSITIONS = {
    "rollout.expand": "expand",
    "rollout.rollback": "rollback",
    "rollout.complete": "complete",
}
_STATE_OF_CURRENT = {
    RolloutStatus.RUNNING: "current",
    RolloutStatus.PAUSED: "paused",
    RolloutStatus.ROLLED_BACK: "rolled_back",
    RolloutStatus.COMPLETED: "done",
}


def rollout_events(
    entries: Iterable[AuditEntry], record: RolloutRecord, until: datetime
) -> list[dict[str, Any]]:
    """The rollout's audit entries, oldest first, with the kill switch changes of its flag
    while it ran (they do not name the rollout)."""
    kept = []
    for entry in entries:
        ours = entry.details.get("rollout_id") == record.id
        kill = entry.action in ("flag.kill", "flag.unkill")
        if ours or (kill and record.started_at <= entry.at <= until):
            kept.append(entry)
    kept.sort(key=lambda entry: entry.id)
    events = []
    for entry in kept:
        reasons = entry.details.get("reasons")
        reason = "; ".join(reasons) if isinstance(reasons, list) else entry.details.get("reason")
        events.append(
            {
                "at": entry.at.isoformat(),
                "action": entry.action,
                "actor": entry.actor,
                "stage": entry.details.get("stage"),
                "reason": reason or "",
            }
        )
    return events


def stage_timeline(
    plan: Plan,
    record: RolloutRecord,
    events: Sequence[dict[str, Any]],
    units: Mapping[int, int],
) -> list[dict[str, Any]]:
    """Every stage of the plan: when it was entered and left, and how; done, current or
    ahead, with the units first exposed in it (``units``, by stage). Replayed from the audit
    log; the rollout's own record has the last word on the stage it is in."""
    rows: list[dict[str, Any]] = []
    for index, stage in enumerate(plan.stages):
        if index < record.stage:
            state = "done"
        elif index == record.stage:
            state = _STATE_OF_CURRENT[record.status]
        else:
            state = "ahead"
        rows.append(
            {
                "index": index,
                "name": stage.name,
                "percent": stage.audience.percent,
                "segments": list(stage.audience.segments),
                "assigned_percent": cumulative_audience(plan, index).percent,
                "irreversible": stage.irreversible,
                "approval": stage.approval_required,
                "approved": stage.name in record.approvals,
                "bake_seconds": stage.bake.total_seconds() if stage.bake else None,
                "state": state,
                "entered_at": None,
                "left_at": None,
                "left_by": None,
                "exposed_units": units.get(index, 0),
            }
        )
    rows[0]["entered_at"] = record.started_at.isoformat()
    current = 0
    for event in events:
        move = _TRANSITIONS.get(event["action"])
        if move is None:
            continue
        if isinstance(event["stage"], int) and 0 <= event["stage"] < len(rows):
            current = event["stage"]
        rows[current]["left_at"], rows[current]["left_by"] = event["at"], move
        if move == "expand" and current + 1 < len(rows):
            current += 1
            rows[current]["entered_at"] = event["at"]
    rows[record.stage]["entered_at"] = record.stage_entered_at.isoformat()
    return rows
