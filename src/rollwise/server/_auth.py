"""Bearer tokens and roles: admin ⊃ operator ⊃ viewer; SDK keys only read the snapshot and
post events."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from rollwise.store import Role, TokenRecord

_RANKS = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.ADMIN: 3}


def bearer(request: Request) -> str | None:
    """The secret of ``Authorization: Bearer <secret>``, or None."""
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    return secret.strip() or None if scheme.lower() == "bearer" else None


def authenticated(request: Request, secret: str | None, how: str) -> TokenRecord:
    """The live token with ``secret``. Reads the store: call it off the event loop.

    Raises:
        HTTPException: 401 without a secret (saying ``how`` to send one) or with an unknown,
            revoked or expired one.
    """
    if not secret:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, f"send {how}", headers={"WWW-Authenticate": "Bearer"}
        )
    token = request.app.state.store.authenticate(secret, request.app.state.clock.now())
    if token is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "unknown, revoked or expired token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return token  # type: ignore[no-any-return]


def admitted(token: TokenRecord, role: Role) -> TokenRecord:
    """``token`` if it may act as ``role``: that role or above, and an SDK key only as an SDK.

    Raises:
        HTTPException: 403, saying which role is needed.
    """
    if role is Role.SDK:
        if token.role is not Role.SDK:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "this endpoint is for SDK keys")
        return token
    if _RANKS.get(token.role, 0) < _RANKS[role]:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"needs {_article(role.value)} {role.value} token, "
            f"this is {_article(token.role.value)} {token.role.value} token",
        )
    return token


async def _token(request: Request) -> TokenRecord:
    """The request's token: on the event loop when the store knows it without reading (a
    token seen in the last second: nearly every SDK request), else read in a worker thread."""
    secret = bearer(request)
    if secret:
        kept = request.app.state.store.kept_token(secret, request.app.state.clock.now())
        if kept is not None:
            return kept  # type: ignore[no-any-return]
    return await run_in_threadpool(
        authenticated, request, secret, "'Authorization: Bearer <token>'"
    )


def requires(role: Role) -> Callable[..., Awaitable[TokenRecord]]:
    """A dependency admitting tokens of ``role`` or above (SDK keys: only ``Role.SDK``)."""

    async def check(token: TokenRecord = Depends(_token)) -> TokenRecord:  # noqa: B008
        return admitted(token, role)

    return check


def _article(word: str) -> str:
    # Said letter by letter: "an SDK", like "an admin".
    return "an" if word[:1] in ("a", "e", "i", "o", "u") or word == "sdk" else "a"


def actor(token: TokenRecord) -> str:
    """How the audit log names whoever used a token."""
    return f"{token.role.value}:{token.name}"
