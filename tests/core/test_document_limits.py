"""Every flags file and plan is read within limits: size, characters, depth, values (aliases
counted as copies), numbers and durations. Past one, a clean InputError names it."""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from rollwise.core import InputError, UnreadableInputError, load_plan, parse_duration
from rollwise.core._document import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_NODES,
    load_document,
)
from rollwise.core._quantities import parse_number, parse_percent, parse_rate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "checkout"


def _nested_flow(depth: int) -> str:
    return "[" * depth + "]" * depth


def _nested_block(depth: int) -> str:
    """Block sequences on one line (``- - - x``): deep, yet small in bytes."""
    return "- " * depth + "x\n"


def _nested_mapping(depth: int) -> str:
    return "{a: " * depth + "x" + "}" * depth


def _laughs(levels: int, width: int = 10) -> str:
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels):
        aliases = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{aliases}]")
    return "\n".join(lines) + "\n"


def test_the_examples_are_well_within_every_limit() -> None:
    """The shipped flags file and plan load."""
    for name in ("flags.yaml", "plan.yaml"):
        assert load_document((EXAMPLES / name).read_text()).is_mapping


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
@pytest.mark.parametrize("shape", [_nested_flow, _nested_block, _nested_mapping])
def test_nesting_past_the_limit_is_an_input_error_not_a_recursion_error(
    depth: int, shape: object
) -> None:
    """Lists or mappings nested past MAX_DEPTH, even 100,000 deep, give an InputError naming
    the limit and the line, with the interpreter's recursion limit untouched."""
    text = shape(depth)  # type: ignore[operator]
    limit = sys.getrecursionlimit()
    with pytest.raises(UnreadableInputError, match=f"nests deeper than {MAX_DEPTH} levels") as e:
        load_document(text, "deep.yaml")
    assert e.value.line is not None and e.value.source == "deep.yaml"
    assert sys.getrecursionlimit() == limit


def test_nesting_at_the_limit_is_read() -> None:
    """MAX_DEPTH levels exactly are fine, in either style."""
    for shape in (_nested_flow, _nested_block):
        assert load_document(shape(MAX_DEPTH)).is_sequence
    assert load_document(_nested_mapping(MAX_DEPTH)).is_mapping


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    """Billion laughs: aliases count as copies of what they name, so a few lines that would
    expand to 10^9 values are refused at MAX_NODES."""
    with pytest.raises(UnreadableInputError, match=f"more than {MAX_NODES} values") as error:
        load_document(_laughs(9))
    assert error.value.line is not None and error.value.line <= 6


def test_aliases_that_stay_small_are_fine() -> None:
    """An anchor used a few times is ordinary YAML."""
    root = load_document(_laughs(3))
    assert len(root.mapping()["a2"].sequence()) == 10


def test_too_many_values_are_refused() -> None:
    """More than MAX_NODES values, even flat and small in bytes."""
    text = "[" + ",".join(["0"] * MAX_NODES) + "]"
    assert len(text.encode()) <= MAX_DOCUMENT_BYTES
    with pytest.raises(UnreadableInputError, match=f"more than {MAX_NODES} values"):
        load_document(text)


