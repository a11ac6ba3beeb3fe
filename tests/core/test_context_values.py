"""A plain dict context read in place evaluates exactly as the ``Context`` made of the
attributes the flag reads; what no rule reads is never looked at."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from rollwise import Client
from rollwise.core import (
    Context,
    ErrorCode,
    Flag,
    InputError,
    Reason,
    Resolution,
    context_values,
    evaluate,
    load_flags,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "checkout" / "flags.yaml"

#: One flag per rule operator (and a split, a user unit, conditions on key and user).
OPERATORS = """
segments:
  staff: {when: [{team: [ops, dev]}]}
flags:
  op-in: {variants: [off, on], rules: [{when: [{tenant: [acme, "1", 2]}], serve: on}]}
  op-not-in: {variants: [off, on], rules: [{when: [{tenant: {not_in: [acme]}}], serve: on}]}
  op-equals: {variants: [off, on], rules: [{when: [{beta: {equals: true}}], serve: on}]}
  op-not-equals: {variants: [off, on], rules: [{when: [{seats: {not_equals: 3}}], serve: on}]}
  op-starts: {variants: [off, on], rules: [{when: [{region: {starts_with: eu-}}], serve: on}]}
  op-ends: {variants: [off, on], rules: [{when: [{email: {ends_with: "@a.io"}}], serve: on}]}
  op-contains: {variants: [off, on], rules: [{when: [{email: {contains: x}}], serve: on}]}
  op-matches: {variants: [off, on], rules: [{when: [{tenant: {matches: "^a.c"}}], serve: on}]}
  op-numbers:
    variants: [off, on]
    rules:
      - when: [{seats: {lt: 5}}, {score: {gte: 0.5}}]
        serve: on
      - when: [{seats: {lte: 10, gt: 6}}]
        serve: on
  op-semver:
    variants: [off, on]
    rules:
      - when: [{app_version: {semver_gte: 2.4.0, semver_lt: 3.0.0}}]
        serve: on
      - when: [{app_version: {semver_eq: 1.0.0}}]
        serve: on
      - when: [{app_version: {semver_lte: 0.9.0}}]
        serve: on
      - when: [{app_version: {semver_gt: 9.0.0}}]
        serve: on
  op-time:
    variants: [off, on]
    rules:
      - when: [{signed_up: {before: "2024-01-01T00:00:00Z"}}]
        serve: on
      - when: [{signed_up: {after: "2030-01-01T00:00:00Z"}}]
        serve: on
  op-cidr: {variants: [off, on], rules: [{when: [{ip: {cidr: [10.0.0.0/8, "::1/128"]}}], serve: on}]}
  op-exists: {variants: [off, on], rules: [{when: [{tenant: {exists: false}}], serve: on}]}
  op-user-exists: {variants: [off, on], rules: [{when: [{user: {exists: true}}], serve: on}]}
  op-not: {variants: [off, on], rules: [{when: [{not: {segment: staff}}], percent: 50, serve: on}]}
  op-any:
    variants: [off, on]
    rules: [{when: [{any: [{team: [ops]}, {region: [us-1]}]}], serve: on}]
  by-user:
    variants: [control, a, b]
    rules: [{percent: 80, serve: {split: {a: 50, b: 50}}}]
  by-tenant:
    variants: [off, on]
    unit: tenant
    min_app_version: 2.0.0
    rules: [{percent: 50, serve: on}]
  on-key-and-user:
    variants: [off, on]
    rules:
      - when: [{key: [u-1, "7"]}]
        serve: on
      - when: [{user: [u-2, "8"]}]
        percent: 100
        serve: on
