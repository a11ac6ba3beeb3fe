"""The pure core of rollwise: model, targeting, bucketing, plans and the linter. No I/O."""

from __future__ import annotations

from rollwise.core._bucketing import BUCKETS, MAX_UNIT_LENGTH, bucket, ledger_unit, unit_text
from rollwise.core._conditions import (
    AllOf,
    AnyOf,
    AttributeCondition,
    Condition,
    InSegment,
    Not,
)
from rollwise.core._context import Context, context_values, folded_user
from rollwise.core._cron import Cron, parse_cron
from rollwise.core._errors import InputError, RollwiseError, UnreadableInputError
from rollwise.core._evaluation import Explanation, RuleTrace, describe_rule, evaluate, explain
from rollwise.core._exposure import flag_at_stage, flag_rolled_back, stage_rules
from rollwise.core._flag import Flag, FlagSet, Metric, MetricKind, Rule, Segment, Split, Variant
from rollwise.core._flagfile import load_flags
from rollwise.core._lifecycle import (
    LIVE_STATUSES,
    TRANSITIONS,
    LiveRollout,
    RolloutAction,
    approval_refusal,
    flags_conflicts,
    legal_from,
    next_status,
    refusal,
    served_flag,
)
from rollwise.core._lint import REFERENCE_RULES, RULES, Finding, LintRule, Severity, lint
from rollwise.core._operands import Operator
from rollwise.core._plan import (
    Action,
    Audience,
    Guard,
    GuardKind,
    Plan,
    Stage,
    Tolerance,
    Window,
    Worse,
    cumulative_audience,
)
from rollwise.core._planfile import load_plan
from rollwise.core._quantities import format_duration, parse_duration, parse_percent
from rollwise.core._resolution import ErrorCode, Reason, Resolution
from rollwise.core._semver import Version, parse_version

__all__ = [
    "BUCKETS",
    "LIVE_STATUSES",
    "MAX_UNIT_LENGTH",
    "REFERENCE_RULES",
    "RULES",
    "TRANSITIONS",
    "Action",
    "AllOf",
    "AnyOf",
    "AttributeCondition",
    "Audience",
    "Condition",
    "Context",
    "Cron",
    "ErrorCode",
    "Explanation",
    "Finding",
    "Flag",
    "FlagSet",
    "Guard",
    "GuardKind",
    "InSegment",
    "InputError",
    "LintRule",
    "LiveRollout",
    "Metric",
    "MetricKind",
    "Not",
    "Operator",
    "Plan",
    "Reason",
    "Resolution",
    "RolloutAction",
    "RollwiseError",
    "Rule",
    "RuleTrace",
    "Segment",
    "Severity",
    "Split",
    "Stage",
    "Tolerance",
    "UnreadableInputError",
    "Variant",
    "Version",
    "Window",
    "Worse",
    "approval_refusal",
    "bucket",
    "context_values",
    "cumulative_audience",
    "describe_rule",
    "evaluate",
    "explain",
    "flag_at_stage",
    "flag_rolled_back",
    "flags_conflicts",
    "folded_user",
    "format_duration",
    "ledger_unit",
    "legal_from",
    "lint",
    "load_flags",
    "load_plan",
    "next_status",
    "parse_cron",
    "parse_duration",
    "parse_percent",
    "parse_version",
    "refusal",
    "served_flag",
    "stage_rules",
    "unit_text",
]