def test_a_document_over_1_mib_is_refused_before_it_is_parsed() -> None:
    """Size is checked in UTF-8 bytes: 1 MiB of ASCII passes the size check, one more byte
    (or fewer characters that take more bytes) does not."""
    at_limit = "#" * MAX_DOCUMENT_BYTES
    with pytest.raises(UnreadableInputError, match="empty"):
        load_document(at_limit)
    for text in ("#" * (MAX_DOCUMENT_BYTES + 1), "# " + "é" * (MAX_DOCUMENT_BYTES // 2)):
        with pytest.raises(UnreadableInputError, match="larger than 1048576 bytes"):
            load_document(text)


@pytest.mark.parametrize(
    ("text", "line", "code"),
    [
        ("a: 1\nb: x\x00y\n", 2, "U+0000"),
        ("a: 1\n\nc: \x1b[31m\n", 3, "U+001B"),
        ("\x07", 1, "U+0007"),
        ("a: x\x7f\n", 1, "U+007F"),
        ("a: 1\nb: \x85\x9b\n", 2, "U+009B"),
    ],
)
def test_control_characters_are_refused_with_their_line(text: str, line: int, code: str) -> None:
    """NUL and other control characters are refused, naming the character and its line."""
    with pytest.raises(UnreadableInputError, match=re.escape(code)) as error:
        load_document(text, "flags.yaml")
    assert error.value.line == line
    assert str(error.value).startswith(f"flags.yaml:{line}: ")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('flags:\n  "new\\u0000checkout": {}\n', "U+0000"),
        ('a: "\\e[31m"\n', "U+001B"),
        ('a: "x\\x9b"\n', "U+009B"),
        ('a: "\\ud83d"\n', "lone UTF-16 surrogate"),
        ('a: "\\udc00\\ud83d"\n', "lone UTF-16 surrogate"),
    ],
)
def test_control_characters_written_as_escapes_are_refused_too(text: str, says: str) -> None:
    """An escape in a double-quoted value ("\\u0000") makes the same character as a raw one,
    and is refused the same way; so is a lone surrogate, which is no character at all."""
    with pytest.raises(UnreadableInputError, match=re.escape(says)) as error:
        load_document(text)
    assert error.value.line is not None


def test_an_escaped_surrogate_pair_is_the_character_it_encodes() -> None:
    """JSON writes characters beyond the BMP as a pair of escapes; they read as one."""
    root = load_document('a: "\\ud83d\\ude00 and \\t tab"\n')
    assert root.mapping()["a"].text() == "\U0001f600 and \t tab"


def test_tab_newline_and_carriage_return_are_fine() -> None:
    """The whitespace YAML allows is not a control character here."""
    root = load_document("a: 'x\ty'\r\nb: 2\r\n")
    assert root.mapping()["a"].text() == "x\ty"


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("9" * 5000, r"±2\^63"),
        ("-" + "9" * 30, r"±2\^63"),
        ("2026-13-45", "month must be in 1..12"),
        ("2026-02-30", "day is out of range"),
    ],
)
def test_a_scalar_that_cannot_be_its_type_is_an_input_error(value: str, says: str) -> None:
    """Integers past ±2^63 (or past Python's digit limit) and impossible dates: an InputError
    at the field, not a ValueError from deep inside PyYAML."""
    root = load_document(f"a: {value}\n")
    with pytest.raises(InputError, match=says) as error:
        root.mapping()["a"].value()
    assert error.value.path == "a" and error.value.line == 1


def test_such_a_scalar_still_reads_as_text() -> None:
    """A name that looks like a bad date is still a name."""
    root = load_document("variant: 2026-13-45\n")
    assert root.mapping()["variant"].text() == "2026-13-45"


# --- durations and numbers ------------------------------------------------------------------


@pytest.mark.parametrize("text", ["366d", "53w", "8761h", "99999999999d", "1" * 400 + "s"])
def test_a_duration_over_365_days_is_refused(text: str) -> None:
    """Past the maximum, including values that would overflow a timedelta."""
    with pytest.raises(ValueError, match=r"at most 365d \(365 days\)"):
        parse_duration(text)


def test_365_days_is_the_longest_duration() -> None:
    assert parse_duration("365d") == timedelta(days=365)
    assert parse_duration("52w1d") == timedelta(days=365)


def test_an_overlong_duration_in_a_plan_names_its_field() -> None:
    """The plan reader turns the ValueError into an InputError at the field."""
    plan = (EXAMPLES / "plan.yaml").read_text().replace("bake: 30m", "bake: 99999999999d", 1)
    with pytest.raises(InputError, match="at most 365d") as error:
        load_plan(plan, "plan.yaml")
    assert error.value.path == "stages[0].bake"


@pytest.mark.parametrize("text", ["1e400", "-1e999", "9" * 400])
def test_numbers_must_be_finite(text: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_number(text)


def test_a_huge_integer_is_no_percentage() -> None:
    """An integer too large for a float is refused like any other out-of-range percentage."""
    with pytest.raises(ValueError, match="between 0 and 100"):
        parse_percent(10**400)


def test_a_rate_must_be_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_rate("9" * 400 + "/s")
