"""``rollwise apply FILE [--dry-run] [--prune]``: a flags file onto the server, or a plan
stored for later."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from rollwise.cli._files import read_text
from rollwise.cli._lint import finding_document, print_findings
from rollwise.cli._output import emit
from rollwise.cli._remote import Remote, RemoteError, add_connection
from rollwise.core import InputError, Severity, lint, load_plan

_MARKS = {"added": "+", "removed": "-", "changed": "~"}


def add_parser(commands: Any) -> None:
    apply = commands.add_parser(
        "apply",
        help="apply a flags file, or store a plan, on the server",
        description=(
            "A flags file becomes the server's flags, and each change is listed (a flag the "
            "file leaves out is refused unless --prune); a plan (a file with stages) is stored "
            "as the next version for its flag."
        ),
    )
    apply.add_argument("file", help="a flags file or a plan (YAML)")
    apply.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would change and apply nothing (a plan is linted here, not sent)",
    )
    apply.add_argument(
        "--prune",
        action="store_true",
        help="flags files: remove the server's flags the file does not name",
    )
    add_connection(apply)
    apply.set_defaults(run=run)


def _is_plan(text: str) -> bool:
    try:
        shape = yaml.safe_load(text)
    except yaml.YAMLError:
        return False  # the server's parser names the line
    return isinstance(shape, dict) and "stages" in shape


def run(args: argparse.Namespace) -> int:
    text = read_text(args.file)
    if _is_plan(text):
        return _apply_plan(args, text)
    with Remote(args) as remote:
        if args.dry_run or args.prune:
            _require_support(remote, args)
        result = remote.call(
            "PUT",
            "/api/v1/flags",
            content=text.encode(),
            params={"dry_run": _flag(args.dry_run), "prune": _flag(args.prune)},
        )
    return emit(args, result, describe_apply(args.file, result))


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _apply_plan(args: argparse.Namespace, text: str) -> int:
    if args.prune:
        raise InputError(
            f"{args.file} is a plan: --prune applies to flags files (a plan replaces nothing)",
            path="--prune",
        )
    if args.dry_run:
        plan = load_plan(text, args.file)
        findings = lint(plan)
        errors = sum(f.severity is Severity.ERROR for f in findings)
        if args.json:
            document = {
                "plan": args.file,
                "dry_run": True,
                "ok": errors == 0,
                "findings": [finding_document(f) for f in findings],
            }
            emit(args, document, "")
            return 1 if errors else 0
        print_findings(args.file, findings)
        verdict = "would be refused" if errors else "would be stored"
        print(f"{args.file}: dry run, nothing stored: the plan for {plan.flag} {verdict}")
        return 1 if errors else 0
    with Remote(args) as remote:
        plan_record = remote.call("POST", "/api/v1/plans", content=text.encode())
    message = (
        f"stored plan {plan_record['id']} (version {plan_record['version']} "
        f"for {plan_record['flag']})"
    )
    return emit(args, plan_record, message)


def _require_support(remote: Remote, args: argparse.Namespace) -> None:
    """An older server ignores ``dry_run`` and would apply the file for real: ask its OpenAPI
    document first. A server that does not publish one is trusted."""
    try:
        document = remote.call("GET", "/openapi.json")
    except RemoteError as exc:
        if exc.status is None:
            raise
        return
    operation = (document or {}).get("paths", {}).get("/api/v1/flags", {}).get("put", {})
    known = {p.get("name") for p in operation.get("parameters", []) if isinstance(p, dict)}
    asked = [name for name, on in (("dry_run", args.dry_run), ("prune", args.prune)) if on]
    missing = [name for name in asked if name not in known]
    if operation and missing:
        options = " and ".join(f"--{name.replace('_', '-')}" for name in missing)
        raise RemoteError(
            f"the server at {remote.url} does not support {options} on PUT /api/v1/flags "
            "(it would apply the file as it is): nothing was sent; upgrade the server"
        )


def describe_apply(file: str, result: dict[str, Any]) -> str:
    """One line per change (``+ flag x (added)``, ``~ flag y: variant 'beta' added``,
    ``- segment eu (removed)``), then whether anything was applied."""
    version = result.get("snapshot_version")
    if "changes" not in result:  # a server from before change lists
        return f"applied {file}: snapshot version {version}"
    lines: list[str] = []
    for change in result["changes"]:
        kind = str(change.get("change", "changed"))
        mark = _MARKS.get(kind, "~")
        # Flags, and on servers that list them, segments and metrics.
        what = f"{change.get('kind') or 'flag'} {change.get('name') or change.get('flag')}"
        details = [str(d) for d in change.get("details") or []]
        if kind == "changed" and details:
            lines.extend(f"{mark} {what}: {detail}" for detail in details)
        else:
            lines.append(f"{mark} {what} ({kind})")
    if result.get("dry_run"):
        if result.get("changed"):
            lines.append(f"dry run: nothing was applied (snapshot version stays {version})")
        else:
            lines.append(f"dry run: no changes, nothing applied (snapshot version {version})")
    elif result.get("changed"):
        lines.append(f"applied {file}: snapshot version {version}")
    else:
        lines.append(f"no changes: {file} matches the server (snapshot version {version})")
    return "\n".join(lines)
