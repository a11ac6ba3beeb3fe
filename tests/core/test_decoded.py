"""A flags document decoded from JSON reads to what the YAML reader makes of the same document
written as JSON text: the same flag set, or the same error (type, message, field path)."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollwise.core import FlagSet, InputError, UnreadableInputError, load_flags
from rollwise.core._decoded import _Limits, read_document, read_flags_document
from rollwise.core._document import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_NODES,
    _BoundedLoader,
    load_document,
)
from rollwise.core._flagdump import flags_document

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "checkout" / "flags.yaml"

#: Conditions of every operator, combinator and shorthand the flags format has.
_CONDITIONS: list[Any] = [
    {"tenant": {"in": ["acme", "globex"]}},
    {"tenant": {"not_in": "initech"}},
    {"plan": {"equals": "gold"}},
    {"seats": {"equals": 3}},
    {"beta": {"equals": True}},
    {"plan": {"not_equals": "free"}},
    {"region": {"starts_with": ["eu-", "uk-"]}},
    {"email": {"ends_with": "@example.com"}},
    {"path": {"contains": "/checkout"}},
    {"path": {"matches": "^/v[23]/"}},
    {"seats": {"lt": 10}},
    {"seats": {"lte": 10.5}},
    {"score": {"gt": -1}},
    {"score": {"gte": 0.25}},
    {"app_version": {"semver_gte": "2.4.0"}},
    {"app_version": {"semver_lt": "3.0.0-rc.1"}},
    {"signed_up": {"after": "2026-01-01T00:00:00+00:00"}},
    {"signed_up": {"before": "2027-01-01T00:00:00Z"}},
    {"ip": {"cidr": ["10.0.0.0/8", "192.168.0.0/16"]}},
    {"email": {"exists": True}},
    {"tenant": "acme"},
    {"tenant": ["acme", "globex"]},
    {"segment": "staff"},
    {"not": {"segment": "eu"}},
    {"any": [{"segment": "eu"}, {"tier": {"in": ["pro"]}}]},
    {"all": [{"segment": "staff"}, {"seats": {"gte": 5}}]},
    [{"region": "eu-west"}, {"not": {"tier": "free"}}],
]


def generated_document(count: int, seed: int = 7) -> dict[str, Any]:
    """A flags document of ``count`` flags drawn (with a fixed seed) from every field, operator
    and value type a flag can have."""
    rng = random.Random(seed)
    flags: dict[str, Any] = {}
    for index in range(count):
        shape = rng.randrange(4)
        if shape == 0:
            variants: Any = ["off", "on"]
        elif shape == 1:
            variants = {"off": False, "on": True}
        elif shape == 2:
            variants = {"control": 0, "treatment": 1.5, "holdout": "none"}
        else:
            variants = ["control", "treatment"]
        names = variants if isinstance(variants, list) else list(variants)
        rules = []
        for _ in range(rng.randrange(4)):
            rule: dict[str, Any] = {}
            if rng.random() < 0.8:
                rule["when"] = copy.deepcopy(rng.choice(_CONDITIONS))
            if rng.random() < 0.5:
                rule["percent"] = rng.choice([5, 25, 37.5, 100, 0.125])
            if rng.random() < 0.2:
                rule["unit"] = "tenant"
            if rng.random() < 0.3:
                rule["description"] = f"rule of flag {index}"
            if rng.random() < 0.25:
                rule["serve"] = {"split": {names[0]: 40, names[1]: 60}}
            else:
                rule["serve"] = rng.choice(names[1:])
            rules.append(rule)
        flag: dict[str, Any] = {"variants": variants, "rules": rules}
        for name, value in [
            ("unit", rng.choice(["user", "tenant", "request"])),
            ("salt", f"salt-{index}"),
            ("min_app_version", "2.4.0"),
            ("killed", rng.random() < 0.1),
            ("default", names[-1]),
            ("description", f'Generated flag {index}: ünïcode and "quotes"\tand a tab.'),
        ]:
            if rng.random() < 0.5:
                flag[name] = value
        flags[f"team-{index % 13}.flag-{index:04d}"] = flag
    return {
        "segments": {
            "staff": {"when": [{"team": ["checkout", "payments"]}], "description": "people"},
            "eu": {"when": {"region": {"starts_with": "eu-"}}},
        },
        "metrics": {"checkout.error": "rate", "checkout.latency": {"kind": "latency"}},
        "flags": flags,
    }


def through_yaml(document: object) -> FlagSet:
    """The old path: the decoded document written back as JSON text and read as YAML."""
    return load_flags(json.dumps(document), "snapshot")


def through_dicts(document: Any) -> FlagSet:
    return read_flags_document(document, "snapshot").flags


def outcome(read: Any, document: object) -> tuple[str, ...] | FlagSet:
    """What reading gives: the flag set, or the error's type, message, path and source."""
    try:
        return read(document)  # type: ignore[no-any-return]
    except InputError as exc:
        return (type(exc).__name__, exc.message, exc.path, exc.source or "")


