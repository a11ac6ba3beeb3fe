"""The management API's tokens: create (the secret shown once), list, revoke."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

from rollwise.server._auth import actor, requires
from rollwise.server._management import _now, _store
from rollwise.store import Role, TokenRecord

router = APIRouter(prefix="/api/v1", tags=["management"])
Admin = Annotated[TokenRecord, Depends(requires(Role.ADMIN))]
#: Token expiry: at most this far ahead.
MAX_TOKEN_LIFETIME = timedelta(days=5 * 366)


def _iso_text(value: object) -> object:
    """Times come as ISO 8601 text, never as bare numbers (seconds? milliseconds?)."""
    if value is not None and not isinstance(value, str):
        raise ValueError("give expires_at as ISO 8601 text, e.g. 2027-03-01T00:00:00Z")
    return value


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")
    role: Role = Field(strict=False)
    expires_at: Annotated[AwareDatetime | None, BeforeValidator(_iso_text)] = Field(
        default=None, strict=False
    )


def _token_dict(record: TokenRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "role": record.role.value,
        "created_at": record.created_at.isoformat(),
        "expires_at": record.expires_at.isoformat() if record.expires_at else None,
        "revoked_at": record.revoked_at.isoformat() if record.revoked_at else None,
    }


@router.post("/tokens", status_code=201)
def create_token(body: NewToken, request: Request, token: Admin) -> dict[str, Any]:
    """A new token; its secret is shown once, in this response. ``expires_at`` (optional) must
    lie in the future, at most five years ahead."""
    now = _now(request)
    if body.expires_at is not None and not now < body.expires_at <= now + MAX_TOKEN_LIFETIME:
        raise HTTPException(422, "expires_at must lie in the future and at most five years ahead")
    record, secret = _store(request).create_token(
        body.name, body.role, actor(token), now, body.expires_at
    )
    return {**_token_dict(record), "secret": secret}


@router.get("/tokens")
def list_tokens(request: Request, token: Admin) -> list[dict[str, Any]]:
    """Every stored token, live, expired or revoked; never a secret."""
    return [_token_dict(record) for record in _store(request).tokens()]


TokenId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-z]+$")]


@router.delete("/tokens/{token_id}")
def revoke_token(token_id: TokenId, request: Request, token: Admin) -> dict[str, Any]:
    """Revoke a token at once. Revoking a revoked token changes nothing (``changed: false``)."""
    record, changed = _store(request).revoke_token(token_id, actor(token), _now(request))
    return {**_token_dict(record), "changed": changed}
