"""The management API's flags: apply a flags file, read the flags, and the kill switches
(announced to every SDK stream the moment they are stored)."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request

from rollwise.core._flagdump import flag_document
from rollwise.server._auth import actor
from rollwise.server._management import YAML_BODY, Operator, Viewer, _now, _rollout, _store, _text
from rollwise.store import TokenRecord

router = APIRouter(prefix="/api/v1", tags=["management"])


@router.put("/flags", openapi_extra=YAML_BODY)
async def apply_flags(
    request: Request, token: Operator, dry_run: bool = False, prune: bool = False
) -> dict[str, Any]:
    """Apply a flags file (YAML body), checked against the live rollouts in the transaction
    that stores it. Invalid: 422 naming the line and field path. A file that would leave a live
    rollout's flag, variant, unit or segments undefined, or that drops flags without
    ``prune=true``: 409 naming each conflict. An identical file changes nothing (the version
    stays). ``dry_run=true`` reports the changes and stores nothing."""
    text = await _text(request, "flags file")
    # In a thread: the store blocks, and the event loop must keep serving SDKs and kill switches.
    applied = await asyncio.to_thread(
        partial(
            _store(request).apply_flags,
            text,
            "api",
            actor(token),
            _now(request),
            dry_run=dry_run,
            prune=prune,
        )
    )
    if applied.changed and not applied.dry_run:
        request.app.state.versions.publish(applied.snapshot_version)  # on the event loop here
    return {
        "snapshot_version": applied.snapshot_version,
        "changed": applied.changed,
        "dry_run": applied.dry_run,
        "changes": [change.as_dict() for change in applied.changes],
    }


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


FlagKey = Annotated[str, Path(min_length=1, max_length=200, description="a flag's key")]


@router.get("/flags/{key:path}")
def get_flag(key: FlagKey, request: Request, token: Viewer) -> dict[str, Any]:
    """One flag: its definition as applied, kill switch and latest rollout."""
    store = _store(request)
    flag = store.flags().flags.get(key)
    if flag is None:
        raise HTTPException(404, f"unknown flag {key!r}")
    latest = [r for r in store.rollouts() if r.flag == key]
    return {
        "key": flag.key,
        "description": flag.description,
        "variants": [v.name for v in flag.variants],
        "killed": flag.killed,
        "rollout": _rollout(latest[-1]) if latest else None,
        "definition": flag_document(flag),
    }


def _switch(request: Request, key: str, token: TokenRecord, killed: bool) -> dict[str, Any]:
    version, changed = _store(request).set_killed(key, killed, actor(token), _now(request))
    if changed:
        request.app.state.versions.announce(version, (key, killed))
    message = (
        ("killed" if killed else "kill switch lifted")
        if changed
        else ("already killed" if killed else "was not killed")
    )
    return {
        "flag": key,
        "killed": killed,
        "changed": changed,
        "message": message,
        "snapshot_version": version,
    }


@router.post("/flags/{key:path}/kill")
def kill(key: FlagKey, request: Request, token: Operator) -> dict[str, Any]:
    """The kill switch: every SDK serves the flag's safe default. Idempotent: killing a killed
    flag changes nothing and says so (``changed: false``)."""
    return _switch(request, key, token, True)


@router.post("/flags/{key:path}/unkill")
def unkill(key: FlagKey, request: Request, token: Operator) -> dict[str, Any]:
    """Lift the kill switch. Idempotent, like kill."""
    return _switch(request, key, token, False)
