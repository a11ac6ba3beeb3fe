"""Evaluation: order of checks, reasons, splits, and that it never raises."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rollwise.core import (
    AttributeCondition,
    Context,
    ErrorCode,
    Flag,
    Operator,
    Reason,
    Rule,
    Split,
    Variant,
    evaluate,
    explain,
    parse_version,
)

ON_OFF = (Variant("off", False), Variant("on", True))
ACME = AttributeCondition("tenant", Operator.IN, ("acme",))


def _flag(**changes: object) -> Flag:
    base = Flag(
        "new-checkout",
        ON_OFF,
        rules=(Rule(serve="on", when=ACME), Rule(serve="on", percent=100, unit="tenant")),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_kill_switch_comes_first() -> None:
    """A killed flag serves the safe default even to a context a rule targets."""
    resolution = evaluate(_flag(killed=True), {"key": "u", "tenant": "acme"})
    assert (resolution.variant, resolution.reason, resolution.enabled) == (
        "off",
        Reason.KILLED,
        False,
    )


def test_minimum_app_version_gates_the_new_variant() -> None:
    """Below the minimum version, or with none, the safe default; at or above, the rules."""
    flag = _flag(min_app_version=parse_version("2.4.0"))
    assert evaluate(flag, {"key": "u", "tenant": "acme", "app_version": "2.3.9"}).reason == (
        Reason.VERSION_BELOW_MINIMUM
    )
    assert evaluate(flag, {"key": "u", "tenant": "acme"}).variant == "off"
    assert evaluate(flag, {"key": "u", "tenant": "acme", "app_version": "2.4.0"}).variant == "on"


def test_rules_apply_in_order_and_report_their_index() -> None:
    """The first matching rule decides; the resolution names it."""
    flag = _flag(rules=(Rule(serve="off", when=ACME), Rule(serve="on")))
    assert evaluate(flag, {"key": "u", "tenant": "acme"}).rule == 0
    resolution = evaluate(flag, {"key": "u", "tenant": "globex"})
    assert (resolution.variant, resolution.rule, resolution.reason) == ("on", 1, Reason.RULE_MATCH)


def test_percent_rule_falls_through_outside_its_share() -> None:
    """Units outside a percent rule's share reach the next rule, then the default."""
    flag = _flag(rules=(Rule(serve="on", percent=0.001),), default="off")
    resolution = evaluate(flag, {"key": "someone"})
    assert resolution.reason in (Reason.FALLTHROUGH, Reason.PERCENT)
    results = {evaluate(flag, {"key": f"u-{i}"}).reason for i in range(2000)}
    assert Reason.FALLTHROUGH in results


def test_split_assigns_every_unit_one_variant_in_proportion() -> None:
    """A 20/30/50 split serves each variant to its share of 20,000 users."""
    variants = (Variant("control", "a"), Variant("b", "b"), Variant("c", "c"))
    flag = Flag(
        "exp", variants, rules=(Rule(serve=Split((("control", 20), ("b", 30), ("c", 50)))),)
    )
    counts = {"control": 0, "b": 0, "c": 0}
    for index in range(20_000):
        resolution = evaluate(flag, {"key": f"user-{index}"})
        assert resolution.reason is Reason.SPLIT
        counts[resolution.variant] += 1
    for name, share in (("control", 0.2), ("b", 0.3), ("c", 0.5)):
        assert abs(counts[name] / 20_000 - share) < 4 * (share * (1 - share) / 20_000) ** 0.5


def test_unit_missing_is_reported_not_guessed() -> None:
    """A tenant-bucketed rule without a tenant gives the safe default with an error code."""
    resolution = evaluate(_flag(), {"key": "u"})
    assert resolution.variant == "off"
    assert resolution.reason is Reason.UNIT_MISSING
    assert resolution.error is ErrorCode.UNIT_MISSING


def test_user_unit_falls_back_to_the_key() -> None:
    """unit user reads the user attribute, else the context key."""
    flag = Flag("f", ON_OFF, rules=(Rule(serve="on", percent=50),))
    for index in range(50):
        by_key = evaluate(flag, Context(f"u-{index}"))
        by_attribute = evaluate(flag, Context("other", {"user": f"u-{index}"}))
        assert by_key.variant == by_attribute.variant


def test_evaluation_never_raises() -> None:
    """A bad context or a broken predicate gives the safe default with reason error."""
    bad = evaluate(_flag(), {"key": "u", "tenant": object()})
    assert (bad.variant, bad.reason, bad.error) == ("off", Reason.ERROR, ErrorCode.INVALID_CONTEXT)
    assert "context.tenant" in bad.message

    class Exploding(AttributeCondition):
        def compile(self):  # type: ignore[no-untyped-def]
            def boom(values: object) -> bool:
                raise RuntimeError("boom")

            return boom

    flag = _flag(rules=(Rule(serve="on", when=Exploding("tenant", Operator.IN, ("x",))),))
    broken = evaluate(flag, {"key": "u"})
    assert (broken.variant, broken.reason, broken.error) == ("off", Reason.ERROR, ErrorCode.GENERAL)
    assert "boom" in broken.message


def test_rule_with_unknown_variant_is_refused_when_built() -> None:
    """A rule that serves a variant the flag lacks cannot be constructed."""
    with pytest.raises(ValueError, match="no variant 'blue'"):
        Flag("f", ON_OFF, rules=(Rule(serve="blue"),))


def test_explain_shows_buckets_and_agrees_with_evaluate() -> None:
    """explain() returns evaluate()'s resolution, with the bucket test of the deciding rule."""
    flag = _flag(rules=(Rule(serve="on", when=ACME), Rule(serve="on", percent=25, unit="tenant")))
    for tenant in ("acme", "globex", "initech", "hooli"):
        context = {"key": "u", "tenant": tenant}
        explanation = explain(flag, context)
        assert explanation.resolution == evaluate(flag, context)
        if tenant != "acme":
            step = explanation.steps[-1]
            assert step.bucket is not None and step.limit == 25_000
            assert (step.bucket < step.limit) == explanation.resolution.enabled