"""

FLAGS: list[Flag] = [
    *load_flags(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE)).flags.values(),
    *load_flags(OPERATORS, "operators").flags.values(),
]


class Tier(StrEnum):
    GOLD = "gold"


class Texts(list[str]):
    """A list subclass: ``Context.of`` makes a tuple of it."""


NAMES = st.sampled_from(
    ["key", "user", "tenant", "team", "region", "email", "beta", "seats", "score",
     "app_version", "signed_up", "ip", "traffic_type", "other"]
)  # fmt: skip
TEXTS = st.sampled_from(
    ["", "acme", "abc", "1", "7", "8", "u-1", "u-2", "ops", "dev", "eu-west", "us-1",
     "x@a.io", "2.5.0", "1.0.0", "0.1.0", "10.0.0.1", "::1", "2020-05-01T00:00:00Z",
     "2031-01-01", "not a version"]
)  # fmt: skip
GOOD = st.one_of(
    st.none(),
    TEXTS,
    st.booleans(),
    st.integers(-3, 12),
    st.floats(allow_nan=True),
    st.lists(TEXTS, max_size=3),
    st.lists(TEXTS, max_size=3).map(tuple),
)
#: What Context.of refuses, converts, or keeps though it is not a plain type.
ODD = st.one_of(
    st.just(Tier.GOLD),
    st.lists(TEXTS, max_size=2).map(Texts),
    st.lists(st.one_of(TEXTS, st.integers()), min_size=1, max_size=3),
    st.sets(TEXTS, max_size=2),
    st.dictionaries(TEXTS, TEXTS, max_size=1),
    st.binary(max_size=2),
    st.builds(object),
)
CONTEXTS = st.one_of(
    st.dictionaries(NAMES, GOOD, max_size=6),
    st.dictionaries(st.one_of(NAMES, st.integers(0, 2)), st.one_of(GOOD, ODD), max_size=6),
)


def _read_by(flag: Flag) -> set[str]:
    """The attributes an evaluation of ``flag`` may read: its conditions', the units its
    percentages and splits bucket by, ``app_version`` under a minimum, and the key whenever
    the user is read (a dict's user may be its key)."""
    read = {name for rule in flag.rules if rule.when for name in rule.when.attributes()}
    read.update(
        rule.unit or flag.unit
        for rule in flag.rules
        if rule.percent is not None or not isinstance(rule.serve, str)
    )
    if flag.min_app_version is not None:
        read.add("app_version")
    if "user" in read:
        read.add("key")
    return read


def _unreadable(name: str, value: object) -> str | None:
    """``Context.of``'s complaint about this one attribute, or None when it reads it."""
    try:
        Context.of({name: value})
    except InputError as exc:
        return str(exc)
    return None


#: Values ``Context.of`` takes, put in place of an unreadable one to see whether it matters.
PROBES: tuple[object, ...] = (None, "acme", "u-2", "ops", "x@a.io", 7, 0.75, True, ("eu-west",))


def _check(flag: Flag, context: Mapping[str, object], found: Resolution) -> None:
    """What a lazy reading of a dict must give: with every attribute the flag may read
    readable, what ``Context.of`` of them gives. Otherwise either that same answer for the
    readable ones alone (the unreadable ones were not read), or ``Context.of``'s error for one
    of the unreadable ones (it was read); and when one unreadable attribute decides the answer
    (other values there give other answers), that one's error."""
    read = _read_by(flag)
    named = {n: v for n, v in context.items() if n.__class__ is str and n in read}
    bad = {n: why for n, v in named.items() if (why := _unreadable(n, v)) is not None}
    readable = {n: v for n, v in named.items() if n not in bad}
    clean = evaluate(flag, Context.of(readable))
    if not bad:
        assert found == clean
        return
    failed = found.error is ErrorCode.INVALID_CONTEXT
    assert found == clean or (failed and found.message in bad.values()), (found, clean, bad)
    if len(bad) == 1:
        ((name, why),) = bad.items()
        answers = {
            evaluate(flag, Context.of({**readable, name: probe}))
            for probe in PROBES
            if _unreadable(name, probe) is None
        }
        if len(answers | {clean}) > 1:  # the attribute decides: the evaluation reads it
            assert failed and found.message == why, (found, answers)


@settings(max_examples=600, deadline=None)
@given(CONTEXTS)
def test_a_plain_dict_evaluates_as_its_context(context: dict[str, object]) -> None:
    """For every flag, evaluate, resolve and enabled on a dict give what Context.of gives for
    the attributes the evaluation reads, and fail on an unreadable one only when it is
    read (``_check``)."""
    client = Client(load_flags(OPERATORS, "operators"))
    for flag in FLAGS:
        found = evaluate(flag, context)
        _check(flag, context, found)
        if flag.key in client.flags.flags:
            assert client.resolve(flag.key, context) == found
            assert client.enabled(flag.key, context) is found.enabled


def test_a_dict_is_read_afresh_at_every_call() -> None:
    """Nothing is kept between calls: a dict changed in place is read as it is now."""
    flag = load_flags(OPERATORS, "operators").flags["op-in"]
    context: dict[str, object] = {"key": "u-1", "tenant": "acme"}
    assert evaluate(flag, context).variant == "on"
    context["tenant"] = "globex"
    assert evaluate(flag, context).variant == "off"
    context["tenant"] = ["x", "acme"]
    assert evaluate(flag, context).variant == "on"
    context["tenant"] = object()
    assert evaluate(flag, context).error is ErrorCode.INVALID_CONTEXT


def test_a_plain_dict_is_read_in_place_and_never_changed() -> None:
    """A dict of plain values is not copied unless its key must become text; it is never
    written to."""
    context: dict[str, object] = {"key": "u-1", "tenant": "acme", "roles": ["a"]}
    assert context_values(context) is context
    assert context == {"key": "u-1", "tenant": "acme", "roles": ["a"]}
    numbered: dict[str, object] = {"key": 7, "tenant": "acme"}
    assert context_values(numbered) == {"key": "7", "user": "7", "tenant": "acme"}
    assert numbered == {"key": 7, "tenant": "acme"}


def test_an_unread_attribute_is_never_looked_at() -> None:
    """An attribute no rule reads is not checked, whatever it holds: the flag is evaluated on
    what it reads. One it reads that cannot be read fails the context, as ever."""
    flag = load_flags(OPERATORS, "operators").flags["by-user"]
    plain = evaluate(flag, {"key": "u-1"})
    odd = evaluate(flag, {"key": "u-1", "unused": {"a": 1}, 3: object()})
    assert odd == plain
    assert plain.error is None
    resolution = evaluate(flag, {"key": ["u-1"], "unused": "x"})
    assert (resolution.reason, resolution.error) == (Reason.ERROR, ErrorCode.INVALID_CONTEXT)
    assert "context.key" in resolution.message


def test_an_attribute_is_read_only_on_the_path_taken() -> None:
    """Reading is lazy: an unreadable attribute fails the evaluation when a rule on its path
    reads it, and not when an earlier condition already decided the rule."""
    flags = load_flags(OPERATORS, "operators").flags
    numbers = flags["op-numbers"]  # rule 1: seats < 5 and score >= 0.5; rule 2: seats in (6, 10]
    assert evaluate(numbers, {"key": "u", "seats": 3, "score": 0.9}).variant == "on"
    # seats 8 fails rule 1 at its first condition: score is not read.
    assert evaluate(numbers, {"key": "u", "seats": 8, "score": object()}).variant == "on"
    failed = evaluate(numbers, {"key": "u", "seats": 3, "score": object()})
    assert failed.error is ErrorCode.INVALID_CONTEXT
    assert "context.score" in failed.message
    # A list of text reads as a tuple; an integer key as text, for the user and for the key.
    assert evaluate(flags["op-in"], {"tenant": ["x", "acme"]}).variant == "on"
    assert evaluate(flags["on-key-and-user"], {"key": 7}).variant == "on"
    assert evaluate(flags["on-key-and-user"], {"key": 8}).variant == "on"
    by_user = flags["by-user"]
    assert evaluate(by_user, {"key": 42}) == evaluate(by_user, Context("42"))
    for key in (True, 1.5, ["u"]):
        assert "context.key" in evaluate(by_user, {"key": key}).message
    # The user folded in from the key is read only where a rule reads the user.
    folded = load_flags(
        "flags:\n  f:\n    variants: [off, on]\n    rules:\n"
        "      - {when: [{tenant: [acme]}], serve: on}\n"
        "      - {when: [{user: [u-2]}], serve: on}\n",
        "folded",
    ).flags["f"]
    assert evaluate(folded, {"key": True, "tenant": "acme"}).variant == "on"
    failed = evaluate(folded, {"key": True, "tenant": "globex"})
    assert (failed.error, failed.message) == (
        ErrorCode.INVALID_CONTEXT,
        "context.key: must be text or an integer",
    )
    assert evaluate(folded, {"key": Tier.GOLD}) == evaluate(folded, Context.of({"key": "gold"}))


#: Flags of the shape ``Program._run_bucketed`` serves: one rule, no condition, bucketing.
BUCKETED = """
flags:
  quarter: {variants: [off, on], rules: [{percent: 25, serve: on}]}
  nothing: {variants: [off, on], rules: [{percent: 0, serve: on}]}
  split: {variants: [c, a, b], rules: [{percent: 80, serve: {split: {a: 30, b: 70}}}]}
  by-tenant: {variants: [off, on], unit: tenant, default: on, rules: [{percent: 40, serve: off}]}
"""


@settings(max_examples=400, deadline=None)
@given(CONTEXTS)
def test_the_bucketed_path_answers_as_the_general_one(context: dict[str, object]) -> None:
    """A flag of one unconditional percentage or split takes a shorter path (``_run_bucketed``):
    on any dict, its ``Context`` and the ``Context``'s values, it gives what the general path
    gives, and a killed copy of it takes the general path."""
    contexts: list[object] = [context]
    try:
        built = Context.of(context)
    except InputError:
        pass
    else:
        contexts += [built, built.values]
    for flag in load_flags(BUCKETED, "bucketed").flags.values():
        program = flag.program
        evaluate(flag, {})  # compiled
        assert program.run == program._run_bucketed
        killed = flag.kill_switched(True)
        assert killed.program.run == killed.program._run
        assert evaluate(killed, context).reason is Reason.KILLED
        for each in contexts:
            try:
                expected: object = program._run(each)  # type: ignore[arg-type]
            except InputError as exc:
                expected = str(exc)
            try:
                found: object = program.run(each)  # type: ignore[arg-type]
            except InputError as exc:
                found = str(exc)
            assert found == expected
