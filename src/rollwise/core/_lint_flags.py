"""The lint rules that check a plan against the flags file it will run against: that the
segments, metrics, flag and variants it names exist there, with the kinds and the unit the plan
expects (RW013, RW014, RW015, RW021: ``_lint.py`` registers them). They only look names up, so a
server re-checks them against the flags it holds in the transaction that stores a plan
(``REFERENCE_RULES``).
"""

from __future__ import annotations

from collections.abc import Iterator

from rollwise.core._flag import FlagSet, MetricKind
from rollwise.core._plan import GuardKind, Plan


def unknown_segment(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    if flags is None:
        return
    for index, stage in enumerate(plan.stages):
        for position, name in enumerate(stage.audience.segments):
            if name not in flags.segments:
                known = ", ".join(sorted(flags.segments)) or "none are defined"
                yield (
                    f"stages[{index}].audience.segments[{position}]",
                    f"unknown segment {name!r}; segments: {known}",
                )


GUARD_METRIC_KIND = {
    GuardKind.RATE: MetricKind.RATE,
    GuardKind.LATENCY: MetricKind.LATENCY,
    GuardKind.GAUGE: MetricKind.GAUGE,
}


def unknown_metric(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    if flags is None or not flags.metrics:
        return
    for index, guard in enumerate(plan.guards):
        if guard.source is not None:
            continue  # its counts come from its source's queries, not from what SDKs report
        metric = flags.metrics.get(guard.metric)
        if metric is None:
            known = ", ".join(sorted(flags.metrics))
            yield f"guards[{index}].metric", f"unknown metric {guard.metric!r}; metrics: {known}"
        elif metric.kind is not GUARD_METRIC_KIND[guard.kind]:
            yield (
                f"guards[{index}].kind",
                f"metric {guard.metric!r} is a {metric.kind.value}, not a {guard.kind.value}",
            )


def unknown_flag(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    if flags is None:
        return
    flag = flags.flags.get(plan.flag)
    if flag is None:
        known = ", ".join(sorted(flags.flags)) or "none are defined"
        yield "flag", f"unknown flag {plan.flag!r}; flags: {known}"
        return
    names = [variant.name for variant in flag.variants]
    if plan.variant not in names:
        yield (
            "variant",
            f"flag {flag.key!r} has no variant {plan.variant!r}; variants: {', '.join(names)}",
        )
    elif plan.variant == flag.safe_default.name:
        yield "variant", f"{plan.variant!r} is the safe default: rolling it out changes nothing"
    if plan.rollback_to is not None and plan.rollback_to not in names:
        yield (
            "rollback.to",
            f"flag {flag.key!r} has no variant {plan.rollback_to!r}; variants: {', '.join(names)}",
        )


def unit_differs(plan: Plan, flags: FlagSet | None) -> Iterator[tuple[str, str]]:
    flag = flags.flags.get(plan.flag) if flags is not None else None
    if flag is not None and flag.unit != plan.unit:
        yield (
            "unit",
            f"the plan buckets by {plan.unit!r} but flag {flag.key!r} by {flag.unit!r}: "
            "a unit could be served both variants",
        )
