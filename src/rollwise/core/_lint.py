"""The plan linter: refuse badly designed plans before a rollout starts.

Each rule has a stable code, a severity and an entry in ``docs/lint.md`` saying why it matters.
Rules are plain functions over the plan (and, when given, the flags file it will run against).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from enum import StrEnum

from rollwise.core import _lint_detection, _lint_flags
from rollwise.core._flag import FlagSet
from rollwise.core._plan import GuardKind, Plan, cumulative_audience
from rollwise.core._quantities import format_duration


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True)
class Finding:
    code: str
    name: str
    severity: Severity
    path: str
    message: str
    line: int | None = None

    @property
    def docs(self) -> str:
        return f"docs/lint.md#{self.code.lower()}-{self.name}"


#: A rule's check: (field path, message) for each problem it finds.
Check = Callable[[Plan, FlagSet | None], Iterator[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class LintRule:
    code: str
    name: str
    severity: Severity
    summary: str
    check: Check


#: A first percentage stage above this share of units, with no targeted stage before it, is large.
LARGE_FIRST_STAGE_PERCENT = 5.0
#: Units that are random per request: each request is bucketed on its own.
REQUEST_UNITS = frozenset({"request", "request_id"})
#: Attributes naming a subject that sends many requests and expects one consistent behaviour.
SUBJECT_ATTRIBUTES = frozenset({"tenant", "account", "organization", "org", "user", "key"})

_RULES: list[LintRule] = []


def _rule(code: str, name: str, severity: Severity, summary: str) -> Callable[[Check], Check]:
    """Registers a check as the rule ``code`` (``RULES`` keeps them in registration order)."""

    def register(check: Check) -> Check:
        _RULES.append(LintRule(code, name, severity, summary, check))
        return check

    return register


@_rule("RW001", "no-guards", Severity.ERROR, "the plan has no guard, so nothing can stop it")
def _no_guards(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    if not plan.guards:
        yield "guards", "the plan has no guard: nothing can pause or roll it back"


@_rule(
    "RW002",
    "guard-without-limit",
    Severity.ERROR,
    "a guard has neither a tolerance against the baseline nor an absolute limit",
)
def _guard_without_limit(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    for index, guard in enumerate(plan.guards):
        if not guard.has_limit:
            accepted = (
                "max, min or max_growth"
                if guard.kind is GuardKind.GAUGE
                else "tolerance, max or min"
            )
            yield (
                f"guards[{index}]",
                f"guard {guard.label!r} can never fail: give it {accepted}",
            )


@_rule("RW003", "single-stage", Severity.ERROR, "a single-stage plan tests nothing below it")
def _single_stage(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    if len(plan.stages) == 1:
        yield "stages", "the plan has one stage: nothing is learned before its full exposure"


@_rule(
    "RW004",
    "shrinking-exposure",
    Severity.ERROR,
    "a stage exposes fewer units than the one before it",
)
def _shrinking_exposure(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    for index in range(1, len(plan.stages)):
        before = cumulative_audience(plan, index - 1).percent or 0.0
        stage = plan.stages[index]
        if stage.audience.percent is not None and stage.exposed_percent < before:
            yield (
                f"stages[{index}].audience.percent",
                f"stage {stage.name!r} exposes {stage.exposed_percent:g}% of units after "
                f"{before:g}%: units already exposed would switch back",
            )


@_rule(
    "RW005",
    "expands-on-time-alone",
    Severity.WARNING,
    "a stage that expands has no minimum samples",
)
def _expands_on_time(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    for index, stage in enumerate(plan.stages[:-1]):
        if stage.min_samples is None:
            yield (
                f"stages[{index}]",
                f"stage {stage.name!r} has no min_samples: a quiet stage could expand on its "
                f"bake time alone",
            )


@_rule(
    "RW006",
    "large-first-stage",
    Severity.WARNING,
    "the first customer-facing stage is large and nothing targeted runs before it",
)
def _large_first_stage(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    for index, stage in enumerate(plan.stages):
        if stage.is_targeted:
            return
        if stage.audience.percent:
            if stage.exposed_percent > LARGE_FIRST_STAGE_PERCENT:
                yield (
                    f"stages[{index}].audience.percent",
                    f"stage {stage.name!r} starts at {stage.exposed_percent:g}% of "
                    f"{plan.unit}s with no internal or pilot stage before it; start with a "
                    f"segment or at most {LARGE_FIRST_STAGE_PERCENT:g}%",
                )
            return


@_rule(
    "RW007",
    "irreversible-without-approval",
    Severity.ERROR,
    "an irreversible stage can be entered without a person's approval",
)
def _irreversible_without_approval(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    for index, stage in enumerate(plan.stages):
        if stage.irreversible and not stage.approval_required:
            yield (
                f"stages[{index}]",
                f"stage {stage.name!r} is irreversible but needs no approval: add "
                f"'approval: required'",
            )


@_rule(
    "RW008",
    "irreversible-before-pilot",
    Severity.ERROR,
    "an irreversible stage comes before any internal or pilot stage",
)
def _irreversible_before_pilot(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    for index, stage in enumerate(plan.stages):
        if stage.irreversible:
            if not any(earlier.is_targeted for earlier in plan.stages[:index]):
                yield (
                    f"stages[{index}]",
                    f"stage {stage.name!r} writes state a rollback cannot undo, and no internal "
                    f"or pilot stage runs before it",
                )
            return


@_rule(
    "RW009",
    "request-unit-with-subject-scope",
    Severity.ERROR,
    "a per-request unit while guards or audiences are about tenants (or users)",
)
def _request_unit(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    if plan.unit not in REQUEST_UNITS:
        return
    for index, guard in enumerate(plan.guards):
        scoped = sorted(set(guard.by) & SUBJECT_ATTRIBUTES)
        if scoped:
            yield (
                f"guards[{index}].by",
                f"guard {guard.label!r} is judged per {scoped[0]}, but unit {plan.unit!r} gives "
                f"each {scoped[0]} both variants; use 'unit: {scoped[0]}'",
            )
    if flags is None:
        return
    for index, stage in enumerate(plan.stages):
        for name in stage.audience.segments:
            segment = flags.segments.get(name)
            scoped = sorted(segment.condition.attributes() & SUBJECT_ATTRIBUTES) if segment else []
            if scoped:
                yield (
                    f"stages[{index}].audience.segments",
                    f"segment {name!r} selects by {scoped[0]}, but unit {plan.unit!r} splits "
                    f"each {scoped[0]}'s requests between variants",
                )


@_rule(
    "RW010",
    "no-holdback",
    Severity.WARNING,
    "full exposure with no holdback leaves no baseline",
)
def _no_holdback(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    for index, stage in enumerate(plan.stages):
        if stage.audience.percent == 100 and not stage.holdback:
            yield (
                f"stages[{index}]",
                f"stage {stage.name!r} exposes 100% with no holdback: nothing is left to "
                f"compare against; add e.g. 'holdback: 2%'",
            )


@_rule("RW011", "unknown-window", Severity.ERROR, "a stage covers a window that is not defined")
def _unknown_window(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    for index, stage in enumerate(plan.stages):
        for position, name in enumerate(stage.cover):
            if name not in plan.windows:
                known = ", ".join(sorted(plan.windows)) or "none are defined"
                yield (
                    f"stages[{index}].cover[{position}]",
                    f"stage {stage.name!r} must cover unknown window {name!r}; windows: {known}",
                )


@_rule(
    "RW012",
    "bake-shorter-than-window",
    Severity.WARNING,
    "a stage's bake is shorter than a window it must cover",
)
def _bake_shorter(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    for index, stage in enumerate(plan.stages):
        for name in stage.cover:
            window = plan.windows.get(name)
            if window is not None and (stage.bake is None or stage.bake < window.duration):
                baked = format_duration(stage.bake) if stage.bake else "no bake"
                yield (
                    f"stages[{index}].bake",
                    f"stage {stage.name!r} bakes {baked} but must cover {name!r}, which lasts "
                    f"{format_duration(window.duration)}",
                )


# Checked against the flags file (``_lint_flags.py``).
_rule("RW013", "unknown-segment", Severity.ERROR, "an audience names an undefined segment")(
    _lint_flags.unknown_segment
)
_rule(
    "RW014",
    "unknown-metric",
    Severity.ERROR,
    "a guard names a metric the flags file does not declare, or of another kind",
)(_lint_flags.unknown_metric)
_rule(
    "RW015",
    "unknown-flag-or-variant",
    Severity.ERROR,
    "the plan's flag, variant or rollback variant does not exist",
)(_lint_flags.unknown_flag)
_rule(
    "RW021",
    "unit-differs-from-flag",
    Severity.ERROR,
    "the plan buckets by another unit than its flag",
)(_lint_flags.unit_differs)


@_rule(
    "RW016",
    "bake-exceeds-max-duration",
    Severity.ERROR,
    "a stage's bake or window is longer than the maximum stage duration",
)
def _bake_exceeds(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    limit = plan.max_stage_duration
    if limit is None:
        return
    for index, stage in enumerate(plan.stages):
        if stage.bake is not None and stage.bake >= limit:
            yield (
                f"stages[{index}].bake",
                f"stage {stage.name!r} bakes {format_duration(stage.bake)}, but "
                f"max_stage_duration is {format_duration(limit)}: it can only ever pause",
            )


@_rule(
    "RW017",
    "no-max-stage-duration",
    Severity.WARNING,
    "without a maximum stage duration an inconclusive stage holds forever",
)
def _no_max_duration(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    if plan.max_stage_duration is None and len(plan.stages) > 1:
        yield (
            "max_stage_duration",
            "no max_stage_duration: a stage that never reaches a conclusion holds silently "
            "instead of pausing for a person; add e.g. 'max_stage_duration: 3d'",
        )


@_rule(
    "RW018",
    "references-unchecked",
    Severity.INFO,
    "segments, metrics and the flag were not checked because no flags file was given",
)
def _unchecked(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    if flags is None:
        yield "", "segments, metrics and the flag were not checked: pass --flags FLAGS"


_rule(
    "RW019",
    "stage-ends-before-detection",
    Severity.WARNING,
    "at the declared traffic, a stage ends before it could detect a 2x error-rate regression",
)(_lint_detection.detects_in_time)


_rule(
    "RW020",
    "few-units-compared-with-others",
    Severity.WARNING,
    "with a coarse unit, exposed units are compared with other units: their own base rates "
    "look like an effect",
)(_lint_detection.coarse_unit)


#: Every lint rule, by code.
RULES: tuple[LintRule, ...] = tuple(_RULES)

_SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}


#: The rules that only look up names in the flags file: cheap, so a server can re-check them
#: against the flags it holds inside the transaction that stores a plan.
REFERENCE_RULES = frozenset({"RW013", "RW014", "RW015", "RW021"})


def lint(
    plan: Plan, flags: FlagSet | None = None, *, only: Collection[str] | None = None
) -> list[Finding]:
    """Every finding of every rule (or of the rules coded in ``only``), ordered by line then
    severity."""
    findings = [
        Finding(rule.code, rule.name, rule.severity, path, message, plan.line_of(path))
        for rule in RULES
        if only is None or rule.code in only
        for path, message in rule.check(plan, flags)
    ]
    return sorted(findings, key=lambda f: (f.line or 0, _SEVERITY_ORDER[f.severity], f.code))
