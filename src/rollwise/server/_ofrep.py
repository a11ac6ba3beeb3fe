"""OFREP: the OpenFeature Remote Evaluation Protocol, for applications in any language.

``POST /ofrep/v1/evaluate/flags/{key}`` evaluates one flag for a context (server-side
providers), ``POST /ofrep/v1/evaluate/flags`` every flag (client-side providers, with an ETag
for ``If-None-Match``), as ``open-feature/protocol``'s ``service/openapi.yaml`` (v0.3.0)
describes them. Authenticated with an SDK key, as ``Authorization: Bearer <key>`` or
``X-API-Key: <key>`` (the spec's two schemes).

The evaluation is the one the Python SDK runs: this replica's current snapshot, decoded once per
version by core from the same JSON the SDKs receive (``read_flags_document``), evaluated by
``rollwise.core.evaluate`` for the context ``openfeature_context`` makes of the request — the
conversion the in-process OpenFeature provider uses too. Reasons and error codes are
``rollwise.core._remote``'s. An evaluation of a flag a rollout runs on feeds the exposure ledger
(``_ofrep_state.RemoteExposures``), as an SDK's evaluation does.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse

from rollwise.core import Context, Flag, Reason, evaluate, unit_text
from rollwise.core._remote import OPENFEATURE_REASONS, openfeature_context, openfeature_error
from rollwise.server._auth import admitted, authenticated, bearer
from rollwise.server._ofrep_state import OfrepState, RateLimit, RemoteExposures, Served
from rollwise.store import Role, TokenRecord

router = APIRouter(prefix="/ofrep/v1", tags=["ofrep"])

#: The largest request body taken (a context), in bytes.
MAX_OFREP_BYTES = 64 * 1024
#: The most attributes a context may carry, and the longest attribute name.
MAX_ATTRIBUTES = 256
MAX_NAME_LENGTH = 256
#: Requests a second one SDK key may make, on average, before it is answered 429.
DEFAULT_RATE = 2_000.0
#: Resolutions that say nothing about a rollout's effect: no exposure is recorded for them.
_UNATTRIBUTABLE = frozenset(
    {Reason.KILLED, Reason.VERSION_BELOW_MINIMUM, Reason.UNIT_MISSING, Reason.ERROR}
)


class OfrepError(Exception):
    """A request OFREP answers with an error body: ``{key?, errorCode, errorDetails}``."""

    def __init__(self, status_code: int, code: str, details: str, key: str | None = None) -> None:
        super().__init__(details)
        self.status_code, self.code, self.details, self.key = status_code, code, details, key

    def response(self) -> JSONResponse:
        body: dict[str, object] = {"errorCode": self.code, "errorDetails": self.details}
        if self.key is not None:
            body = {"key": self.key, **body}
        return JSONResponse(body, status_code=self.status_code)


def _sdk_key(request: Request) -> TokenRecord:
    """An SDK key, as the spec's two schemes send it: bearer, or ``X-API-Key``."""
    secret = bearer(request) or request.headers.get("x-api-key", "").strip()
    how = "'Authorization: Bearer <sdk key>' or 'X-API-Key: <sdk key>'"
    return admitted(authenticated(request, secret, how), Role.SDK)


SdkKey = Annotated[TokenRecord, Depends(_sdk_key)]


def _limited(request: Request, token: TokenRecord) -> Response | None:
    limit: RateLimit | None = request.app.state.ofrep.limit
    if limit is None:
        return None
    wait = limit.retry_after(token.id, time.monotonic())
    if not wait:
        return None
    return JSONResponse(
        {
            "errorCode": "GENERAL",
            "errorDetails": f"more than {limit.rate:g} evaluations a second with this key",
        },
        status_code=429,
        headers={"Retry-After": str(wait)},
    )


# --- reading a request ---------------------------------------------------------------------


async def _context(request: Request, key: str | None) -> tuple[Context, tuple[str, ...]]:
    """The request's ``context``, as rollwise reads it.

    Raises:
        OfrepError: 400 ``PARSE_ERROR`` (not a JSON object) or ``INVALID_CONTEXT`` (no context
            object, a targeting key that is not text, too many attributes).
    """
    try:
        body = json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise OfrepError(400, "PARSE_ERROR", f"the body is not JSON: {exc}", key) from None
    if not isinstance(body, dict):
        raise OfrepError(400, "PARSE_ERROR", "the body must be a JSON object", key)
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise OfrepError(400, "INVALID_CONTEXT", "context must be a JSON object", key)
    if len(context) > MAX_ATTRIBUTES:
        raise OfrepError(
            400,
            "INVALID_CONTEXT",
            f"context has {len(context)} attributes, at most {MAX_ATTRIBUTES} are read",
            key,
        )
    long = next((name for name in context if len(name) > MAX_NAME_LENGTH), None)
    if long is not None:
        raise OfrepError(
            400,
            "INVALID_CONTEXT",
            f"attribute name {long[:40]!r}… is over {MAX_NAME_LENGTH} characters",
            key,
        )
    attributes = dict(context)
    targeting_key = attributes.pop("targetingKey", None)
    if targeting_key is not None and not isinstance(targeting_key, str):
        raise OfrepError(
            400,
            "INVALID_CONTEXT",
            f"targetingKey must be text, got {type(targeting_key).__name__}",
            key,
        )
    return openfeature_context(targeting_key, attributes)


