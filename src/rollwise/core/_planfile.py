"""Plan files: YAML → a validated ``Plan``. ``docs/plan-reference.md`` documents every field."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TypeVar

from rollwise.core._cron import parse_cron
from rollwise.core._document import Fields, Located, load_document
from rollwise.core._flagfile import check_name, percent, scalar
from rollwise.core._plan import (
    DEFAULT_STRATUM,
    STRATUM_MINUTES,
    Action,
    Audience,
    Guard,
    GuardKind,
    Plan,
    Stage,
    Tolerance,
    Window,
    Worse,
)
from rollwise.core._quantities import parse_duration, parse_number, parse_percent, parse_rate
from rollwise.core._sources import parse_source

_LATENCY = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s)\s*")
_GROWTH = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|m|min|h|hour)\s*")
_GROWTH_PER_MINUTE = {"s": 60.0, "sec": 60.0, "m": 1.0, "min": 1.0, "h": 1 / 60, "hour": 1 / 60}


_E = TypeVar("_E", bound=StrEnum)


def _choice(node: Located, enum: type[_E], what: str) -> _E:
    text = node.text(what)
    try:
        return enum(text)
    except ValueError:
        accepted = ", ".join(member.value for member in enum)
        raise node.error(f"unknown {what} {text!r}; accepted: {accepted}") from None


def _duration(node: Located) -> timedelta:
    try:
        return parse_duration(node.text("a duration like '30m'"))
    except ValueError as exc:
        raise node.error(str(exc)) from None


def _stratum(node: Located) -> timedelta:
    length = _duration(node)
    minutes = length.total_seconds() / 60
    if minutes not in STRATUM_MINUTES:
        accepted = ", ".join(f"{m}m" for m in STRATUM_MINUTES)
        raise node.error(
            f"stratum must be a whole number of minutes that divides an hour ({accepted}), "
            f"got {node.describe()}"
        )
    return length


def _count(node: Located, what: str) -> int:
    value = node.value()
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise node.error(f"{what} must be a whole number of at least 1, got {node.describe()}")
    return value


def _names(node: Located, what: str) -> tuple[str, ...]:
    names = tuple(check_name(item, what) for item in node.items(f"a list of {what}s"))
    if len(set(names)) != len(names):
        raise node.error(f"{what}s must not repeat")
    return names


def _fraction_percent(node: Located, what: str) -> float:
    """``"2%"`` → 0.02: rates are written as percentages."""
    text = node.text(f"{what} like '2%'").strip()
    if not text.endswith("%"):
        raise node.error(f"{what} of a rate is written as a percentage like '2%', got {text!r}")
    try:
        value = parse_number(text[:-1])
    except ValueError:
        raise node.error(f"expected {what} like '2%', got {text!r}") from None
    if not 0 <= value <= 100:
        raise node.error(f"{what} must be between 0% and 100%, got {text!r}")
    return value / 100


def _milliseconds(node: Located, what: str) -> float:
    text = node.text(f"{what} like '50ms'")
    match = _LATENCY.fullmatch(text)
    if match is None:
        raise node.error(f"expected {what} like '50ms' or '1.5s', got {text!r}")
    amount = float(match.group(1))
    return amount * 1000 if match.group(2) == "s" else amount


def _tolerance(node: Located, kind: GuardKind) -> Tolerance:
    text = node.text("a tolerance").strip()
    if kind is GuardKind.GAUGE:
        raise node.error(
            "a gauge is not split by variant, so it has no baseline to be tolerant of; "
            "use max, min or max_growth"
        )
    if text.endswith("%"):
        return Tolerance(_fraction_percent(node, "a tolerance"), relative=True, text=text)
    if kind is GuardKind.RATE:
        if text.endswith("pp"):
            # An absolute difference has no exact anytime-valid test on counts: the baseline's
            # rate, a nuisance that drifts from window to window, does not cancel out of it as
            # it does out of a ratio (docs/judgement.md, "Absolute tolerances").
            raise node.error(
                f"a rate tolerance in percentage points ({text!r}) is not supported: write it "
                f"relative to the baseline, e.g. at a 1% base rate '0.5pp' is '50%'; an absolute "
                f"ceiling on the exposed rate is 'max: 2%'"
            )
        raise node.error(f"a rate tolerance is relative to the baseline, like '10%', got {text!r}")
    return Tolerance(_milliseconds(node, "a tolerance"), relative=False, text=text)


def _limit(node: Located, kind: GuardKind, what: str) -> float:
    if kind is GuardKind.RATE:
        return _fraction_percent(node, what)
    if kind is GuardKind.LATENCY:
        return _milliseconds(node, what)
    value = node.value()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise node.error(f"{what} of a gauge must be a number, got {node.describe()}")
    return float(value)


def _quantile(node: Located) -> float:
    raw = scalar(node)
    if isinstance(raw, str):
        text = raw.strip().lower()
        try:
            raw = parse_number(text[1:]) / 100 if text.startswith("p") else parse_number(text)
        except ValueError:
            raw = None
    if not isinstance(raw, bool) and isinstance(raw, int | float):
        raw = round(float(raw), 9)
    if isinstance(raw, bool) or not isinstance(raw, float) or not 0 < raw < 1:
        raise node.error(f"expected a quantile like 0.95 or 'p95', got {node.describe()}")
    return raw


def _parse_guard(node: Located) -> Guard:
    fields = Fields(node, "a guard")
    metric = check_name(fields.require("metric", "the metric's name"), "metric name")
    kind = _choice(fields.require("kind", "rate, latency or gauge"), GuardKind, "guard kind")
    worse_node = fields.get("worse")
    tolerance_node = fields.get("tolerance")
    quantile_node = fields.get("quantile")
    maximum = fields.get("max")
    minimum = fields.get("min")
    growth = fields.get("max_growth")
    breaches = fields.get("breaches")
    by = fields.get("by")
    max_segments = fields.get("max_segments")
    action = fields.get("on_regression")
    source = fields.get("source")
    fields.done()
    if source is not None and by is not None and len(by.items("attribute")) > 1:
        raise by.error(
            "a guard fed by Prometheus is split by one attribute (its queries' answer has one "
            "series per value of it): write a guard per attribute"
        )
    if quantile_node is not None and kind is not GuardKind.LATENCY:
        raise quantile_node.error("only latency guards take a quantile")
    if growth is not None and kind is not GuardKind.GAUGE:
        raise growth.error("only gauge guards take max_growth")
    if breaches is not None and kind is not GuardKind.GAUGE:
        raise breaches.error("only gauge guards take breaches")
    growth_per_minute = None
    if growth is not None:
        match = _GROWTH.fullmatch(growth.text("a growth rate like '100/min'"))
        if match is None:
            raise growth.error(f"expected a growth rate like '100/min', got {growth.describe()}")
        growth_per_minute = float(match.group(1)) * _GROWTH_PER_MINUTE[match.group(2)]
    by_names = _names(by, "attribute") if by is not None else ()
    if max_segments is not None and not by_names:
        raise max_segments.error("max_segments goes with by (the attribute to split by)")
    if by_names and kind is GuardKind.GAUGE:
        raise by.error("a gauge is system-wide; it cannot be split by context attributes")  # type: ignore[union-attr]
    return Guard(
        metric=metric,
        kind=kind,
        worse=_choice(worse_node, Worse, "direction") if worse_node else Worse.HIGHER,
        tolerance=_tolerance(tolerance_node, kind) if tolerance_node else None,
        quantile=(
            _quantile(quantile_node)
            if quantile_node
            else (0.95 if kind is GuardKind.LATENCY else None)
        ),
        maximum=_limit(maximum, kind, "max") if maximum else None,
        minimum=_limit(minimum, kind, "min") if minimum else None,
        max_growth_per_minute=growth_per_minute,
        breaches=_count(breaches, "breaches") if breaches else 3,
        by=by_names,
        max_segments=_count(max_segments, "max_segments") if max_segments else 20,
        on_regression=_choice(action, Action, "action") if action else Action.ROLLBACK,
        source=parse_source(source, kind.value) if source is not None else None,
    )


def _parse_stage(node: Located) -> Stage:
    fields = Fields(node, "a stage")
    name = check_name(fields.require("name", "the stage's name"), "stage name")
    audience_node = fields.require("audience", "{segments: [...]} and/or {percent: N}")
    audience_fields = Fields(audience_node, "an audience")
    segments = audience_fields.get("segments")
    percent_node = audience_fields.get("percent")
    audience_fields.done()
    if (segments is None or not segments.items()) and percent_node is None:
        raise audience_node.error("an audience needs segments, a percent, or both")
    audience_percent = percent(percent_node) if percent_node is not None else None
    if audience_percent == 0 and percent_node is not None:
        raise percent_node.error("a stage that exposes 0% exposes nobody; remove it or raise it")
    bake = fields.get("bake")
    min_samples = fields.get("min_samples")
    per = fields.get("min_samples_per")
    cover = fields.get("cover")
    approval = fields.get("approval")
    irreversible = fields.get("irreversible")
    holdback = fields.get("holdback")
    fields.done()
    if per is not None and min_samples is None:
        raise per.error("min_samples_per needs min_samples (how many per value)")
    approval_required = False
    if approval is not None:
        value = scalar(approval)
        if value not in ("required", "none", "yes", "no", True, False):
            raise approval.error(
                f"approval is 'required' or 'none' (or yes/no, true/false), "
                f"got {approval.describe()}"
            )
        approval_required = value in ("required", "yes", True)
    irreversible_value = irreversible.value() if irreversible is not None else False
    if not isinstance(irreversible_value, bool):
        raise irreversible.error("irreversible must be true or false")  # type: ignore[union-attr]
    holdback_value = percent(holdback) if holdback is not None else None
    if holdback is not None and audience_percent is None:
        raise holdback.error("a holdback is taken out of a percentage; this stage has none")
    if holdback_value is not None and holdback_value >= 100:
        raise holdback.error("a holdback of 100% exposes nobody")  # type: ignore[union-attr]
    return Stage(
        name=name,
        audience=Audience(
            _names(segments, "segment") if segments is not None else (), audience_percent
        ),
        bake=_duration(bake) if bake else None,
        min_samples=_count(min_samples, "min_samples") if min_samples else None,
        min_samples_per=check_name(per, "attribute") if per else None,
        cover=_names(cover, "window") if cover else (),
        approval_required=approval_required,
        irreversible=irreversible_value,
        holdback=holdback_value,
    )


def _parse_window(name: str, node: Located) -> Window:
    fields = Fields(node, f"window {name!r}")
    cron_node = fields.require("cron", "a cron expression like '0 2 * * *' (UTC)")
    duration = _duration(fields.require("duration", "a duration like '30m'"))
    fields.done()
    check_name(node, "window name", name)
    try:
        cron = parse_cron(cron_node.text("a cron expression"))
        cron.next_at_or_after(datetime(2000, 1, 1))  # a schedule that never fires is an error
    except ValueError as exc:
        raise cron_node.error(str(exc)) from None
    return Window(name, cron, duration)


def _lines(node: Located, lines: dict[str, int]) -> None:
    lines.setdefault(node.path, node.line)
    if node.is_mapping:
        for child in node.mapping().values():
            _lines(child, lines)
    elif node.is_sequence:
        for child in node.sequence():
            _lines(child, lines)


def _one_source_per_metric(guards: tuple[Guard, ...], items: list[Located]) -> None:
    """Guards on one metric share its counts, so they must take them from one source (a p95
    and a p99 guard over the same Prometheus histogram do; an SDK guard and a Prometheus one,
    or two different queries, would add the same requests twice)."""
    for index, guard in enumerate(guards):
        for earlier in guards[:index]:
            if earlier.metric == guard.metric and earlier.source != guard.source:
                raise items[index].error(
                    f"guards on metric {guard.metric!r} take its counts from different sources "
                    "(the SDKs, or Prometheus queries that differ): give them one source"
                )


def parse_false_rollback_rate(node: Located) -> float:
    """``false_rollback_rate: 1%`` as a fraction."""
    try:
        rate_percent = parse_percent(scalar(node))
    except ValueError as exc:
        raise node.error(str(exc)) from None
    if not 0.001 <= rate_percent <= 20:
        raise node.error("false_rollback_rate must be between 0.001% and 20%")
    return rate_percent / 100


def load_plan(text: str, source: str | None = None) -> Plan:
    """Parse a plan file.

    Raises:
        UnreadableInputError: the YAML is malformed.
        InputError: a field is invalid (with file, line and field path).
    """
    root = load_document(text, source)
    fields = Fields(root, "a plan")
    flag = check_name(fields.require("flag", "the flag's key"), "flag key")
    unit = check_name(
        fields.require("unit", "the attribute whose values switch together: user, tenant, …"),
        "unit attribute",
    )
    variant = fields.get("variant")
    guards_node = fields.get("guards")
    stages_node = fields.require("stages", "a list of stages")
    max_duration = fields.get("max_stage_duration")
    rollback = fields.get("rollback")
    windows_node = fields.get("windows")
    rate = fields.get("false_rollback_rate")
    traffic = fields.get("traffic")
    stratum_node = fields.get("stratum")
    fields.done()

    stages = tuple(_parse_stage(item) for item in stages_node.sequence("a list of stages"))
    if not stages:
        raise stages_node.error("a plan needs at least one stage")
    seen: set[str] = set()
    for index, stage in enumerate(stages):
        if stage.name in seen:
            raise stages_node.sequence()[index].error(f"stage name {stage.name!r} is used twice")
        seen.add(stage.name)
    rollback_to = None
    if rollback is not None:
        rollback_fields = Fields(rollback, "rollback (a mapping like {to: off})")
        to = rollback_fields.get("to")
        rollback_fields.done()
        rollback_to = check_name(to, "variant name") if to is not None else None
    false_rollback_rate = 0.01 if rate is None else parse_false_rollback_rate(rate)
    traffic_per_second = None
    if traffic is not None:
        try:
            traffic_per_second = parse_rate(traffic.text("a rate like '50/s'"))
        except ValueError as exc:
            raise traffic.error(str(exc)) from None
    stratum = DEFAULT_STRATUM if stratum_node is None else _stratum(stratum_node)
    windows = {
        name: _parse_window(name, node)
        for name, node in (windows_node.mapping().items() if windows_node else [])
    }
    items = guards_node.sequence("a list of guards") if guards_node else []
    guards = tuple(_parse_guard(item) for item in items)
    _one_source_per_metric(guards, items)
    lines: dict[str, int] = {}
    _lines(root, lines)
    return Plan(
        flag=flag,
        unit=unit,
        stages=stages,
        guards=guards,
        variant=check_name(variant, "variant name") if variant else "on",
        rollback_to=rollback_to,
        max_stage_duration=_duration(max_duration) if max_duration else None,
        windows=windows,
        false_rollback_rate=false_rollback_rate,
        traffic_per_second=traffic_per_second,
        stratum=stratum,
        lines=lines,
        source=source,
    )
