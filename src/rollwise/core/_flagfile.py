"""Flag files: YAML with segments, metrics and flags → a validated ``FlagSet``.

See ``docs/flags.md`` for the format. Errors name the file, line and field path. The same
document decoded from JSON (a server's snapshot) is read by the same parsers through the same
``Node`` interface (``rollwise.core._decoded``), so it is held to the same checks.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time

from rollwise.core._bucketing import is_bucket_exact
from rollwise.core._conditions import (
    AllOf,
    AnyOf,
    AttributeCondition,
    Condition,
    InSegment,
    Not,
)
from rollwise.core._document import Fields, Node, load_document
from rollwise.core._flag import Flag, FlagSet, Metric, MetricKind, Rule, Segment, Split, Variant
from rollwise.core._operands import LIST_OPERATORS, Operator, to_timestamp
from rollwise.core._quantities import parse_percent
from rollwise.core._semver import parse_version

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/-]*")
_COMBINATORS = ("all", "any", "not", "segment")
_OPERATORS = ", ".join(op.value for op in Operator)


#: Longest key or name (the store keeps flag keys and metric names in 200-character columns).
MAX_NAME = 200


def check_name(node: Node, what: str, text: str | None = None) -> str:
    """A key, variant, segment, metric or window name: letters, digits and ``_ . : / -``.

    ``text`` is the name when it is a mapping key (``node`` is then the value under it)."""
    name = node.text(what) if text is None else text
    if len(name) > MAX_NAME:
        raise node.error(f"{what} is {len(name)} characters long; at most {MAX_NAME} are allowed")
    if not _NAME.fullmatch(name):
        raise node.error(
            f"{what} {name!r} may hold only letters, digits and _ . : / - "
            f"(and must start with a letter or digit)"
        )
    return name


def scalar(node: Node) -> object:
    """A typed scalar, except that YAML 1.1's yes/no/on/off stay text (they are usually names)."""
    return node.scalar()


def percent(node: Node) -> float:
    try:
        value = parse_percent(scalar(node))
    except ValueError as exc:
        raise node.error(str(exc)) from None
    if not is_bucket_exact(value):
        raise node.error(f"{value:g}% is finer than a bucket; use a multiple of 0.001%")
    return value


# --- conditions ------------------------------------------------------------------------------


def parse_condition(node: Node, segments: Mapping[str, Segment]) -> Condition:
    """A condition: a list (all must hold) or a mapping of combinators and attributes."""
    if node.is_sequence:
        items = node.sequence()
        if not items:
            raise node.error("expected at least one condition, got an empty list")
        parts = tuple(parse_condition(item, segments) for item in items)
        return parts[0] if len(parts) == 1 else AllOf(parts)
    entries = node.mapping("a condition (a mapping like {tenant: {in: [acme]}}, or a list of them)")
    if not entries:
        raise node.error("expected a condition, got an empty mapping")
    parts_list: list[Condition] = []
    for name, value in entries.items():
        parts_list.append(_parse_entry(name, value, segments))
    return parts_list[0] if len(parts_list) == 1 else AllOf(tuple(parts_list))


def _parse_entry(name: str, value: Node, segments: Mapping[str, Segment]) -> Condition:
    if name == "all" or name == "any":
        items = value.sequence(f"a list of conditions under {name!r}")
        if not items:
            raise value.error(f"{name!r} needs at least one condition")
        parts = tuple(parse_condition(item, segments) for item in items)
        return AllOf(parts) if name == "all" else AnyOf(parts)
    if name == "not":
        return Not(parse_condition(value, segments))
    if name == "segment":
        segment_name = value.text("a segment name")
        segment = segments.get(segment_name)
        if segment is None:
            known = ", ".join(sorted(segments)) or "none are defined"
            raise value.error(f"unknown segment {segment_name!r}; known segments: {known}")
        return InSegment(segment_name, segment.condition)
    attribute = name
    if value.is_mapping:
        tests = [_parse_operator(attribute, op, operand) for op, operand in value.mapping().items()]
        if not tests:
            raise value.error(f"expected an operator for {attribute!r}, e.g. {{in: [a, b]}}")
        return tests[0] if len(tests) == 1 else AllOf(tuple(tests))
    # Shorthand: ``tenant: acme`` means equals, ``tenant: [acme, globex]`` means in.
    if value.is_sequence:
        return _parse_operator(attribute, "in", value)
    return _parse_operator(attribute, "equals", value)


