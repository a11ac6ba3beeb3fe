"""Durations, percentages, semantic versions and cron schedules as written in plans."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from rollwise.core import format_duration, parse_cron, parse_duration, parse_percent, parse_version


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("4h", timedelta(hours=4)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    """Durations parse to the right length and print back in their shortest form."""
    assert parse_duration(text) == expected
    assert parse_duration(format_duration(expected)) == expected


@pytest.mark.parametrize("text", ["", "soon", "30", "m30", "0m", "1y", "-5m"])
def test_bad_durations_say_what_is_accepted(text: str) -> None:
    """Anything else is refused with a message naming the accepted units."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_percentages() -> None:
    """5, 5.5 and '5%' are percentages; out of range or not numbers are refused."""
    assert parse_percent(5) == 5.0
    assert parse_percent("5.5%") == 5.5
    for bad in (-1, 101, "lots", True, None):
        with pytest.raises(ValueError, match="percentage"):
            parse_percent(bad)


def test_semver_precedence_follows_the_spec() -> None:
    """semver.org §11: the spec's own example ordering, and 2.4 == 2.4.0."""
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "2.0.0",
        "2.1.0",
        "2.1.1",
    ]
    versions = [parse_version(text) for text in ordered]
    assert versions == sorted(versions)  # type: ignore[type-var]
    assert parse_version("2.4") == parse_version("2.4.0+build.5")
    assert parse_version("v2.4.1") is not None
    assert parse_version("banana") is None and parse_version("2.4.0.1") is None
    assert parse_version("1.0.0-01") is None and parse_version("1.0.0-0") is not None


def test_cron_next_start() -> None:
    """Five-field cron: next start at or after a moment, weekday and list/step forms."""
    nightly = parse_cron("0 2 * * *")
    assert nightly.next_at_or_after(datetime(2026, 11, 26, 1, 59)) == datetime(2026, 11, 26, 2, 0)
    assert nightly.next_at_or_after(datetime(2026, 11, 26, 2, 0, 30)) == datetime(
        2026, 11, 27, 2, 0
    )
    weekdays = parse_cron("30 9 * * 1-5")  # 2026-11-28 is a Saturday
    assert weekdays.next_at_or_after(datetime(2026, 11, 28)) == datetime(2026, 11, 30, 9, 30)
    quarterly = parse_cron("*/15 0,12 1 */3 *")
    assert quarterly.next_at_or_after(datetime(2026, 2, 2)) == datetime(2026, 4, 1, 0, 0)
    # Vixie cron: with '*/2' in day-of-month the two day fields combine with AND (odd-day
    # Mondays), not with the OR used when both are restricted.
    odd_mondays = parse_cron("0 0 */2 * 1")
    assert odd_mondays.next_at_or_after(datetime(2026, 11, 26)) == datetime(2026, 12, 7)
    first_or_monday = parse_cron("0 0 1 * 1")
    assert first_or_monday.next_at_or_after(datetime(2026, 11, 26)) == datetime(2026, 11, 30)
    sunday = parse_cron("0 0 * * 7")
    assert sunday.next_at_or_after(datetime(2026, 11, 26)) == datetime(2026, 11, 29)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 2 * *", "five fields"),
        ("61 2 * * *", "minute"),
        ("0 2 32 * *", "day of month"),
        ("0 2 * * mon", "day of week"),
        ("*/0 * * * *", "step"),
    ],
)
def test_bad_cron_names_the_field(expression: str, message: str) -> None:
    """A bad schedule names the field that is wrong."""
    with pytest.raises(ValueError, match=message):
        parse_cron(expression)
    with pytest.raises(ValueError, match="never fires"):
        parse_cron("0 0 30 2 *").next_at_or_after(datetime(2026, 1, 1))