def test_the_example_flags_read_the_same_both_ways() -> None:
    """The checkout example, as a snapshot carries it, gives the flag set of its YAML file."""
    flags = load_flags(EXAMPLE.read_text(encoding="utf-8"), str(EXAMPLE))
    document = flags_document(flags)
    assert through_dicts(document) == through_yaml(document) == flags


def test_a_thousand_generated_flags_read_the_same_both_ways() -> None:
    """A generated 1,000-flag document (every operator, shorthand, variant shape and field)
    gives identical flag sets through the dicts and through the YAML text."""
    document = generated_document(1000)
    decoded = through_dicts(document)
    assert len(decoded.flags) == 1000
    assert decoded == through_yaml(document)
    # And as the server writes it back from the flag set.
    rewritten = flags_document(decoded)
    assert through_dicts(rewritten) == through_yaml(rewritten) == decoded


_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    # Floats as JSON writes them with a dot (see test_numbers_stay_numbers for the others).
    | st.sampled_from([0.5, 25.0, 37.5, -1.5, 100.0, 1e-3])
    | st.text(max_size=6)
    | st.sampled_from(
        ["on", "off", "yes", "acme", "2.4.0", "eu-", "^a(", "10.0.0.0/8", "2026-01-01", "x" * 250]
    )
    | st.sampled_from(["\x00", "\x7f", "\x1b[1m", "\ud800", "tab\there", "line\nbreak", "\x85"])
)
_NAMES = st.sampled_from(
    [
        "when",
        "serve",
        "percent",
        "unit",
        "split",
        "in",
        "equals",
        "gte",
        "semver_lt",
        "cidr",
        "segment",
        "not",
        "any",
        "all",
        "matches",
        "exists",
        "after",
        "variants",
        "rules",
        "killed",
        "salt",
        "default",
        "min_app_version",
        "description",
        "kind",
        "on",
        "off",
    ]
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(_NAMES | st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a document a value could be put or replaced."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _places(item, (*path, index))
    return found


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_change_to_a_document_reads_the_same_both_ways(data: st.DataObject) -> None:
    """A valid document with any JSON value put anywhere in it (or added under any name)
    reads to the same flag set through both paths, or fails with the same error."""
    document = generated_document(6, seed=data.draw(st.integers(0, 50)))
    path = data.draw(st.sampled_from(_places(document)))
    value = data.draw(_VALUES)
    if not path:
        document = value
    else:
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            parent[data.draw(_NAMES)] = value
        else:
            parent[path[-1]] = value
    assert outcome(through_dicts, document) == outcome(through_yaml, document)


@pytest.mark.parametrize(
    "document",
    [
        [],
        "flags",
        {"flags": {"f": {}}},
        {"flags": {"f": {"variants": ["off", "on"], "rules": [{"serve": "maybe"}]}}},
        {"flags": {"f": {"variants": ["off", "on"], "min_app_version": "two"}}},
        {"flags": {"f": {"variants": ["off", "on"], "killed": "no"}}},
        {"flags": {"f": {"variants": ["off", "on"], "rules": [{"percent": 2**64, "serve": "on"}]}}},
        {"flags": {"f": {"variants": {"off": 1, "on": [1]}}}},
        {"flags": {"bad key!": {"variants": ["off", "on"]}}},
        {"segments": {"s": {"when": {"segment": "t"}}}},
        {"flags": {"f": {"variants": ["off", "on"], "rules": [{"when": {"x": {"nope": 1}}}]}}},
        {"flags": {"f": {"variants": ["off", "on"], "description": "a\x00b"}}},
        {"flags": {"f": {"variants": ["off", "on"], "description": "a\ud83db"}}},
        {"flags": {"f": {"variants": ["off", "on"], "description": "a\x7fb"}}},
        {"flags": {}, "flag": {}},
    ],
)
def test_an_invalid_document_fails_the_same_way_both_ways(document: object) -> None:
    """Field errors and refused characters: the same type, message, field path and source."""
    assert outcome(through_dicts, document) == outcome(through_yaml, document)
    assert isinstance(outcome(through_dicts, document), tuple)


def test_the_limits_are_counted_as_the_yaml_reader_counts_them() -> None:
    """Values (keys included), nesting and the length of the JSON text come out as the YAML
    reader measures the same document written as JSON."""
    document = generated_document(40)
    size = len(json.dumps(document))
    read_document(document)  # within the limits
    # Grow one description until the text is exactly at the limit (with characters JSON
    # escapes: "é" is written as six), then one past it.
    flag = next(iter(document["flags"].values()))
    flag["description"] = ""
    missing = MAX_DOCUMENT_BYTES - len(json.dumps(document))
    flag["description"] = "é" * (missing // 12) + "x" * (missing - 6 * (missing // 12))
    assert len(json.dumps(document)) == MAX_DOCUMENT_BYTES > size
    read_document(document)
    load_document(json.dumps(document))
    flag["description"] += "x"
    for read in (through_dicts, through_yaml):
        with pytest.raises(UnreadableInputError, match="larger than 1048576 bytes"):
            read(document)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_NAMES | st.text(max_size=4), _VALUES, max_size=4))
def test_values_and_text_length_are_measured_exactly(document: dict[str, Any]) -> None:
    """For any JSON document: as many values as the YAML reader composes from its JSON text,
    and exactly the length of that text."""
    text = json.dumps(document)
    loader = _BoundedLoader(text, None)
    try:
        loader.get_single_node()
    except UnreadableInputError:
        return  # a refused character: compared in test_any_change_to_a_document_...
    finally:
        loader.dispose()
    assert _Limits(None).measure(document, 1) == (loader.total, len(text))


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1])
def test_nesting_is_limited_at_the_same_depth(depth: int) -> None:
    """A document nested exactly MAX_DEPTH deep is read; one more level is refused alike."""
    nested: Any = "x"
    for _ in range(depth - 1):
        nested = [nested]
    document = {"flags": nested}
    assert outcome(through_dicts, document) == outcome(through_yaml, document)
    assert ("nests deeper" in str(outcome(through_dicts, document))) is (depth > MAX_DEPTH)


