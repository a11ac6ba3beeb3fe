"""``rollwise rollout start|status|list|pause|resume|rollback|approve``."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from rollwise.cli import _watch
from rollwise.cli._files import read_text
from rollwise.cli._output import emit, table, when
from rollwise.cli._remote import Remote, RemoteError, add_connection
from rollwise.core import InputError, load_plan


def add_parser(commands: Any) -> None:
    rollout = commands.add_parser("rollout", help="start, watch and steer rollouts")
    actions = rollout.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="start a rollout of FLAG with a plan")
    start.add_argument("flag")
    start.add_argument("--plan", required=True, help="the plan file (YAML)")
    add_connection(start)
    start.set_defaults(run=run_start)
    _watch.add_parser(actions)
    listing = actions.add_parser("list", help="rollouts, newest first")
    listing.add_argument("--live", action="store_true", help="only running and paused ones")
    add_connection(listing)
    listing.set_defaults(run=run_list)
    for name, help_text in (
        ("pause", "pause the rollout (exposure stays as it is)"),
        ("resume", "resume a paused rollout"),
        ("rollback", "roll the rollout back: everyone gets the rollback variant"),
    ):
        change = actions.add_parser(name, help=help_text)
        change.add_argument("flag")
        change.add_argument("--reason", default="", help="why, for the audit log")
        add_connection(change)
        change.set_defaults(run=run_change, change=name)
    approve = actions.add_parser("approve", help="approve entering a stage that requires it")
    approve.add_argument("flag")
    approve.add_argument("stage")
    add_connection(approve)
    approve.set_defaults(run=run_approve)


def _needs_plan_id(exc: RemoteError) -> bool:
    """A server from before one-request starts refuses ``{"plan": …}`` for want of plan_id."""
    if exc.status != 422:
        return False
    detail = exc.body.get("detail") if isinstance(exc.body, dict) else None
    if isinstance(detail, list):
        return any(
            isinstance(item, dict) and list(item.get("loc", []))[-1:] == ["plan_id"]
            for item in detail
        )
    return "plan_id" in exc.message


def run_start(args: argparse.Namespace) -> int:
    text = read_text(args.plan)
    plan = load_plan(text, args.plan)
    if plan.flag != args.flag:
        raise InputError(f"{args.plan} is a plan for {plan.flag!r}, not {args.flag!r}")
    with Remote(args) as remote:
        try:
            # One request: the server stores the plan and starts in one transaction, so a
            # refused start leaves no stored plan behind.
            rollout = remote.call("POST", "/api/v1/rollouts", json={"plan": text})
        except RemoteError as exc:
            if not _needs_plan_id(exc):
                raise
            stored = remote.call("POST", "/api/v1/plans", content=text.encode())
            rollout = remote.call("POST", "/api/v1/rollouts", json={"plan_id": stored["id"]})
    return emit(
        args,
        rollout,
        f"started rollout {rollout['id']} of {args.flag} at stage {plan.stages[0].name!r}",
    )


def run_list(args: argparse.Namespace) -> int:
    with Remote(args) as remote:
        rollouts = remote.call(
            "GET", "/api/v1/rollouts", params={"live": "true" if args.live else "false"}
        )
    now = datetime.now(UTC)
    rows = [
        [
            r["id"],
            r["flag"],
            r["status"],
            r.get("stage_name", r.get("stage")),
            when(r.get("started_at"), now),
            when(r.get("ended_at"), now),
        ]
        for r in sorted(rollouts, key=lambda r: r["id"], reverse=True)
    ]
    empty = "no live rollouts" if args.live else "no rollouts yet"
    text = table(["id", "flag", "status", "stage", "started", "ended"], rows) if rows else empty
    return emit(args, rollouts, text)


def run_change(args: argparse.Namespace) -> int:
    with Remote(args) as remote:
        rollout = remote.rollout_of(args.flag)
        path = f"/api/v1/rollouts/{rollout['id']}/{args.change}"
        after = remote.call("POST", path, json={"reason": args.reason})
    return emit(args, after, f"{args.flag}: rollout {after['id']} is {after['status']}")


def run_approve(args: argparse.Namespace) -> int:
    with Remote(args) as remote:
        rollout = remote.rollout_of(args.flag)
        path = f"/api/v1/rollouts/{rollout['id']}/approve"
        after = remote.call("POST", path, json={"stage": args.stage})
    return emit(args, after, f"{args.flag}: approved entering {args.stage!r}")
