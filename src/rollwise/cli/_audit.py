"""``rollwise audit [--limit N] [--target FLAG]``: the audit log, newest first."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rollwise.cli._output import emit
from rollwise.cli._remote import Remote, add_connection


def add_parser(commands: Any) -> None:
    audit = commands.add_parser("audit", help="the audit log, newest first")
    audit.add_argument("--limit", type=int, default=50, help="at most this many (1 to 1000)")
    audit.add_argument("--target", help="only entries about this flag or token")
    add_connection(audit)
    audit.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"limit": args.limit}
    if args.target:
        params["target"] = args.target
    with Remote(args) as remote:
        entries = remote.call("GET", "/api/v1/audit", params=params)
    text = "\n".join(
        f"{e['at']}  {e['actor']:<24} {e['action']:<18} {e['target']}  {json.dumps(e['details'])}"
        for e in entries
    )
    return emit(args, entries, text or "the audit log is empty")
