"""The management API: flags, plans, rollouts, kill switches, decisions, audit, tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from rollwise.core.judgement import RolloutStatus
from rollwise.server._auth import actor, requires
from rollwise.server._series import rollout_series
from rollwise.store import (
    AuditEntry,
    PlanRecord,
    Role,
    RolloutRecord,
    Store,
    TokenRecord,
    decision_evidence,
)

router = APIRouter(prefix="/api/v1", tags=["management"])
Viewer = Annotated[TokenRecord, Depends(requires(Role.VIEWER))]
Operator = Annotated[TokenRecord, Depends(requires(Role.OPERATOR))]
Admin = Annotated[TokenRecord, Depends(requires(Role.ADMIN))]


def _store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


async def _text(request: Request, what: str) -> str:
    body = await request.body()
    if not body.strip():
        raise HTTPException(422, f"send the {what} as the request body (YAML)")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(422, f"the {what} must be UTF-8 text") from None


def _rollout(record: RolloutRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "flag": record.flag,
        "plan_id": record.plan_id,
        "status": record.status.value,
        "stage": record.stage,
        "stage_entered_at": record.stage_entered_at.isoformat(),
        "started_at": record.started_at.isoformat(),
        "ended_at": record.ended_at.isoformat() if record.ended_at else None,
        "version": record.version,
        "approvals": list(record.approvals),
    }


def _plan(record: PlanRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "flag": record.flag,
        "version": record.version,
        "created_at": record.created_at.isoformat(),
        "created_by": record.created_by,
        "text": record.text,
    }


def _audit(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
    }


@router.put("/flags")
async def apply_flags(request: Request, token: Operator) -> dict[str, Any]:
    """Apply a flags file (YAML body). Invalid: 422 naming the line and field path."""
    text = await _text(request, "flags file")
    version = _store(request).apply_flags(text, "api", actor(token), request.app.state.clock.now())
    return {"snapshot_version": version}


@router.get("/flags")
def list_flags(request: Request, token: Viewer) -> dict[str, Any]:
    """Every flag with its variants, kill switch and latest rollout."""
    store = _store(request)
    flags = store.flags()
    latest = {r.flag: r for r in store.rollouts()}
    return {
        "snapshot_version": flags.version,
        "flags": [
            {
                "key": flag.key,
                "description": flag.description,
                "variants": [v.name for v in flag.variants],
                "killed": flag.killed,
                "rollout": _rollout(latest[flag.key]) if flag.key in latest else None,
            }
            for flag in flags.flags.values()
        ],
    }


@router.post("/flags/{key}/kill")
def kill(key: str, request: Request, token: Operator) -> dict[str, Any]:
    """The kill switch: every SDK serves the flag's safe default."""
    version = _store(request).set_killed(key, True, actor(token), request.app.state.clock.now())
    return {"flag": key, "killed": True, "snapshot_version": version}


@router.post("/flags/{key}/unkill")
def unkill(key: str, request: Request, token: Operator) -> dict[str, Any]:
    version = _store(request).set_killed(key, False, actor(token), request.app.state.clock.now())
    return {"flag": key, "killed": False, "snapshot_version": version}


@router.post("/plans", status_code=201)
async def save_plan(request: Request, token: Operator) -> dict[str, Any]:
    """Store a plan (YAML body) as the next version for its flag."""
    text = await _text(request, "plan")
    record = _store(request).save_plan(text, "api", actor(token), request.app.state.clock.now())
    return _plan(record)


@router.get("/plans/{plan_id}")
def get_plan(plan_id: int, request: Request, token: Viewer) -> dict[str, Any]:
    return _plan(_store(request).plan(plan_id))


class StartRollout(BaseModel):
    plan_id: int = Field(ge=1)


@router.post("/rollouts", status_code=201)
def start_rollout(body: StartRollout, request: Request, token: Operator) -> dict[str, Any]:
    """Start a rollout of a stored plan. 409 if its flag already has a live one."""
    record = _store(request).start_rollout(
        body.plan_id, actor(token), request.app.state.clock.now()
    )
    return _rollout(record)


@router.get("/rollouts")
def list_rollouts(request: Request, token: Viewer, live: bool = False) -> list[dict[str, Any]]:
    return [_rollout(r) for r in _store(request).rollouts(live=live)]


@router.get("/rollouts/{rollout_id}")
def get_rollout(rollout_id: int, request: Request, token: Viewer) -> dict[str, Any]:
    """The rollout, its plan and its latest decision with the evidence."""
    store = _store(request)
    record = store.rollout(rollout_id)
    plan = store.parsed_plan(record.plan_id)
    latest = store.decisions(rollout_id, limit=1)
    current = None
    if record.status is RolloutStatus.RUNNING:
        live = request.app.state.controller.current(record, request.app.state.clock.now())
        current = {
            "at": live.at.isoformat(),
            "move": live.move.value,
            "reasons": list(live.reasons),
            "evidence": decision_evidence(live),
        }
    return {
        **_rollout(record),
        "plan": {
            "unit": plan.unit,
            "variant": plan.variant,
            "stages": [
                {
                    "name": s.name,
                    "percent": s.audience.percent,
                    "segments": list(s.audience.segments),
                    "irreversible": s.irreversible,
                    "approval": s.approval_required,
                }
                for s in plan.stages
            ],
        },
        "decision": (
            {
                "at": latest[0].at.isoformat(),
                "move": latest[0].move,
                "reasons": list(latest[0].reasons),
                "evidence": latest[0].evidence,
            }
            if latest
            else None
        ),
        "current": current,
    }


