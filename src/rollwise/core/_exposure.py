"""A stage's audience compiled into flag rules: one evaluation mechanism for everything.

The SDK knows nothing about plans. While a rollout runs, the plan owns the flag's targeting:
the controller replaces the flag's rules with the current stage's, and the flag's static rules
come back when the rollout ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from rollwise.core._conditions import InSegment
from rollwise.core._errors import InputError
from rollwise.core._flag import Flag, Rule, Segment
from rollwise.core._plan import Plan, cumulative_audience


def stage_rules(plan: Plan, index: int, segments: Mapping[str, Segment]) -> tuple[Rule, ...]:
    """The rules that expose stage ``index``'s cumulative audience to ``plan.variant``.

    Raises:
        InputError: a stage names a segment that is not defined.
    """
    if not 0 <= index < len(plan.stages):
        raise InputError(f"the plan has no stage {index}", path="stages")
    stage = plan.stages[index]
    audience = cumulative_audience(plan, index)
    rules = []
    for name in audience.segments:
        segment = segments.get(name)
        if segment is None:
            known = ", ".join(sorted(segments)) or "none are defined"
            raise InputError(f"unknown segment {name!r}; known segments: {known}", path="stages")
        rules.append(
            Rule(
                serve=plan.variant,
                when=InSegment(name, segment.condition),
                description=f"{stage.name}: segment {name}",
            )
        )
    if audience.percent:
        rules.append(
            Rule(
                serve=plan.variant,
                percent=audience.percent,
                unit=plan.unit,
                description=f"{stage.name}: {audience.percent:g}% of {plan.unit}s",
            )
        )
    return tuple(rules)


def flag_at_stage(flag: Flag, plan: Plan, index: int, segments: Mapping[str, Segment]) -> Flag:
    """``flag`` as it is served while stage ``index`` of ``plan`` runs.

    Raises:
        InputError: unknown segment, or a plan variant the flag does not have.
    """
    try:
        return replace(flag, rules=stage_rules(plan, index, segments), default=None)
    except ValueError as exc:
        raise InputError(str(exc), path="variant") from None


def flag_rolled_back(flag: Flag, plan: Plan) -> Flag:
    """``flag`` after a rollback: everyone gets the plan's rollback variant (the safe default
    unless the plan says otherwise)."""
    try:
        return replace(flag, rules=(), default=plan.rollback_to)
    except ValueError as exc:
        raise InputError(str(exc), path="rollback.to") from None
