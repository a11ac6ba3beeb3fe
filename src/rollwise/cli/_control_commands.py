"""Commands that act on a running server: apply, rollout …, kill, unkill, audit, token."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import yaml

from rollwise.cli._remote import Remote, RemoteError, add_connection
from rollwise.core import load_plan


def add_parsers(commands: Any) -> None:
    apply = commands.add_parser("apply", help="apply a flags file, or store a plan, on the server")
    apply.add_argument("file", help="a flags file or a plan (YAML)")
    add_connection(apply)
    apply.set_defaults(run=run_apply)

    rollout = commands.add_parser("rollout", help="start, watch and steer rollouts")
    actions = rollout.add_subparsers(dest="action", required=True, metavar="ACTION")
    start = actions.add_parser("start", help="start a rollout of FLAG with a plan")
    start.add_argument("flag")
    start.add_argument("--plan", required=True, help="the plan file (YAML)")
    add_connection(start)
    start.set_defaults(run=run_start)
    status = actions.add_parser("status", help="the rollout's stage, guards and next decision")
    status.add_argument("flag")
    status.add_argument("--watch", action="store_true", help="refresh until the rollout ends")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    add_connection(status)
    status.set_defaults(run=run_status)
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

    for name, killed in (("kill", True), ("unkill", False)):
        kill = commands.add_parser(
            name,
            help="serve the safe default to everyone, now" if killed else "lift the kill switch",
        )
        kill.add_argument("flag")
        add_connection(kill)
        kill.set_defaults(run=run_kill, killed=killed)

    audit = commands.add_parser("audit", help="the audit log, newest first")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--target", help="only entries about this flag or token")
    add_connection(audit)
    audit.set_defaults(run=run_audit)

    token = commands.add_parser("token", help="API tokens")
    token_actions = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = token_actions.add_parser("create", help="create a token (its secret is shown once)")
    create.add_argument("--role", required=True, choices=["admin", "operator", "viewer", "sdk"])
    create.add_argument("--name", required=True)
    add_connection(create)
    create.set_defaults(run=run_token_create)


def _print(args: argparse.Namespace, data: Any, text: str) -> int:
    print(json.dumps(data, indent=2) if args.json else text)
    return 0


def run_apply(args: argparse.Namespace) -> int:
    text = Path(args.file).read_text(encoding="utf-8")
    try:
        shape = yaml.safe_load(text)
    except yaml.YAMLError:
        shape = None
    with Remote(args) as remote:
        if isinstance(shape, dict) and "stages" in shape:
            plan = remote.call("POST", "/api/v1/plans", content=text.encode())
            message = f"stored plan {plan['id']} (version {plan['version']} for {plan['flag']})"
            return _print(args, plan, message)
        result = remote.call("PUT", "/api/v1/flags", content=text.encode())
    return _print(
        args, result, f"applied {args.file}: snapshot version {result['snapshot_version']}"
    )


def run_start(args: argparse.Namespace) -> int:
    text = Path(args.plan).read_text(encoding="utf-8")
    plan = load_plan(text, args.plan)
    if plan.flag != args.flag:
        raise RemoteError(f"{args.plan} is a plan for {plan.flag!r}, not {args.flag!r}")
    with Remote(args) as remote:
        stored = remote.call("POST", "/api/v1/plans", content=text.encode())
        rollout = remote.call("POST", "/api/v1/rollouts", json={"plan_id": stored["id"]})
    return _print(
        args,
        rollout,
        f"started rollout {rollout['id']} of {args.flag} at stage {plan.stages[0].name!r}",
    )


def _bound(value: float | None) -> str:
    if value is None:
        return "?"
    if value < 1e-3 or value > 1e3:
        return "—"
    return f"{value:.3g}"


def render_status(rollout: dict[str, Any]) -> str:
    """The rollout as a person reads it: stage, exposure, guards, what it waits for."""
    stages = rollout["plan"]["stages"]
    unit = rollout["plan"]["unit"]
    lines = [f"{rollout['flag']}: rollout {rollout['id']} {rollout['status']} (unit {unit})"]
    for index, stage in enumerate(stages):
        audience = ", ".join(
            [*stage["segments"], *([f"{stage['percent']:g}%"] if stage["percent"] else [])]
        )
        marker = "▶" if index == rollout["stage"] else ("✓" if index < rollout["stage"] else " ")
        lines.append(f"  {marker} {stage['name']:<16} {audience}")
    decision = rollout.get("current") or rollout.get("decision")
    if decision is None:
        lines.append("  no decision yet")
        return "\n".join(lines)
    label = "now" if rollout.get("current") else "last decision"
    lines.append(f"  {label} ({decision['at']}): {decision['move']}")
    for verdict in decision["evidence"].get("verdicts", []):
        bounds = ""
        if verdict.get("lower") is not None:
            low, high = _bound(verdict["lower"]), _bound(verdict["upper"])
            bounds = f" [{low}, {high}] vs {_bound(verdict.get('threshold'))}"
        lines.append(f"    {verdict['verdict']:<8} {verdict['sentence']}{bounds}")
    for verdict in decision["evidence"].get("segments", []):
        lines.append(f"    {verdict['verdict']:<8} {verdict['sentence']}")
    waiting = [g["sentence"] for g in decision["evidence"].get("gates", []) if not g["met"]]
    if waiting:
        lines.append("  waiting for: " + "; ".join(waiting))
    for reason in decision["reasons"]:
        lines.append(f"  · {reason}")
    return "\n".join(lines)


def run_status(args: argparse.Namespace) -> int:
    with Remote(args) as remote:
        return _watch(args, remote)


def _watch(args: argparse.Namespace, remote: Remote) -> int:
    while True:
        rollout = remote.rollout_of(args.flag)
        if args.json:
            print(json.dumps(rollout, indent=2))
        else:
            if args.watch:
                print("\033[2J\033[H", end="")
            print(render_status(rollout))
        if not args.watch or rollout["status"] in ("rolled_back", "completed"):
            return 0
        time.sleep(args.interval)


def run_change(args: argparse.Namespace) -> int:
    with Remote(args) as remote:
        rollout = remote.rollout_of(args.flag)
        path = f"/api/v1/rollouts/{rollout['id']}/{args.change}"
        after = remote.call("POST", path, json={"reason": args.reason})
    return _print(args, after, f"{args.flag}: rollout {after['id']} is {after['status']}")


def run_approve(args: argparse.Namespace) -> int:
    with Remote(args) as remote:
        rollout = remote.rollout_of(args.flag)
        path = f"/api/v1/rollouts/{rollout['id']}/approve"
        after = remote.call("POST", path, json={"stage": args.stage})
    return _print(args, after, f"{args.flag}: approved entering {args.stage!r}")


def run_kill(args: argparse.Namespace) -> int:
    with Remote(args) as remote:
        path = f"/api/v1/flags/{args.flag}/{'kill' if args.killed else 'unkill'}"
        result = remote.call("POST", path)
    state = "killed: every SDK serves the safe default" if args.killed else "kill switch lifted"
    return _print(
        args, result, f"{args.flag}: {state} (snapshot version {result['snapshot_version']})"
    )


def run_audit(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.target:
        params["target"] = args.target
    with Remote(args) as remote:
        entries = remote.call("GET", "/api/v1/audit", params=params)
    text = "\n".join(
        f"{e['at']}  {e['actor']:<24} {e['action']:<18} {e['target']}  {json.dumps(e['details'])}"
        for e in entries
    )
    return _print(args, entries, text or "the audit log is empty")


def run_token_create(args: argparse.Namespace) -> int:
    with Remote(args) as remote:
        body = {"name": args.name, "role": args.role}
        token = remote.call("POST", "/api/v1/tokens", json=body)
    return _print(
        args,
        token,
        f"{token['role']} token {token['id']} ({token['name']}): {token['secret']}\n"
        "(the secret is shown once; keep it)",
    )
