"""Targeting conditions: each operator, missing and list attributes, combinators, segments."""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest

from rollwise.core import (
    AttributeCondition,
    Condition,
    Context,
    InputError,
    Operator,
    Segment,
    load_flags,
)
from rollwise.core._document import load_document
from rollwise.core._flagfile import parse_condition


def _condition(yaml_text: str, segments: Mapping[str, Segment] | None = None) -> Condition:
    return parse_condition(load_document(yaml_text), segments or {})


def _matches(yaml_text: str, **attributes: object) -> bool:
    key = attributes.pop("key", "u-1")
    context = Context.of({"key": key, **attributes})
    return _condition(yaml_text).compile()(context.values)


@pytest.mark.parametrize(
    ("condition", "attributes", "expected"),
    [
        ("{tenant: {in: [acme, globex]}}", {"tenant": "acme"}, True),
        ("{tenant: {in: [acme, globex]}}", {"tenant": "initech"}, False),
        ("{tenant: [acme, globex]}", {"tenant": "globex"}, True),
        ("{tenant: {not_in: [acme]}}", {"tenant": "globex"}, True),
        ("{tenant: {not_in: [acme]}}", {"tenant": "acme"}, False),
        ("{tenant: {equals: acme}}", {"tenant": "acme"}, True),
        ("{tenant: acme}", {"tenant": "acme"}, True),
        ("{tenant: {not_equals: acme}}", {"tenant": "acme"}, False),
        ("{email: {starts_with: admin}}", {"email": "admin@x.io"}, True),
        ("{email: {ends_with: ['@acme.com', '@acme.io']}}", {"email": "a@acme.io"}, True),
        ("{email: {ends_with: '@acme.com'}}", {"email": "a@other.com"}, False),
        ("{email: {contains: acme}}", {"email": "a@acme.com"}, True),
        ("{path: {matches: '^/api/v[23]/'}}", {"path": "/api/v3/orders"}, True),
        ("{path: {matches: '^/api/v[23]/'}}", {"path": "/api/v1/orders"}, False),
        ("{seats: {gt: 10}}", {"seats": 11}, True),
        ("{seats: {gt: 10}}", {"seats": 10}, False),
        ("{seats: {gte: 10}}", {"seats": 10}, True),
        ("{seats: {lt: 10.5}}", {"seats": 10}, True),
        ("{seats: {lte: 10}}", {"seats": 10.5}, False),
        ("{seats: {gt: 0}}", {"seats": True}, False),
        ("{seats: {gt: 0}}", {"seats": "5"}, False),
        ("{app_version: {semver_gte: 2.4.0}}", {"app_version": "2.10.0"}, True),
        ("{app_version: {semver_gte: 2.4.0}}", {"app_version": "2.4.0-rc.1"}, False),
        ("{app_version: {semver_lt: '3'}}", {"app_version": "2.99.1"}, True),
        ("{app_version: {semver_eq: 2.4}}", {"app_version": "2.4.0+build7"}, True),
        ("{app_version: {semver_gt: 2.4.0}}", {"app_version": "not-a-version"}, False),
        ("{app_version: {semver_lte: 2.4.0}}", {"app_version": "2.4.0"}, True),
        (
            "{signed_up: {before: 2026-01-01T00:00:00Z}}",
            {"signed_up": "2025-12-31T23:59:59Z"},
            True,
        ),
        (
            "{signed_up: {before: 2026-01-01T00:00:00Z}}",
            {"signed_up": "2026-01-01T00:00:01+00:00"},
            False,
        ),
        ("{signed_up: {after: 2026-01-01}}", {"signed_up": 1800000000}, True),
        ("{signed_up: {after: 2026-01-01}}", {"signed_up": "yesterday"}, False),
        ("{ip: {cidr: 10.0.0.0/8}}", {"ip": "10.20.30.40"}, True),
        ("{ip: {cidr: [10.0.0.0/8, '2001:db8::/32']}}", {"ip": "2001:db8::1"}, True),
        ("{ip: {cidr: 10.0.0.0/8}}", {"ip": "192.168.1.1"}, False),
        ("{ip: {cidr: 10.0.0.0/8}}", {"ip": "not-an-ip"}, False),
        ("{beta: {exists: true}}", {"beta": "yes"}, True),
        ("{beta: {exists: false}}", {}, True),
        ("{groups: {in: [admins]}}", {"groups": ["staff", "admins"]}, True),
        ("{groups: {not_in: [admins]}}", {"groups": ["staff", "admins"]}, False),
        ("{groups: {not_in: [admins]}}", {"groups": ["staff"]}, True),
        ("{key: {starts_with: u-}}", {}, True),
        ("{seats: {equals: 1}}", {"seats": True}, False),
        ("{beta: {equals: true}}", {"beta": 1}, False),
        ("{beta: {equals: true}}", {"beta": True}, True),
        ("{seats: {in: [1, 2]}}", {"seats": 2}, True),
        ("{groups: {not_equals: free}}", {"groups": ["free", "pro"]}, False),
        ("{groups: {not_equals: free}}", {"groups": ["pro"]}, True),
    ],
)
def test_operator(condition: str, attributes: dict[str, object], expected: bool) -> None:
    """Each operator matches what its documentation says, and only that."""
    assert _matches(condition, **attributes) is expected