def test_too_many_values_are_refused_alike() -> None:
    """MAX_NODES values (the root, each key and each value) are read; one more is refused with
    the YAML reader's message."""
    # The root, "flags" and its list: 3 values, then the items.
    document: dict[str, Any] = {"flags": ["v"] * (MAX_NODES - 3)}
    read_document(document)
    document["flags"].append("v")
    with pytest.raises(UnreadableInputError) as refused:
        read_document(document)
    with pytest.raises(UnreadableInputError) as also:
        load_document(json.dumps(document))
    assert refused.value.message == also.value.message
    assert f"more than {MAX_NODES} values" in refused.value.message


@pytest.mark.parametrize("value", [{1: "a"}, (1, 2), {"a"}, b"bytes", object()])
def test_what_json_cannot_hold_is_refused(value: object) -> None:
    """A dict handed in with a key that is not text, or a value JSON has no form for, is an
    UnreadableInputError, not a crash further in."""
    with pytest.raises(UnreadableInputError):
        read_flags_document({"flags": {"f": {"variants": ["off", "on"], "description": value}}})


def test_numbers_stay_numbers() -> None:
    """Where the YAML text round trip lost a number's type (YAML 1.1 floats need a dot), the
    dicts keep what JSON decoded: ``1e-05`` is a float, not the text ``"1e-05"``."""
    document = {"flags": {"f": {"variants": {"small": 1e-05, "big": 1e300}}}}
    variants = through_dicts(document).flags["f"].variants
    assert [variant.value for variant in variants] == [1e-05, 1e300]
    assert [v.value for v in through_yaml(document).flags["f"].variants] == ["1e-05", "1e+300"]


