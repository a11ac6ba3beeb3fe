"""``rollwise token create|list|revoke``: API tokens."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from rollwise.cli._output import emit, parse_time, relative, table, warn, when
from rollwise.cli._remote import Remote, add_connection
from rollwise.core import parse_duration

ROLES = ("admin", "operator", "viewer", "sdk")


def _lifetime(text: str) -> timedelta:
    """argparse type of --expires: a duration like 30d, 12h or 1w."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(commands: Any) -> None:
    token = commands.add_parser("token", help="API tokens")
    actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a token (its secret is shown once)")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", required=True)
    create.add_argument(
        "--expires",
        type=_lifetime,
        metavar="DURATION",
        help="the token stops working after this long, e.g. 30d or 12h (default: never)",
    )
    add_connection(create)
    create.set_defaults(run=run_create)
    listing = actions.add_parser("list", help="every token: role, created, expiry, revocation")
    add_connection(listing)
    listing.set_defaults(run=run_list)
    revoke = actions.add_parser("revoke", help="revoke a token: it stops working at once")
    revoke.add_argument("id", help="the token's id (see rollwise token list)")
    add_connection(revoke)
    revoke.set_defaults(run=run_revoke)


def run_create(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name, "role": args.role}
    if args.expires is not None:
        expires = datetime.now(UTC).replace(microsecond=0) + args.expires
        body["expires_at"] = expires.isoformat().replace("+00:00", "Z")
    with Remote(args) as remote:
        token = remote.call("POST", "/api/v1/tokens", json=body)
    expiry = ""
    if args.expires is not None:
        if token.get("expires_at"):
            expiry = f", expires {token['expires_at']}"
        else:
            warn("the server ignored --expires: this token does not expire (upgrade the server)")
    return emit(
        args,
        token,
        f"{token['role']} token {token['id']} ({token['name']}{expiry}): {token['secret']}\n"
        "(the secret is shown once; keep it)",
    )


def _state(token: dict[str, Any], now: datetime) -> str:
    revoked = parse_time(token.get("revoked_at"))
    if revoked is not None:
        return f"revoked {relative(revoked, now)}"
    expires = parse_time(token.get("expires_at"))
    if expires is None:
        return "active"
    if expires <= now:
        return f"expired {relative(expires, now)}"
    return f"active, expires {relative(expires, now)}"


def run_list(args: argparse.Namespace) -> int:
    with Remote(args) as remote:
        tokens = remote.call("GET", "/api/v1/tokens")
    now = datetime.now(UTC)
    rows = [
        [t["id"], t["name"], t["role"], when(t.get("created_at"), now), _state(t, now)]
        for t in tokens
    ]
    text = table(["id", "name", "role", "created", "state"], rows) if rows else "no tokens"
    return emit(args, tokens, text)


def run_revoke(args: argparse.Namespace) -> int:
    with Remote(args) as remote:
        result = remote.call("DELETE", f"/api/v1/tokens/{quote(args.id, safe='')}")
    state = "revoked" if result.get("changed", True) else "already revoked"
    return emit(args, result, f"token {args.id}: {state}")