def _parse_operator(attribute: str, name: str, node: Node) -> Condition:
    try:
        operator = Operator(name)
    except ValueError:
        raise node.error(
            f"unknown operator {name!r}; accepted: {_OPERATORS} (or all, any, not, segment)"
        ) from None
    items = node.items() if operator in LIST_OPERATORS else [node]
    if not items:
        raise node.error(f"{name!r} needs at least one value")
    operand = tuple(_parse_operand(operator, item) for item in items)
    return AttributeCondition(attribute, operator, operand)


def _parse_operand(operator: Operator, node: Node) -> object:
    if operator in (Operator.IN, Operator.NOT_IN, Operator.EQUALS, Operator.NOT_EQUALS):
        value = scalar(node)
        if value is None:
            raise node.error(f"{operator.value!r} needs a value")
        return value
    if operator in (Operator.STARTS_WITH, Operator.ENDS_WITH, Operator.CONTAINS):
        return node.text("text")
    if operator is Operator.MATCHES:
        pattern = node.text("a regular expression")
        try:
            return re.compile(pattern)
        except re.error as exc:
            raise node.error(f"invalid regular expression {pattern!r}: {exc}") from None
    if operator in (Operator.LT, Operator.LTE, Operator.GT, Operator.GTE):
        number = node.value()
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise node.error(f"{operator.value!r} needs a number, got {node.describe()}")
        return number
    if operator.value.startswith("semver_"):
        version = parse_version(node.text("a version"))
        if version is None:
            raise node.error(f"expected a semantic version like 2.4.0, got {node.describe()}")
        return version
    if operator in (Operator.BEFORE, Operator.AFTER):
        moment = node.value()
        if isinstance(moment, date) and not isinstance(moment, datetime):
            moment = datetime.combine(moment, time(), UTC)
        if not isinstance(moment, datetime | str) or to_timestamp(moment) is None:
            raise node.error(
                f"expected an ISO 8601 timestamp like 2026-12-01T00:00:00Z, got {node.describe()}"
            )
        return moment
    if operator is Operator.CIDR:
        text = node.text("a network like 10.0.0.0/8")
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise node.error(f"expected a network like 10.0.0.0/8, got {text!r}") from None
        return text
    # exists
    flag = node.value()
    if not isinstance(flag, bool):
        raise node.error(f"'exists' needs true or false, got {node.describe()}")
    return flag


# --- segments, metrics, flags ----------------------------------------------------------------


def _parse_segments(node: Node) -> dict[str, Segment]:
    segments: dict[str, Segment] = {}
    # Segments may refer to segments defined above them.
    for name, entry in node.mapping("a mapping of segment names to definitions").items():
        check_name(entry, "segment name", name)
        fields = Fields(entry, f"segment {name!r}")
        when = fields.require("when", "the segment's conditions, e.g. [{team: [checkout]}]")
        description = fields.get("description")
        fields.done()
        segments[name] = Segment(
            name,
            parse_condition(when, segments),
            description.text("a description") if description else "",
        )
    return segments


def _parse_metrics(node: Node) -> dict[str, Metric]:
    metrics: dict[str, Metric] = {}
    kinds = ", ".join(kind.value for kind in MetricKind)
    for name, entry in node.mapping("a mapping of metric names to kinds").items():
        check_name(entry, "metric name", name)
        description = ""
        kind_node = entry
        if entry.is_mapping:
            fields = Fields(entry, f"metric {name!r}")
            kind_node = fields.require("kind", kinds)
            described = fields.get("description")
            description = described.text("a description") if described else ""
            fields.done()
        try:
            kind = MetricKind(kind_node.text(f"a metric kind ({kinds})"))
        except ValueError:
            raise kind_node.error(f"unknown metric kind; accepted: {kinds}") from None
        metrics[name] = Metric(name, kind, description)
    return metrics


def _parse_variants(node: Node) -> tuple[Variant, ...]:
    if node.is_mapping:
        entries = node.mapping("a mapping of variant names to values")
        for name, value in entries.items():
            check_name(value, "variant name", name)
        variants = tuple(Variant(name, scalar(value)) for name, value in entries.items())
    else:
        names = [check_name(item, "variant name") for item in node.sequence("a list of variants")]
        if len(set(names)) != len(names):
            raise node.error("variant names must be unique")
        booleans = names == ["off", "on"]
        variants = tuple(Variant(n, (n == "on") if booleans else n) for n in names)
    if len(variants) < 2:
        raise node.error("a flag needs at least two variants; the first is the safe default")
    return variants