def _evaluated(
    flag: Flag,
    context: Context,
    ignored: tuple[str, ...],
    served: Served,
    exposures: RemoteExposures,
    now: datetime,
) -> tuple[int, dict[str, Any]]:
    """One flag's OFREP item and its HTTP status (200 or the failure's), with the exposure
    recorded when a rollout runs on the flag."""
    resolution = evaluate(flag, context)
    metadata: dict[str, bool | int | float | str] = {
        "rollwise.reason": str(resolution.reason),
        "rollwise.version": served.version,
    }
    if resolution.rule is not None:
        metadata["rollwise.rule"] = resolution.rule
    if ignored:
        metadata["rollwise.ignored_attributes"] = ", ".join(ignored)
    error = openfeature_error(resolution, flag, context)
    if error is not None:
        item = {
            "key": flag.key,
            "errorCode": error,
            "errorDetails": resolution.message or _missing_key_message(flag.key),
            "metadata": metadata,
        }
        return (500 if error == "GENERAL" else 400), item
    rollouts = served.exposing.get(flag.key)
    if rollouts and resolution.reason not in _UNATTRIBUTABLE:
        for rollout in rollouts:
            unit = unit_text(context.values.get(rollout.unit))
            if unit is not None:
                exposures.add(rollout, unit, resolution.variant == rollout.variant, now)
    return 200, {
        "key": flag.key,
        "value": resolution.value,
        "reason": OPENFEATURE_REASONS.get(resolution.reason, "UNKNOWN"),
        "variant": resolution.variant,
        "metadata": metadata,
    }


def _missing_key_message(flag: str) -> str:
    return f"flag {flag!r} buckets by the targeting key, and the context has none"


# --- the routes ----------------------------------------------------------------------------

_FAILURE = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "key": {"type": "string"},
                    "errorCode": {"type": "string"},
                    "errorDetails": {"type": "string"},
                },
                "required": ["errorCode"],
            }
        }
    }
}


@router.post(
    "/evaluate/flags/{key}",
    responses={
        400: {"description": "PARSE_ERROR, INVALID_CONTEXT or TARGETING_KEY_MISSING", **_FAILURE},
        404: {"description": "FLAG_NOT_FOUND", **_FAILURE},
        429: {"description": "too many evaluations with this key: see Retry-After (seconds)"},
    },
)
async def evaluate_flag(key: str, request: Request, token: SdkKey) -> Response:
    """Evaluate one flag for the request's ``context`` (OFREP ``evaluateFlag``)."""
    asked = await _asked(request, token, key)
    if isinstance(asked, Response):
        return asked
    flag = asked.served.flags.flags.get(key)
    if flag is None:
        return OfrepError(404, "FLAG_NOT_FOUND", f"flag {key!r} was not found", key).response()
    code, item = _evaluated(
        flag,
        asked.context,
        asked.ignored,
        asked.served,
        asked.exposures,
        request.app.state.clock.now(),
    )
    # A 500 carries the spec's ``errorDetails``, and the key and code as a failure does.
    return JSONResponse(item, status_code=code)


@router.post(
    "/evaluate/flags",
    responses={
        304: {"description": "nothing changed since the ETag in If-None-Match"},
        400: {"description": "PARSE_ERROR or INVALID_CONTEXT", **_FAILURE},
        429: {"description": "too many evaluations with this key: see Retry-After (seconds)"},
    },
)
async def evaluate_flags(request: Request, token: SdkKey) -> Response:
    """Evaluate every flag for the request's ``context`` (OFREP ``evaluateFlagsBulk``). The
    ETag names the snapshot version and the context, so ``If-None-Match`` with it is answered
    304 until either changes."""
    asked = await _asked(request, token, None)
    if isinstance(asked, Response):
        return asked
    context, served = asked.context, asked.served
    digest = hashlib.sha256(
        json.dumps(
            [context.key, sorted(context.attributes.items())], separators=(",", ":")
        ).encode()
    ).hexdigest()[:20]
    etag = f'"{served.version}-{digest}"'
    if etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers={"ETag": etag})
    now = request.app.state.clock.now()
    items = []
    for flag_key in sorted(served.flags.flags):
        _, item = _evaluated(
            served.flags.flags[flag_key], context, asked.ignored, served, asked.exposures, now
        )
        items.append(item)
    return JSONResponse(
        {"flags": items, "metadata": {"version": served.version}}, headers={"ETag": etag}
    )


@dataclass(frozen=True, slots=True)
class _Asked:
    """A request let through, read: the context, and the snapshot it is evaluated against."""

    context: Context
    ignored: tuple[str, ...]
    served: Served
    exposures: RemoteExposures


async def _asked(request: Request, token: TokenRecord, key: str | None) -> _Asked | Response:
    """The request's context and the snapshot to evaluate, or the answer that refuses it (429
    past the key's rate, 400 for a body or context that cannot be read)."""
    limited = _limited(request, token)
    if limited is not None:
        return limited
    state: OfrepState = request.app.state.ofrep
    try:
        context, ignored = await _context(request, key)
        served = await _served(request, state)
    except OfrepError as exc:
        return exc.response()
    return _Asked(context, ignored, served, state.exposures)


async def _served(request: Request, state: OfrepState) -> Served:
    served = state._served
    if served is not None and served.version >= request.app.state.versions.current:
        return served
    return await asyncio.to_thread(state.served, request.app)


def _etags(header: str) -> set[str]:
    """The entity tags of an ``If-None-Match`` header (weak ones compared as strong)."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}
