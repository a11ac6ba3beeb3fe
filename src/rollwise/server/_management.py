"""The management API: plans, rollouts, decisions, audit (flags and kill switches:
``_flags_api.py``; tokens: ``_tokens_api.py``), and what those modules share: the roles a
route requires, the store and clock of the app, YAML bodies."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

from rollwise.core import RolloutAction
from rollwise.core.judgement import RolloutStatus
from rollwise.server._auth import actor, requires
from rollwise.server._errors import Error
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
from rollwise.store._rollouts import finding_dict

router = APIRouter(prefix="/api/v1", tags=["management"])
Viewer = Annotated[TokenRecord, Depends(requires(Role.VIEWER))]
Operator = Annotated[TokenRecord, Depends(requires(Role.OPERATOR))]
Admin = Annotated[TokenRecord, Depends(requires(Role.ADMIN))]


#: Ids are INTEGER columns: within PostgreSQL's range on every database.
MAX_ID = 2**31 - 1
RolloutId = Annotated[int, Path(ge=1, le=MAX_ID, description="a rollout's id")]
PlanId = Annotated[int, Path(ge=1, le=MAX_ID, description="a plan's id")]
Limit = Annotated[int, Query(ge=1, le=1000)]
#: The most units one page of a rollout's ledger lists.
MAX_LEDGER_PAGE = 10_000
#: Management bodies are YAML text (a flags file, a plan), declared so clients and fuzzers
#: can send them; the server caps their size before reading (see _errors.py).
YAML_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
        },
    }
}


def _store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def _now(request: Request) -> datetime:
    return request.app.state.clock.now()  # type: ignore[no-any-return]


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


@router.post("/plans", status_code=201, openapi_extra=YAML_BODY)
async def save_plan(request: Request, token: Operator) -> dict[str, Any]:
    """Store a plan (YAML body) as the next version for its flag. The server lints it with the
    same rules as ``rollwise lint``, against the flags it holds: errors refuse it (422 with the
    findings), warnings are stored and returned."""
    text = await _text(request, "plan")
    # In a thread: linting may simulate the plan for seconds, and the event loop must keep
    # serving SDKs and kill switches meanwhile.
    stored = await asyncio.to_thread(
        _store(request).save_plan, text, "api", actor(token), _now(request)
    )
    return {**_plan(stored.record), "findings": [finding_dict(f) for f in stored.findings]}


@router.get("/plans/{plan_id}")
def get_plan(plan_id: PlanId, request: Request, token: Viewer) -> dict[str, Any]:
    """A stored plan, linted against the flags applied now."""
    store = _store(request)
    return {
        **_plan(store.plan(plan_id)),
        "findings": [finding_dict(f) for f in store.plan_findings(plan_id)],
    }


class StartRollout(BaseModel):
    """Start from a stored plan (``plan_id``) or from a plan's YAML text (``plan``: stored and
    started in one transaction, so a refused start stores nothing)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    plan_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    plan: str | None = Field(default=None, min_length=1, max_length=1_000_000)

    @model_validator(mode="after")
    def _one(self) -> StartRollout:
        if (self.plan_id is None) == (self.plan is None):
            raise ValueError("give exactly one of plan_id (a stored plan) or plan (its YAML)")
        return self


@router.post(
    "/rollouts",
    status_code=201,
    responses={404: {"model": Error, "description": "no plan with that plan_id"}},
)
def start_rollout(body: StartRollout, request: Request, token: Operator) -> dict[str, Any]:
    """Start a rollout at its first stage. 409 if its flag already has a live one; 422 if the
    plan does not lint against the applied flags. Nothing is stored when refused."""
    record = _store(request).start_rollout(
        body.plan_id, actor(token), _now(request), text=body.plan
    )
    return _rollout(record)


@router.get("/rollouts")
def list_rollouts(request: Request, token: Viewer, live: bool = False) -> list[dict[str, Any]]:
    return [_rollout(r) for r in _store(request).rollouts(live=live)]


@router.get("/rollouts/{rollout_id}")
def get_rollout(rollout_id: RolloutId, request: Request, token: Viewer) -> dict[str, Any]:
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
def series(rollout_id: RolloutId, request: Request, token: Viewer) -> dict[str, Any]:
    """What the dashboard draws: the stage timeline, exposure per window, each guard per window
    and as judged over time, and the per-segment verdicts, worst first."""
    store = _store(request)
    record = store.rollout(rollout_id)
    plan = store.parsed_plan(record.plan_id)
    now = request.app.state.clock.now()
    shown = rollout_series(store, record, plan, now, request.app.state.decision_history)
    return {"rollout": _rollout(record), **shown}


