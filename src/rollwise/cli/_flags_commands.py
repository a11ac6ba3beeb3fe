"""``rollwise flags list``, ``rollwise flags get FLAG``, ``rollwise kill FLAG`` and
``rollwise unkill FLAG``."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import yaml

from rollwise.cli._output import emit, table, when
from rollwise.cli._remote import Remote, RemoteError, add_connection, unknown_flag


def add_parsers(commands: Any) -> None:
    flags = commands.add_parser("flags", help="the server's flags")
    actions = flags.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="every flag: variants, kill switch, rollout")
    add_connection(listing)
    listing.set_defaults(run=run_list)
    get = actions.add_parser("get", help="one flag, with its definition")
    get.add_argument("flag")
    add_connection(get)
    get.set_defaults(run=run_get)

    for name, killed in (("kill", True), ("unkill", False)):
        kill = commands.add_parser(
            name,
            help="serve the safe default to everyone, now" if killed else "lift the kill switch",
        )
        kill.add_argument("flag")
        add_connection(kill)
        kill.set_defaults(run=run_kill, killed=killed)


def _rollout_cell(rollout: dict[str, Any] | None, now: datetime) -> str:
    if not rollout:
        return "—"
    stage = rollout.get("stage_name", rollout.get("stage"))
    return (
        f"{rollout['id']} {rollout['status']} at stage {stage}, "
        f"started {when(rollout.get('started_at'), now)}"
    )


def run_list(args: argparse.Namespace) -> int:
    with Remote(args) as remote:
        document = remote.call("GET", "/api/v1/flags")
    now = datetime.now(UTC)
    rows = [
        [
            flag["key"],
            ", ".join(flag.get("variants", [])),
            "KILLED" if flag.get("killed") else "no",
            _rollout_cell(flag.get("rollout"), now),
            flag.get("description", ""),
        ]
        for flag in document["flags"]
    ]
    text = (
        table(["flag", "variants", "killed", "rollout", "description"], rows)
        if rows
        else "no flags yet: rollwise apply FLAGS.yaml"
    )
    return emit(args, document, text)


def fetch_flag(remote: Remote, key: str) -> dict[str, Any]:
    """``GET /api/v1/flags/{key}``; a server without that path (404) is asked for the list."""
    try:
        return dict(remote.call("GET", f"/api/v1/flags/{quote(key, safe='')}"))
    except RemoteError as exc:
        if exc.status != 404:
            raise
    flags = remote.flags()
    for flag in flags:
        if flag["key"] == key:
            return flag
    raise unknown_flag(key, flags)


def describe_flag(flag: dict[str, Any], now: datetime) -> str:
    lines = [f"{flag['key']}: {flag['description']}" if flag.get("description") else flag["key"]]
    lines.append(f"  variants: {', '.join(flag.get('variants', []))}")
    killed = flag.get("killed")
    lines.append(f"  kill switch: {'ON: everyone gets the safe default' if killed else 'off'}")
    lines.append(f"  rollout: {_rollout_cell(flag.get('rollout'), now)}")
    definition = flag.get("definition")
    if definition:
        shown = yaml.safe_dump(definition, sort_keys=False, allow_unicode=True).rstrip()
        lines.append("  definition:")
        lines.extend(f"    {line}" for line in shown.splitlines())
    return "\n".join(lines)


def run_get(args: argparse.Namespace) -> int:
    with Remote(args) as remote:
        flag = fetch_flag(remote, args.flag)
    return emit(args, flag, describe_flag(flag, datetime.now(UTC)))


def run_kill(args: argparse.Namespace) -> int:
    with Remote(args) as remote:
        action = "kill" if args.killed else "unkill"
        path = f"/api/v1/flags/{quote(args.flag, safe='')}/{action}"
        result = remote.call("POST", path)
    if result.get("changed") is False:
        state = "already killed" if args.killed else "was not killed"
    elif args.killed:
        state = "killed: every SDK serves the safe default"
    else:
        state = "kill switch lifted"
    return emit(
        args, result, f"{args.flag}: {state} (snapshot version {result.get('snapshot_version')})"
    )
