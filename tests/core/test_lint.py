"""The linter: every rule fires on a plan that has its problem, and stays quiet on a near miss."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from rollwise.core import RULES, FlagSet, Severity, lint, load_flags, load_plan

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PLAN = yaml.safe_load((ROOT / "examples/checkout/plan.yaml").read_text())
# PyYAML reads the bare on/off of the file as booleans; rollwise reads them as variant names.
EXAMPLE_PLAN.update(variant="on", rollback={"to": "off"})
# Without declared traffic the simulation rule (RW019) stays out of the other rules' tests.
DECLARED_TRAFFIC = EXAMPLE_PLAN.pop("traffic")
EXAMPLE_FLAGS = load_flags((ROOT / "examples/checkout/flags.yaml").read_text())

Plan = dict[str, Any]


def _codes(plan: Plan, flags: FlagSet | None = EXAMPLE_FLAGS) -> set[str]:
    return {finding.code for finding in lint(load_plan(yaml.safe_dump(plan), "plan.yaml"), flags)}


def _edit(change: Callable[[Plan], object]) -> Plan:
    plan = copy.deepcopy(EXAMPLE_PLAN)
    change(plan)
    return plan


def _stage(plan: Plan, name: str) -> dict[str, Any]:
    return next(stage for stage in plan["stages"] if stage["name"] == name)


def _set(target: Callable[[Plan], dict[str, Any]], **fields: object) -> Callable[[Plan], object]:
    return lambda plan: target(plan).update(fields)


def _drop(target: Callable[[Plan], dict[str, Any]], field: str) -> Callable[[Plan], object]:
    return lambda plan: target(plan).pop(field)


def _root(plan: Plan) -> dict[str, Any]:
    return plan


def _first_guard(plan: Plan) -> dict[str, Any]:
    return plan["guards"][0]  # type: ignore[no-any-return]


def _gauge(plan: Plan) -> dict[str, Any]:
    return plan["guards"][3]  # type: ignore[no-any-return]


def _named(name: str) -> Callable[[Plan], dict[str, Any]]:
    return lambda plan: _stage(plan, name)


def _only_percent_stages(first_percent: float) -> Callable[[Plan], object]:
    def change(plan: Plan) -> None:
        plan["stages"] = [
            {
                "name": "first",
                "audience": {"percent": first_percent},
                "bake": "1h",
                "min_samples": 100,
            },
            {"name": "all", "audience": {"percent": 100}, "holdback": "2%"},
        ]

    return change


def _irreversible_first(plan: Plan) -> None:
    _stage(plan, "internal").update(irreversible=True, approval="required")
    _stage(plan, "pilot-tenant").update(irreversible=False)


#: (code, a change that triggers the rule, a near miss that must not)
CASES: list[tuple[str, Callable[[Plan], object], Callable[[Plan], object]]] = [
    ("RW001", _set(_root, guards=[]), _set(_root, guards=[EXAMPLE_PLAN["guards"][3]])),
    ("RW002", _drop(_first_guard, "tolerance"), _set(_first_guard, max="2%", tolerance=None)),
    (
        "RW002",
        _drop(_gauge, "max"),
        lambda plan: (_gauge(plan).pop("max"), _gauge(plan).update(max_growth="50/min")),
    ),
    (
        "RW003",
        _set(_root, stages=[{"name": "all", "audience": {"percent": 100}, "holdback": "2%"}]),
        _only_percent_stages(5),
    ),
    (
        "RW004",
        _set(_named("quarter"), audience={"percent": 4}),
        _set(_named("quarter"), audience={"percent": 5}),
    ),
    (
        "RW004",
        _set(_named("all"), holdback="80%"),
        _set(_named("all"), holdback="75%"),
    ),
    ("RW005", _drop(_named("quarter"), "min_samples"), _drop(_named("all"), "bake")),
    ("RW006", _only_percent_stages(10), _only_percent_stages(5)),
    (
        "RW007",
        _drop(_named("pilot-tenant"), "approval"),
        _set(_named("pilot-tenant"), approval="required"),
    ),
    (
        "RW008",
        _irreversible_first,
        _set(_named("five-percent"), irreversible=True, approval="required"),
    ),
    (
        "RW009",
        _set(_root, unit="request"),
        lambda plan: (
            plan.update(unit="request"),
            plan["guards"][0].pop("by"),
            plan["stages"].__delitem__(1),
        ),
    ),
    ("RW010", _drop(_named("all"), "holdback"), _set(_named("all"), holdback="1%")),
    (
        "RW011",
        _set(_named("pilot-tenant"), cover=["weekly-report"]),
        _set(_named("pilot-tenant"), cover=["nightly-settlement"]),
    ),
    ("RW012", _set(_named("pilot-tenant"), bake="20m"), _set(_named("pilot-tenant"), bake="30m")),
    (
        "RW013",
        _set(_named("internal"), audience={"segments": ["staff"]}),
        _set(_named("internal"), audience={"segments": ["eu"]}),
    ),
    (
        "RW014",
        _set(_first_guard, metric="checkout.errors"),
        _set(_first_guard, metric="checkout.abandoned"),
    ),
    (
        "RW014",
        _set(_first_guard, kind="latency", tolerance="5ms"),
        _set(_first_guard, kind="rate", tolerance="5%"),
    ),
    ("RW015", _set(_root, flag="old-checkout"), _set(_root, flag="new-checkout")),
    ("RW015", _set(_root, variant="off"), _set(_root, variant="on")),
    ("RW015", _set(_root, rollback={"to": "legacy"}), _set(_root, rollback={"to": "off"})),
    ("RW021", _set(_root, unit="user"), _set(_root, unit="tenant")),
    ("RW016", _set(_named("quarter"), bake="3d"), _set(_named("quarter"), bake="2d")),
    ("RW017", _drop(_root, "max_stage_duration"), _set(_root, max_stage_duration="5d")),
    ("RW020", _set(_root, unit="region"), _set(_root, unit="user")),
]


def test_example_plan_is_clean_with_its_flags() -> None:
    """The shipped example has no finding but one when checked against its flags file,
    including the simulation at its declared traffic: the warning that whole tenants are
    compared with other tenants (unit: tenant), which is true of it."""
    assert _codes({**EXAMPLE_PLAN, "traffic": DECLARED_TRAFFIC}) == {"RW020"}


LOW_TRAFFIC_PLAN: Plan = {
    "flag": "new-checkout",
    "unit": "user",
    "max_stage_duration": "1d",
    "guards": [{"metric": "checkout.error", "kind": "rate", "tolerance": "10%"}],
    "stages": [
        {"name": "canary", "audience": {"percent": 1}, "bake": "1h", "min_samples": 100},
        {"name": "all", "audience": {"percent": 100}, "holdback": "2%"},
    ],
}


def test_rw019_simulates_detection_at_the_declared_traffic() -> None:
    """At 2 requests/s a 1 % canary cannot catch a 2x regression within a day; at 2,000/s it
    can; without declared traffic the rule does not run."""
    assert "RW019" in _codes({**LOW_TRAFFIC_PLAN, "traffic": "2/s"}, flags=None)
    assert "RW019" not in _codes({**LOW_TRAFFIC_PLAN, "traffic": "2000/s"}, flags=None)
    assert "RW019" not in _codes(LOW_TRAFFIC_PLAN, flags=None)


@pytest.mark.parametrize(("code", "trigger", "near_miss"), CASES, ids=[c[0] for c in CASES])
def test_rule_fires_on_its_problem_and_not_on_a_near_miss(
    code: str, trigger: Callable[[Plan], object], near_miss: Callable[[Plan], object]
) -> None:
    """The rule's code appears for the faulty plan and not for the corrected one."""
    assert code in _codes(_edit(trigger))
    assert code not in _codes(_edit(near_miss))


