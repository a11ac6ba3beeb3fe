"""Evaluation: a flag and a context → a resolution. Never raises."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rollwise.core._bucketing import BUCKETS, percent_to_buckets, unit_text
from rollwise.core._context import Context
from rollwise.core._errors import InputError
from rollwise.core._flag import Flag, Rule, Split
from rollwise.core._resolution import ErrorCode, Reason, Resolution


def evaluate(flag: Flag, context: Context | Mapping[str, object]) -> Resolution:
    """Which variant ``context`` gets for ``flag``, and why.

    Never raises: a context that cannot be read, or any internal problem, gives the safe
    default with reason ``error`` and an error code.
    """
    try:
        return flag.program.run(context)
    except InputError as exc:
        return _failed(flag, ErrorCode.INVALID_CONTEXT, str(exc))
    except Exception as exc:  # the evaluation path must never raise into the application
        return _failed(flag, ErrorCode.GENERAL, f"{type(exc).__name__}: {exc}")


def _failed(flag: Flag, code: ErrorCode, message: str) -> Resolution:
    safe = flag.safe_default
    return Resolution(flag.key, safe.name, safe.value, Reason.ERROR, None, code, message, False)


@dataclass(frozen=True, slots=True)
class RuleTrace:
    """How one rule looked at a context: whether its conditions held, and its bucket test."""

    index: int
    description: str
    conditions_met: bool
    unit: str | None = None
    unit_value: str | None = None
    bucket: int | None = None
    #: Buckets below this serve the rule's variant (percent) or the first of its split.
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Explanation:
    """A resolution with the steps that led to it, for people (``rollwise evaluate``)."""

    resolution: Resolution
    steps: tuple[RuleTrace, ...]
    buckets: int = BUCKETS


def explain(flag: Flag, context: Context | Mapping[str, object]) -> Explanation:
    """Evaluate and show the work: each rule up to the deciding one, with buckets.

    The resolution is exactly ``evaluate``'s; the trace is recomputed beside it for display.
    """
    resolution = evaluate(flag, context)
    if resolution.reason in (Reason.KILLED, Reason.VERSION_BELOW_MINIMUM, Reason.ERROR):
        return Explanation(resolution, ())
    values = context.values if isinstance(context, Context) else Context.of(context).values
    last = resolution.rule if resolution.rule is not None else len(flag.rules) - 1
    steps: list[RuleTrace] = []
    for index, rule in enumerate(flag.rules[: last + 1]):
        met = rule.when is None or rule.when.compile()(values)
        description = describe_rule(rule, flag)
        if not met or (rule.percent is None and isinstance(rule.serve, str)):
            steps.append(RuleTrace(index, description, met))
            continue
        unit = rule.unit or flag.unit
        text = unit_text(values.get(unit))
        share = percent_to_buckets(rule.percent if rule.percent is not None else 100.0)
        bucket = flag.program.bucket(text) if text is not None else None
        steps.append(RuleTrace(index, description, met, unit, text, bucket, share))
        if text is None:
            break
    return Explanation(resolution, tuple(steps))


def describe_rule(rule: Rule, flag: Flag) -> str:
    """One line: ``if tenant in [acme]: 25% of tenants → on``."""
    head = f"if {rule.when.describe()}: " if rule.when is not None else "everyone: "
    unit = rule.unit or flag.unit
    if isinstance(rule.serve, Split):
        shares = ", ".join(f"{name} {weight:g}%" for name, weight in rule.serve.weights)
        scope = f"{rule.percent:g}% of {unit}s, " if rule.percent is not None else ""
        return f"{head}{scope}split by {unit}: {shares}"
    if rule.percent is not None:
        return f"{head}{rule.percent:g}% of {unit}s → {rule.serve}"
    return f"{head}→ {rule.serve}"
