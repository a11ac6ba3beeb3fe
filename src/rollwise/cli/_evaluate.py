"""``rollwise evaluate FLAGS FLAG --context key=u1 tenant=acme [--json]``."""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from rollwise.cli._files import read_flags
from rollwise.core import BUCKETS, Context, InputError, explain

_WHOLE_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)", re.ASCII)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="explain which variant a context gets, and why",
        description="Evaluate a flag from a flags file for one context and explain the result.",
    )
    parser.add_argument("flags", help="the flags file (YAML)")
    parser.add_argument("flag", help="the flag key")
    parser.add_argument(
        "--context",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="context attributes; 'key' is the context key. Whole numbers and true/false are "
        "typed, everything else is text.",
    )
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON")
    parser.set_defaults(run=run)


def _typed(text: str) -> object:
    """Whole numbers and true/false are typed; everything else (``2.5``, an app version)
    stays text, so that version conditions see what the application would send."""
    if text in ("true", "false"):
        return text == "true"
    if _WHOLE_NUMBER.fullmatch(text):
        return int(text)
    return text


def parse_context(pairs: list[str]) -> Context:
    """``["key=u1", "tenant=acme"]`` → a Context."""
    attributes: dict[str, object] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise InputError(f"expected NAME=VALUE, got {pair!r}", path="--context")
        attributes[name] = value if name == "key" else _typed(value)
    return Context.of(attributes)


def run(args: argparse.Namespace) -> int:
    flags = read_flags(args.flags)
    flag = flags.flags.get(args.flag)
    if flag is None:
        known = ", ".join(sorted(flags.flags)) or "none"
        raise InputError(f"unknown flag {args.flag!r}; flags: {known}", source=args.flags)
    context = parse_context(args.context)
    explanation = explain(flag, context)
    resolution = explanation.resolution
    if args.json:
        print(
            json.dumps(
                {
                    "flag": flag.key,
                    "variant": resolution.variant,
                    "value": resolution.value,
                    "enabled": resolution.enabled,
                    "reason": resolution.reason.value,
                    "rule": resolution.rule,
                    "error": resolution.error.value if resolution.error else None,
                    "message": resolution.message,
                    "context": {"key": context.key, **dict(context.attributes)},
                    "steps": [
                        {
                            "rule": step.index,
                            "description": step.description,
                            "conditions_met": step.conditions_met,
                            "unit": step.unit,
                            "unit_value": step.unit_value,
                            "bucket": step.bucket,
                            "limit": step.limit,
                        }
                        for step in explanation.steps
                    ],
                },
                indent=2,
            )
        )
        return 0
    shown = " ".join(f"{k}={v}" for k, v in [("key", context.key), *context.attributes.items()])
    rule = f", rule {resolution.rule}" if resolution.rule is not None else ""
    print(f"{flag.key} → {resolution.variant}  ({resolution.reason.value}{rule})")
    print(f"  context: {shown}")
    if resolution.message:
        print(f"  {resolution.message}")
    for step in explanation.steps:
        mark = "✓" if step.conditions_met else "✗"
        print(f"  rule {step.index}: {step.description}")
        if not step.conditions_met:
            print(f"      {mark} conditions not met")
        elif step.bucket is not None and step.limit is not None:
            inside = "inside" if step.bucket < step.limit else "outside"
            print(
                f"      {mark} conditions met; {step.unit} {step.unit_value!r} is in bucket "
                f"{step.bucket:,} of {BUCKETS:,}: {inside} the first {step.limit:,}"
            )
        elif step.unit is not None and step.unit_value is None:
            print(f"      {mark} conditions met; the context has no {step.unit!r} to bucket by")
        else:
            print(f"      {mark} conditions met")
    if resolution.reason.value == "fallthrough":
        print(f"  no rule served a variant: the flag's default {resolution.variant!r}")
    return 0
