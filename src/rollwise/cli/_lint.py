"""``rollwise lint PLAN [--flags FLAGS] [--json]``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from rollwise.cli._files import read_flags, read_plan
from rollwise.core import Finding, Severity, lint


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "lint",
        help="check a plan for design mistakes before it runs",
        description="Check a plan. Exit 0: clean or warnings only; 1: errors; 2: unreadable input.",
    )
    parser.add_argument("plan", help="the plan file (YAML)")
    parser.add_argument("--flags", help="the flags file, to check segments, metrics and the flag")
    parser.add_argument("--json", action="store_true", help="print findings as JSON")
    parser.set_defaults(run=run)


def finding_document(f: Finding) -> dict[str, Any]:
    return {
        "code": f.code,
        "name": f.name,
        "severity": f.severity.value,
        "path": f.path,
        "line": f.line,
        "message": f.message,
        "docs": f.docs,
    }


def print_findings(source: str, findings: Sequence[Finding]) -> None:
    """Each finding with its line and the docs that explain it."""
    for f in findings:
        where = f"{source}:{f.line}" if f.line else source
        field = f" {f.path}:" if f.path else ""
        print(f"{where}: {f.severity.value} {f.code} {f.name}:{field} {f.message}")
        print(f"    why: {f.docs}")


def run(args: argparse.Namespace) -> int:
    plan = read_plan(args.plan)
    flags = read_flags(args.flags) if args.flags else None
    findings = lint(plan, flags)
    errors = sum(f.severity is Severity.ERROR for f in findings)
    if args.json:
        document = {
            "plan": args.plan,
            "ok": errors == 0,
            "findings": [finding_document(f) for f in findings],
        }
        print(json.dumps(document, indent=2))
    else:
        print_findings(args.plan, findings)
        counts = {s: sum(f.severity is s for f in findings) for s in Severity}
        summary = ", ".join(f"{n} {s.value}{'s' if n != 1 else ''}" for s, n in counts.items())
        verdict = "plan rejected" if errors else "plan ok"
        print(f"{args.plan}: {verdict} ({summary})")
    return 1 if errors else 0