def test_rw018_says_references_were_not_checked_without_flags() -> None:
    """Without a flags file an info finding says what was skipped; with one it is gone."""
    assert "RW018" in _codes(EXAMPLE_PLAN, flags=None)
    assert "RW018" not in _codes(EXAMPLE_PLAN)
    # And the checks that need flags stay quiet rather than guess.
    unknown_segment = _edit(_set(_named("internal"), audience={"segments": ["staff"]}))
    assert "RW013" not in _codes(unknown_segment, flags=None)


def test_every_rule_is_tested_and_documented() -> None:
    """Each rule has a case here (RW018 above) and a section in docs/lint.md with its code."""
    tested = {code for code, _, _ in CASES} | {"RW018", "RW019"}
    assert {rule.code for rule in RULES} == tested
    docs = (ROOT / "docs" / "lint.md").read_text()
    for rule in RULES:
        heading = re.search(
            rf"^## {rule.code} `{rule.name}` \({rule.severity.value}\)$", docs, re.M
        )
        assert heading, f"docs/lint.md lacks '## {rule.code} `{rule.name}` ({rule.severity.value})'"
        anchor = f'<a id="{rule.code.lower()}-{rule.name}"></a>'
        assert anchor in docs, f"docs/lint.md lacks the anchor {anchor}"


def test_codes_are_unique_and_stable() -> None:
    """Codes never repeat; findings carry code, severity, path, line and a docs link."""
    codes = [rule.code for rule in RULES]
    assert len(codes) == len(set(codes))
    plan = load_plan(yaml.safe_dump(_edit(_drop(_named("pilot-tenant"), "approval"))), "plan.yaml")
    (finding,) = [f for f in lint(plan, EXAMPLE_FLAGS) if f.code == "RW007"]
    assert finding.severity is Severity.ERROR
    assert finding.path == "stages[1]"
    assert finding.line is not None
    assert finding.docs == "docs/lint.md#rw007-irreversible-without-approval"