@router.get("/rollouts/{rollout_id}/series")
def series(rollout_id: int, request: Request, token: Viewer) -> dict[str, Any]:
    """What the dashboard draws: the stage timeline, exposure per window, each guard per window
    and as judged over time, and the per-segment verdicts, worst first."""
    store = _store(request)
    record = store.rollout(rollout_id)
    plan = store.parsed_plan(record.plan_id)
    now = request.app.state.clock.now()
    shown = rollout_series(store, record, plan, now, request.app.state.decision_history)
    return {"rollout": _rollout(record), **shown}


class Change(BaseModel):
    reason: str = Field(default="", max_length=1000)


class Approval(BaseModel):
    stage: str = Field(min_length=1, max_length=200)


def _change(
    request: Request, rollout_id: int, token: TokenRecord, action: str, reason: str, **changes: Any
) -> dict[str, Any]:
    store = _store(request)
    record = store.rollout(rollout_id)
    after = store.transition(
        record,
        actor=actor(token),
        action=action,
        now=request.app.state.clock.now(),
        details={"reason": reason} if reason else None,
        **changes,
    )
    return _rollout(after)


def _live(request: Request, rollout_id: int, *allowed: RolloutStatus) -> None:
    status = _store(request).rollout(rollout_id).status
    if status not in allowed:
        names = " or ".join(s.value for s in allowed)
        raise HTTPException(409, f"the rollout is {status.value}; this needs it {names}")


@router.post("/rollouts/{rollout_id}/pause")
def pause(rollout_id: int, body: Change, request: Request, token: Operator) -> dict[str, Any]:
    _live(request, rollout_id, RolloutStatus.RUNNING)
    return _change(
        request, rollout_id, token, "rollout.pause", body.reason, status=RolloutStatus.PAUSED
    )


@router.post("/rollouts/{rollout_id}/resume")
def resume(rollout_id: int, body: Change, request: Request, token: Operator) -> dict[str, Any]:
    _live(request, rollout_id, RolloutStatus.PAUSED)
    return _change(
        request, rollout_id, token, "rollout.resume", body.reason, status=RolloutStatus.RUNNING
    )


@router.post("/rollouts/{rollout_id}/rollback")
def rollback(rollout_id: int, body: Change, request: Request, token: Operator) -> dict[str, Any]:
    _live(request, rollout_id, RolloutStatus.RUNNING, RolloutStatus.PAUSED)
    return _change(
        request,
        rollout_id,
        token,
        "rollout.rollback",
        body.reason,
        status=RolloutStatus.ROLLED_BACK,
    )


@router.post("/rollouts/{rollout_id}/approve")
def approve(rollout_id: int, body: Approval, request: Request, token: Operator) -> dict[str, Any]:
    """Approve entering a stage that requires approval."""
    store = _store(request)
    record = store.rollout(rollout_id)
    plan = store.parsed_plan(record.plan_id)
    if plan.stage_named(body.stage) is None:
        names = ", ".join(s.name for s in plan.stages)
        raise HTTPException(422, f"the plan has no stage {body.stage!r}; stages: {names}")
    approvals = sorted({*record.approvals, body.stage})
    return _change(request, rollout_id, token, "rollout.approve", body.stage, approvals=approvals)


@router.get("/rollouts/{rollout_id}/decisions")
def decisions(
    rollout_id: int, request: Request, token: Viewer, limit: int = 100
) -> list[dict[str, Any]]:
    return [
        {
            "id": d.id,
            "at": d.at.isoformat(),
            "stage": d.stage,
            "move": d.move,
            "reasons": list(d.reasons),
            "evidence": d.evidence,
        }
        for d in _store(request).decisions(rollout_id, limit=min(max(limit, 1), 1000))
    ]


@router.get("/rollouts/{rollout_id}/ledger")
def ledger(rollout_id: int, request: Request, token: Viewer) -> dict[str, Any]:
    """Units exposed by the rollout, with the stage and time of their first exposure."""
    entries = _store(request).ledger(rollout_id)
    return {
        "rollout_id": rollout_id,
        "units": [{"unit": u, "stage": s, "first_seen": at.isoformat()} for u, s, at in entries],
    }


@router.get("/audit")
def audit(
    request: Request, token: Viewer, limit: int = 100, target: str | None = None
) -> list[dict[str, Any]]:
    return [
        _audit(e) for e in _store(request).audit_log(limit=min(max(limit, 1), 1000), target=target)
    ]


class NewToken(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    role: Role


@router.post("/tokens", status_code=201)
def create_token(body: NewToken, request: Request, token: Admin) -> dict[str, Any]:
    """A new token; its secret is shown once, in this response."""
    record, secret = _store(request).create_token(
        body.name, body.role, actor(token), request.app.state.clock.now()
    )
    return {"id": record.id, "name": record.name, "role": record.role.value, "secret": secret}