def test_unchanged_flags_are_taken_from_the_previous_version() -> None:
    """Read against the version before, a flag whose definition did not change is the same
    object; a changed one is read again; the result equals a fresh reading."""
    first = generated_document(50)
    before = read_flags_document(first)
    second = copy.deepcopy(first)
    keys = list(second["flags"])
    second["flags"][keys[3]]["killed"] = True
    second["flags"][keys[4]]["variants"] = ["off", "on", "dark"]
    del second["flags"][keys[5]]
    second["flags"]["new-flag"] = {"variants": ["off", "on"]}
    after = read_flags_document(second, previous=before)
    assert after.flags == read_flags_document(second).flags == through_yaml(second)
    changed = {keys[3], keys[4], "new-flag"}
    for key, flag in after.flags.flags.items():
        assert (flag is before.flags.flags.get(key)) is (key not in changed), key
    assert keys[5] not in after.flags.flags


@pytest.mark.parametrize(
    ("field", "old", "new"),
    [("killed", False, 0), ("killed", True, 1), ("percent", 25, 25.0), ("variants", 1, True)],
)
def test_equal_but_different_json_is_read_again(field: str, old: object, new: object) -> None:
    """``==`` holds between 0, 0.0 and false; the comparison does not: such a change is read
    again (and here, for ``killed: 0``, refused as the YAML reader refuses it)."""

    def document(value: object) -> dict[str, Any]:
        if field == "percent":
            flag = {"variants": ["off", "on"], "rules": [{"percent": value, "serve": "on"}]}
        elif field == "variants":
            flag = {"variants": {"off": 0, "on": value}}
        else:
            flag = {"variants": ["off", "on"], field: value}
        return {"flags": {"f": flag}}

    before = read_flags_document(document(old))
    assert outcome(
        lambda d: read_flags_document(d, "snapshot", previous=before).flags, document(new)
    ) == (outcome(through_yaml, document(new)))
    if field != "killed":
        again = read_flags_document(document(new), previous=before).flags.flags["f"]
        assert again is not before.flags.flags["f"]
        assert again == through_yaml(document(new)).flags["f"]
        if field == "variants":
            assert again.variants[1].value is True


def test_changed_segments_read_every_flag_again() -> None:
    """The flags' conditions hold their segments': when a segment changes, nothing is reused."""
    first = generated_document(20)
    before = read_flags_document(first)
    second = copy.deepcopy(first)
    second["segments"]["staff"]["when"] = [{"team": ["support"]}]
    after = read_flags_document(second, previous=before)
    assert after.flags == through_yaml(second)
    assert not any(flag is before.flags.flags[key] for key, flag in after.flags.flags.items())
