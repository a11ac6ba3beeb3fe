"""Plan files: the example parses to the documented model; bad plans are named precisely."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from rollwise.core import (
    Action,
    GuardKind,
    InputError,
    UnreadableInputError,
    Worse,
    load_plan,
)


def test_example_plan_parses_to_the_model(plan_path: Path) -> None:
    """Every field of examples/checkout/plan.yaml lands where the plan reference says."""
    plan = load_plan(plan_path.read_text(), str(plan_path))
    assert (plan.flag, plan.unit, plan.variant, plan.rollback_to) == (
        "new-checkout",
        "tenant",
        "on",
        "off",
    )
    assert plan.max_stage_duration == timedelta(days=3)
    assert plan.false_rollback_rate == 0.01
    error, latency, abandoned, queue = plan.guards
    assert (error.kind, error.worse, error.by, error.on_regression) == (
        GuardKind.RATE,
        Worse.HIGHER,
        ("tenant",),
        Action.ROLLBACK,
    )
    assert error.tolerance is not None and error.tolerance.relative
    assert error.tolerance.amount == pytest.approx(0.5)  # 50 %
    assert plan.stratum == timedelta(minutes=15)
    assert latency.quantile == 0.95 and latency.tolerance is not None
    assert (latency.tolerance.amount, latency.tolerance.relative) == (50.0, False)
    assert abandoned.on_regression is Action.PAUSE
    assert (queue.kind, queue.maximum, queue.breaches) == (GuardKind.GAUGE, 1000.0, 3)
    names = [stage.name for stage in plan.stages]
    assert names == ["internal", "pilot-tenant", "five-percent", "quarter", "all"]
    pilot = plan.stages[1]
    assert pilot.irreversible and pilot.approval_required and pilot.cover == ("nightly-settlement",)
    assert plan.stages[2].min_samples_per == "traffic_type"
    assert plan.stages[4].exposed_percent == 98.0
    window = plan.windows["nightly-settlement"]
    assert window.duration == timedelta(minutes=30) and window.cron.hours == {2}
    assert plan.line_of("stages[1].irreversible") == 40


def test_stratum_is_read_from_the_plan() -> None:
    """A plan may choose a shorter or longer comparison window than the 15-minute default."""
    plan = load_plan(
        "flag: f\nunit: user\nstratum: 5m\nstages: [{name: a, audience: {percent: 1}}]\n"
    )
    assert plan.stratum == timedelta(minutes=5)


def test_quantities_in_their_written_forms() -> None:
    """Tolerances, limits, quantiles and growth rates accept the forms people write."""
    plan = load_plan(
        """
flag: f
unit: user
false_rollback_rate: 0.0125%
guards:
  - {metric: e, kind: rate, tolerance: 20%, max: 2%}
  - {metric: l, kind: latency, quantile: p99.9, tolerance: 10%, max: 1.5s}
  - {metric: c, kind: rate, worse: lower, tolerance: 5%}
  - {metric: q, kind: gauge, max_growth: 5/s, breaches: 2, on_regression: pause}
stages:
  - {name: a, audience: {percent: 1}, bake: 1h30m, min_samples: 10}
  - {name: b, audience: {percent: '50%'}, approval: none}
