"""A flag set written back as a flags document: what the server sends SDKs as a snapshot.

The document has the flags-file shape, as plain JSON-ready data; JSON is YAML, so the SDK reads
it with the same ``load_flags`` as a file (one parser, one set of checks). Round trip:
``load_flags(dump_flags(flags))`` evaluates exactly like ``flags``.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from rollwise.core._conditions import (
    AllOf,
    AnyOf,
    AttributeCondition,
    Condition,
    InSegment,
    Not,
)
from rollwise.core._flag import Flag, FlagSet, Rule, Split
from rollwise.core._operands import LIST_OPERATORS
from rollwise.core._semver import Version


def _operand(value: object) -> object:
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, Version):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def condition_document(condition: Condition) -> Any:
    """A condition in the flags-file condition language."""
    if isinstance(condition, AttributeCondition):
        values = [_operand(v) for v in condition.operand]
        operand = values if condition.operator in LIST_OPERATORS else values[0]
        return {condition.attribute: {condition.operator.value: operand}}
    if isinstance(condition, AllOf):
        return {"all": [condition_document(c) for c in condition.conditions]}
    if isinstance(condition, AnyOf):
        return {"any": [condition_document(c) for c in condition.conditions]}
    if isinstance(condition, Not):
        return {"not": condition_document(condition.condition)}
    if isinstance(condition, InSegment):
        return {"segment": condition.name}
    raise TypeError(f"cannot write a {type(condition).__name__}")


def _rule_document(rule: Rule) -> dict[str, Any]:
    document: dict[str, Any] = {}
    if rule.description:
        document["description"] = rule.description
    if rule.when is not None:
        document["when"] = condition_document(rule.when)
    if rule.percent is not None:
        document["percent"] = rule.percent
    if rule.unit is not None:
        document["unit"] = rule.unit
    document["serve"] = (
        {"split": dict(rule.serve.weights)} if isinstance(rule.serve, Split) else rule.serve
    )
    return document


def flag_document(flag: Flag) -> dict[str, Any]:
    document: dict[str, Any] = {
        "variants": {variant.name: variant.value for variant in flag.variants},
        "rules": [_rule_document(rule) for rule in flag.rules],
        "unit": flag.unit,
        "killed": flag.killed,
    }
    if flag.default is not None:
        document["default"] = flag.default
    if flag.salt is not None:
        document["salt"] = flag.salt
    if flag.min_app_version is not None:
        document["min_app_version"] = str(flag.min_app_version)
    if flag.description:
        document["description"] = flag.description
    return document


def flags_document(flags: FlagSet) -> dict[str, Any]:
    """The whole flag set as flags-file data (segments in their defining order)."""
    return {
        "segments": {
            name: {
                "when": condition_document(segment.condition),
                "description": segment.description,
            }
            for name, segment in flags.segments.items()
        },
        "metrics": {
            name: {"kind": metric.kind.value, "description": metric.description}
            for name, metric in flags.metrics.items()
        },
        "flags": {key: flag_document(flag) for key, flag in flags.flags.items()},
    }


def dump_flags(flags: FlagSet) -> str:
    """The flag set as a flags document in JSON text (which ``load_flags`` reads)."""
    return json.dumps(flags_document(flags), separators=(",", ":"), sort_keys=False)