def _variant_name(node: Node, variants: tuple[Variant, ...]) -> str:
    name = node.text("a variant name")
    if name not in {v.name for v in variants}:
        known = ", ".join(v.name for v in variants)
        raise node.error(f"unknown variant {name!r}; this flag's variants: {known}")
    return name


def _parse_rule(node: Node, variants: tuple[Variant, ...], segments: Mapping[str, Segment]) -> Rule:
    fields = Fields(node, "a rule")
    when = fields.get("when")
    percent_node = fields.get("percent")
    unit = fields.get("unit")
    description = fields.get("description")
    serve_node = fields.require("serve", "a variant name, or {split: {variant: percent, …}}")
    fields.done()
    serve: str | Split
    if serve_node.is_mapping:
        serve_fields = Fields(serve_node, "serve")
        split_node = serve_fields.require("split", "{variant: percent, …} summing to 100")
        serve_fields.done()
        weights = []
        for name, weight in split_node.mapping("{variant: percent, …}").items():
            if name not in {v.name for v in variants}:
                raise weight.error(f"unknown variant {name!r} in the split")
            weights.append((name, percent(weight)))
        total = sum(w for _, w in weights)
        if abs(total - 100.0) > 1e-9:
            raise split_node.error(f"split weights must sum to 100, got {total:g}")
        serve = Split(tuple(weights))
    else:
        serve = _variant_name(serve_node, variants)
    return Rule(
        serve=serve,
        when=parse_condition(when, segments) if when is not None else None,
        percent=percent(percent_node) if percent_node is not None else None,
        unit=check_name(unit, "unit attribute") if unit is not None else None,
        description=description.text("a description") if description else "",
    )


def parse_flag(key: str, node: Node, segments: Mapping[str, Segment]) -> Flag:
    """One flag definition (the value under its key in ``flags:``)."""
    check_name(node, "flag key", key)
    fields = Fields(node, f"flag {key!r}")
    variants = _parse_variants(fields.require("variants", "a list like [off, on]"))
    rules_node = fields.get("rules")
    rules = tuple(
        _parse_rule(item, variants, segments)
        for item in (rules_node.sequence() if rules_node else [])
    )
    default = fields.get("default")
    salt = fields.get("salt")
    unit = fields.get("unit")
    minimum = fields.get("min_app_version")
    killed = fields.get("killed")
    description = fields.get("description")
    fields.done()
    min_version = None
    if minimum is not None:
        min_version = parse_version(minimum.text("a version"))
        if min_version is None:
            raise minimum.error(f"expected a semantic version like 2.4.0, got {minimum.describe()}")
    killed_value = killed.value() if killed is not None else False
    if not isinstance(killed_value, bool):
        raise (killed or node).error("'killed' must be true or false")
    return Flag(
        key=key,
        variants=variants,
        rules=rules,
        default=_variant_name(default, variants) if default is not None else None,
        salt=salt.text("a salt") if salt is not None else None,
        unit=check_name(unit, "unit attribute") if unit is not None else "user",
        min_app_version=min_version,
        killed=killed_value,
        description=description.text("a description") if description else "",
    )


def load_flags(text: str, source: str | None = None) -> FlagSet:
    """Parse a flags file.

    Raises:
        UnreadableInputError: the YAML is malformed.
        InputError: a field is invalid (with file, line and field path).
    """
    return parse_flag_set(load_document(text, source))


def parse_flag_set(root: Node, unchanged: Mapping[str, Flag] | None = None) -> FlagSet:
    """The flag set of a flags document (a file's, or decoded JSON's); a flag in ``unchanged``
    is known to read to that flag, and is taken as it is."""
    unchanged = unchanged or {}
    fields = Fields(root, "a flags file")
    segments_node = fields.get("segments")
    metrics_node = fields.get("metrics")
    flags_node = fields.get("flags")
    fields.done()
    segments = _parse_segments(segments_node) if segments_node else {}
    metrics = _parse_metrics(metrics_node) if metrics_node else {}
    flags = {
        key: unchanged.get(key) or parse_flag(key, value, segments)
        for key, value in (
            flags_node.mapping("a mapping of flag keys").items() if flags_node else []
        )
    }
    return FlagSet(flags=flags, segments=segments, metrics=metrics)
