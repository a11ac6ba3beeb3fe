"""Flag files: the example parses, and every bad input names its file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollwise.core import InputError, MetricKind, Split, UnreadableInputError, load_flags


def test_example_flags_file_parses(flags_path: Path) -> None:
    """examples/checkout/flags.yaml gives the segments, metrics and flags it declares."""
    flags = load_flags(flags_path.read_text(), str(flags_path))
    assert set(flags.segments) == {"internal-team", "pilot-tenants", "eu"}
    assert flags.metrics["payments.queue_depth"].kind is MetricKind.GAUGE
    checkout = flags.flags["new-checkout"]
    assert [v.name for v in checkout.variants] == ["off", "on"]
    assert [v.value for v in checkout.variants] == [False, True]
    assert checkout.unit == "tenant"
    assert str(checkout.min_app_version) == "2.4.0"
    assert isinstance(flags.flags["search-v2"].rules[0].serve, Split)


def test_on_and_off_stay_names_not_booleans() -> None:
    """YAML 1.1 reads bare on/off as booleans; variant names and serve targets stay text."""
    flags = load_flags("flags: {f: {variants: [off, on], rules: [{serve: on}], default: off}}")
    flag = flags.flags["f"]
    assert flag.rules[0].serve == "on"
    assert flag.fallthrough == "off"


def test_variants_as_a_mapping_carry_values() -> None:
    """variants: {name: value} keeps the values, first is the safe default."""
    flags = load_flags("flags: {theme: {variants: {classic: 1, dark: 2}}}")
    flag = flags.flags["theme"]
    assert flag.safe_default.name == "classic"
    assert flag.variant("dark") is not None and flag.variant("dark").value == 2  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "line", "path", "message"),
    [
        ("flags:\n  f:\n    variants: [off]\n", 3, "flags.f.variants", "at least two variants"),
        (
            "flags:\n  f:\n    variants: [off, on]\n    rules:\n      - serve: blue\n",
            5,
            "flags.f.rules[0].serve",
            "unknown variant 'blue'",
        ),
        (
            "flags:\n  f:\n    variants: [a, b]\n    rules:\n      - serve: {split: {a: 50, b: 40}}\n",
            5,
            "flags.f.rules[0].serve.split",
            "must sum to 100",
        ),
        (
            "flags:\n  f:\n    variants: [off, on]\n    rules:\n      - {percent: 0.0001, serve: on}\n",
            5,
            "flags.f.rules[0].percent",
            "finer than a bucket",
        ),
        (
            "flags:\n  f:\n    variants: [off, on]\n    colour: red\n",
            4,
            "flags.f.colour",
            "unknown field 'colour'",
        ),
        ("segments:\n  s:\n    description: x\n", 3, "segments.s", "missing field 'when'"),
        (
            "flags:\n  f:\n    variants: [off, on]\n    min_app_version: two\n",
            4,
            "flags.f.min_app_version",
            "semantic version",
        ),
        ("metrics:\n  m: {kind: counter}\n", 2, "metrics.m.kind", "unknown metric kind"),
        (
            "flags:\n  f: {variants: [off, on]}\n  f: {variants: [off, on]}\n",
            3,
            "flags.f",
            "duplicate key",
        ),
    ],
)
def test_errors_name_file_line_and_field(text: str, line: int, path: str, message: str) -> None:
    """Each bad flags file raises an InputError with the source, line, field path and reason."""
    with pytest.raises(InputError) as caught:
        load_flags(text, "flags.yaml")
    error = caught.value
    assert (error.source, error.line, error.path) == ("flags.yaml", line, path)
    assert message in error.message
    assert str(error).startswith(f"flags.yaml:{line}: {path}: ")


def test_malformed_yaml_is_unreadable_with_its_line() -> None:
    """A YAML syntax error is an UnreadableInputError that gives the line."""
    with pytest.raises(UnreadableInputError) as caught:
        load_flags("flags:\n  f:\n    variants: [off, on\n  g: 1\n", "flags.yaml")
    assert str(caught.value).startswith("flags.yaml:4: invalid YAML: ")
    assert "from line 3" in str(caught.value)