#: Free text kept in the audit log: no control characters (tabs and newlines aside), so the log
#: cannot hide a NUL or repaint a terminal.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _plain_text(value: str) -> str:
    found = _CONTROL.search(value)
    if found:
        raise ValueError(f"control character {found.group()!r} at position {found.start()}")
    return value


class Change(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: Annotated[str, AfterValidator(_plain_text)] = Field(default="", max_length=1000)


class Approval(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    stage: str = Field(min_length=1, max_length=200)


def _change(
    request: Request, rollout_id: int, token: TokenRecord, action: RolloutAction, reason: str
) -> dict[str, Any]:
    """One operator action through the state machine: 409 when its table does not allow it
    from the rollout's status, or when the rollout changed while this request was in flight."""
    store = _store(request)
    after = store.transition(
        store.rollout(rollout_id),
        action=action,
        actor=actor(token),
        now=_now(request),
        details={"reason": reason} if reason else None,
    )
    return _rollout(after)


@router.post("/rollouts/{rollout_id}/pause")
def pause(rollout_id: RolloutId, body: Change, request: Request, token: Operator) -> dict[str, Any]:
    """Pause a running rollout: exposure stays as it is, nothing is judged."""
    return _change(request, rollout_id, token, RolloutAction.PAUSE, body.reason)


@router.post("/rollouts/{rollout_id}/resume")
def resume(
    rollout_id: RolloutId, body: Change, request: Request, token: Operator
) -> dict[str, Any]:
    """Resume a paused rollout."""
    return _change(request, rollout_id, token, RolloutAction.RESUME, body.reason)


@router.post("/rollouts/{rollout_id}/rollback")
def rollback(
    rollout_id: RolloutId, body: Change, request: Request, token: Operator
) -> dict[str, Any]:
    """Roll a running or paused rollout back: everyone gets the rollback variant."""
    return _change(request, rollout_id, token, RolloutAction.ROLLBACK, body.reason)


@router.post("/rollouts/{rollout_id}/approve")
def approve(
    rollout_id: RolloutId, body: Approval, request: Request, token: Operator
) -> dict[str, Any]:
    """Approve entering the next stage, when it requires approval and has none yet (409
    otherwise, saying why)."""
    after = _store(request).approve(rollout_id, body.stage, actor(token), _now(request))
    return _rollout(after)


@router.get("/rollouts/{rollout_id}/decisions")
def decisions(
    rollout_id: RolloutId, request: Request, token: Viewer, limit: Limit = 100
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
        for d in _store(request).decisions(rollout_id, limit=limit)
    ]


@router.get("/rollouts/{rollout_id}/ledger")
def ledger(
    rollout_id: RolloutId,
    request: Request,
    token: Viewer,
    limit: Annotated[int, Query(ge=1, le=MAX_LEDGER_PAGE)] = 1000,
    after: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    from_stage: Annotated[int, Query(ge=0, le=1000)] = 0,
) -> dict[str, Any]:
    """Units exposed by the rollout, with the stage and time of their first exposure, a page
    at a time in the order of the units: ``next`` is the ``after`` of the next page (null on
    the last one); ``from_stage`` keeps the units first exposed at that stage or later (an
    irreversible stage's report); ``exposed_units`` counts them all."""
    store = _store(request)
    store.rollout(rollout_id)  # 404 for a rollout that does not exist
    entries, more, total = store.ledger_page(
        rollout_id, after=after, limit=limit, from_stage=from_stage
    )
    return {
        "rollout_id": rollout_id,
        "exposed_units": total,
        "units": [{"unit": u, "stage": s, "first_seen": at.isoformat()} for u, s, at in entries],
        "next": entries[-1][0] if more else None,
    }


@router.get("/audit")
def audit(
    request: Request,
    token: Viewer,
    limit: Limit = 100,
    target: Annotated[str | None, Query(max_length=200)] = None,
) -> list[dict[str, Any]]:
    return [_audit(e) for e in _store(request).audit_log(limit=limit, target=target)]