"""
    )
    rate, latency, conversion, gauge = plan.guards
    assert rate.tolerance is not None and (rate.tolerance.amount, rate.tolerance.relative) == (
        pytest.approx(0.2),
        True,
    )
    assert rate.maximum == pytest.approx(0.02)
    assert latency.quantile == 0.999 and latency.maximum == 1500.0
    assert latency.tolerance is not None and latency.tolerance.relative
    assert conversion.worse is Worse.LOWER
    assert gauge.max_growth_per_minute == 300.0 and gauge.breaches == 2
    assert plan.false_rollback_rate == pytest.approx(0.000125)
    assert plan.stages[0].bake == timedelta(minutes=90)
    assert plan.stages[1].audience.percent == 50.0 and not plan.stages[1].approval_required


BASE = "flag: f\nunit: user\nguards:\n  - {metric: e, kind: rate, tolerance: 10%}\nstages:\n"


@pytest.mark.parametrize(
    ("stages", "line", "path", "message"),
    [
        (
            "  - {name: a, audience: {percent: 5}, bake: soon}\n",
            6,
            "stages[0].bake",
            "expected a duration",
        ),
        ("  - {name: a, audience: {}}\n", 6, "stages[0].audience", "needs segments, a percent"),
        (
            "  - {name: a, audience: {percent: 120}}\n",
            6,
            "stages[0].audience.percent",
            "between 0 and 100",
        ),
        (
            "  - {name: a, audience: {percent: 5}, holdback: 2%, bake: 1h}\n  - {name: b, audience: {segments: [x]}, holdback: 1%}\n",
            7,
            "stages[1].holdback",
            "has none",
        ),
        (
            "  - {name: a, audience: {percent: 5}, min_samples: -1}\n",
            6,
            "stages[0].min_samples",
            "at least 1",
        ),
        (
            "  - {name: a, audience: {percent: 5}, approval: maybe}\n",
            6,
            "stages[0].approval",
            "'required' or 'none'",
        ),
        (
            "  - {name: a, audience: {percent: 5}}\n  - {name: a, audience: {percent: 9}}\n",
            7,
            "stages[1]",
            "used twice",
        ),
        (
            "  - {name: a, audience: {percent: 5}, bake_time: 1h}\n",
            6,
            "stages[0].bake_time",
            "unknown field 'bake_time'",
        ),
        (
            "  - {name: a, audience: {percent: 5}, min_samples_per: tenant}\n",
            6,
            "stages[0].min_samples_per",
            "needs min_samples",
        ),
    ],
)
def test_stage_errors_name_line_and_field(stages: str, line: int, path: str, message: str) -> None:
    """A bad stage raises an InputError naming its line and field path."""
    with pytest.raises(InputError) as caught:
        load_plan(BASE + stages, "plan.yaml")
    assert (caught.value.line, caught.value.path) == (line, path)
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("guard", "path", "message"),
    [
        ("{metric: e, kind: ratio}", "guards[0].kind", "unknown guard kind 'ratio'"),
        (
            "{metric: e, kind: rate, tolerance: 10}",
            "guards[0].tolerance",
            "relative to the baseline, like '10%'",
        ),
        ("{metric: e, kind: latency, tolerance: fast}", "guards[0].tolerance", "like '50ms'"),
        ("{metric: q, kind: gauge, tolerance: 10%}", "guards[0].tolerance", "no baseline"),
        ("{metric: e, kind: rate, max: 0.02}", "guards[0].max", "percentage like '2%'"),
        ("{metric: e, kind: rate, quantile: 0.9}", "guards[0].quantile", "only latency guards"),
        ("{metric: l, kind: latency, quantile: 95}", "guards[0].quantile", "0.95 or 'p95'"),
        ("{metric: q, kind: gauge, max: 5, by: [tenant]}", "guards[0].by", "system-wide"),
        ("{metric: q, kind: gauge, max_growth: lots}", "guards[0].max_growth", "like '100/min'"),
        (
            "{metric: e, kind: rate, tolerance: 1%, on_regression: panic}",
            "guards[0].on_regression",
            "accepted: rollback, pause",
        ),
        ("{kind: rate}", "guards[0]", "missing field 'metric'"),
        (
            "{metric: e, kind: rate, tolerance: 0.5pp}",
            "guards[0].tolerance",
            "'0.5pp' is '50%'",
        ),
    ],
)
def test_guard_errors_name_the_field(guard: str, path: str, message: str) -> None:
    """A bad guard raises an InputError naming its field path and what is accepted."""
    text = f"flag: f\nunit: user\nguards:\n  - {guard}\nstages:\n  - {{name: a, audience: {{percent: 5}}}}\n"
    with pytest.raises(InputError) as caught:
        load_plan(text, "plan.yaml")
    assert caught.value.path == path
    assert caught.value.line == 4
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("unit: user\nstages: []\n", "", "missing field 'flag'"),
        ("flag: f\nstages: [{name: a, audience: {percent: 1}}]\n", "", "missing field 'unit'"),
        ("flag: f\nunit: user\nstages: []\n", "stages", "at least one stage"),
        (
            "flag: f\nunit: user\nstages: [{name: a, audience: {percent: 1}}]\nwindows: {w: {cron: '0 25 * * *', duration: 1h}}\n",
            "windows.w.cron",
            "outside 0-23",
        ),
        (
            "flag: f\nunit: user\nstages: [{name: a, audience: {percent: 1}}]\nfalse_rollback_rate: 50%\n",
            "false_rollback_rate",
            "between 0.001% and 20%",
        ),
        (
            "flag: f\nunit: user\nstages: [{name: a, audience: {percent: 1}}]\nrollback: {to: off, after: 1h}\n",
            "rollback.after",
            "unknown field",
        ),
        (
            "flag: f\nunit: user\nstages: [{name: a, audience: {percent: 1}}]\nstratum: 7m\n",
            "stratum",
            "divides an hour",
        ),
        (
            "flag: f\nunit: user\nstages: [{name: a, audience: {percent: 1}}]\nstratum: 2h\n",
            "stratum",
            "divides an hour",
        ),
    ],
)
def test_plan_level_errors(text: str, path: str, message: str) -> None:
    """Plan-level problems name the field."""
    with pytest.raises(InputError) as caught:
        load_plan(text, "plan.yaml")
    assert caught.value.path == path
    assert message in caught.value.message


def test_malformed_yaml_is_unreadable_with_line() -> None:
    """Broken YAML is an UnreadableInputError carrying the line number."""
    with pytest.raises(UnreadableInputError) as caught:
        load_plan("flag: f\nunit: user\nstages:\n  - name: a\n   audience: x\n", "plan.yaml")
    assert caught.value.line == 5
    with pytest.raises(UnreadableInputError, match="empty"):
        load_plan("", "plan.yaml")