@pytest.mark.parametrize(
    "condition",
    [
        "{tenant: {in: [acme]}}",
        "{tenant: {not_in: [acme]}}",
        "{tenant: {not_equals: acme}}",
        "{tenant: {matches: '.*'}}",
        "{seats: {lt: 100}}",
        "{app_version: {semver_lt: 9.0.0}}",
        "{ip: {cidr: 0.0.0.0/0}}",
    ],
)
def test_missing_attribute_makes_every_attribute_condition_false(condition: str) -> None:
    """An absent attribute is false for every operator, not_in and not_equals included."""
    assert _matches(condition) is False


def test_combinators_compose() -> None:
    """all / any / not and lists (all) combine as boolean logic."""
    text = "{any: [{tenant: acme}, {all: [{region: eu-west}, {not: {tier: free}}]}]}"
    assert _matches(text, tenant="acme")
    assert _matches(text, region="eu-west", tier="pro")
    assert not _matches(text, region="eu-west", tier="free")
    assert not _matches(text, region="us-east", tier="pro")
    assert _matches("[{tenant: acme}, {tier: pro}]", tenant="acme", tier="pro")
    assert not _matches("[{tenant: acme}, {tier: pro}]", tenant="acme", tier="free")
    assert _matches("{tenant: acme, tier: pro}", tenant="acme", tier="pro")
    assert _matches("{seats: {gt: 1, lt: 5}}", seats=3)
    assert not _matches("{seats: {gt: 1, lt: 5}}", seats=5)


def test_segment_references_resolve_to_the_segment_condition() -> None:
    """A segment reference matches exactly the segment's members, nested segments included."""
    flags = load_flags(
        """
segments:
  staff: {when: [{team: [checkout]}]}
  testers: {when: {any: [{segment: staff}, {email: {ends_with: '@qa.io'}}]}}
"""
    )
    condition = _condition("{segment: testers}", flags.segments)
    assert condition.segments() == {"testers", "staff"}
    assert condition.attributes() == {"team", "email"}
    predicate = condition.compile()
    assert predicate(Context("u", {"team": "checkout"}).values)
    assert predicate(Context("u", {"email": "x@qa.io"}).values)
    assert not predicate(Context("u", {"team": "sales"}).values)


def test_regex_is_compiled_once_when_parsed() -> None:
    """The regex operand is a compiled pattern in the model, not text re-compiled per call."""
    condition = _condition("{path: {matches: '^/v2'}}")
    assert isinstance(condition, AttributeCondition)
    assert condition.operator is Operator.MATCHES
    assert isinstance(condition.operand[0], re.Pattern)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{tenant: {like: acme}}", "unknown operator 'like'"),
        ("{path: {matches: '(['}}", "invalid regular expression"),
        ("{seats: {gt: many}}", "'gt' needs a number"),
        ("{v: {semver_gte: banana}}", "expected a semantic version"),
        ("{t: {before: soon}}", "expected an ISO 8601 timestamp"),
        ("{ip: {cidr: 10.0.0.0/99}}", "expected a network"),
        ("{segment: nobody}", "unknown segment 'nobody'"),
        ("{beta: {exists: maybe}}", "'exists' needs true or false"),
        ("{any: []}", "'any' needs at least one condition"),
    ],
)
def test_bad_conditions_are_named(text: str, message: str) -> None:
    """A bad condition raises an InputError that says what is wrong."""
    with pytest.raises(InputError, match=re.escape(message)):
        _condition(text)


def test_describe_reads_like_the_rule() -> None:
    """describe() gives a one-line human form."""
    condition = _condition("{any: [{tenant: [acme, globex]}, {not: {tier: free}}]}")
    assert condition.describe() == "tenant in [acme, globex] or not tier equals free"
