"""Durations, percentages and other quantities as people write them in plans."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"1h30m"``, ``"1d"`` → a positive timedelta.

    Raises:
        ValueError: with a message saying what is accepted.
    """
    compact = text.strip().replace(" ", "")
    if not compact:
        raise ValueError("expected a duration like '30m', '4h' or '1d', got an empty value")
    position = 0
    seconds = 0.0
    for match in _DURATION_PART.finditer(compact):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _DURATION_SECONDS[match.group(2)]
        position = match.end()
    if position != len(compact):
        raise ValueError(
            f"expected a duration like '30m', '4h', '1h30m' or '1d' (units ms, s, m, h, d, w), "
            f"got {text!r}"
        )
    if seconds <= 0:
        raise ValueError(f"a duration must be longer than zero, got {text!r}")
    return timedelta(seconds=seconds)


def format_duration(value: timedelta) -> str:
    """The shortest exact form: ``timedelta(hours=4)`` → ``"4h"``, 90 min → ``"1h30m"``."""
    total = value.total_seconds()
    if total < 1:
        return f"{round(total * 1000)}ms"
    parts = []
    remaining = int(total)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_number(text: str) -> float:
    if not _NUMBER.fullmatch(text.strip()):
        raise ValueError(f"expected a number, got {text!r}")
    return float(text)


def parse_percent(value: object) -> float:
    """``5``, ``5.5``, ``"5%"`` → 5.0 (percent, not a fraction).

    Raises:
        ValueError: if it is not a number between 0 and 100.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a percentage like 5 or '5%', got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        text = text.removesuffix("%").strip()
        try:
            number = parse_number(text)
        except ValueError:
            raise ValueError(f"expected a percentage like 5 or '5%', got {value!r}") from None
    else:
        raise ValueError(f"expected a percentage like 5 or '5%', got {value!r}")
    if not 0 <= number <= 100:
        raise ValueError(f"a percentage must be between 0 and 100, got {value!r}")
    return number


_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*/\s*(s|sec|m|min|h|hour|d|day)\s*")
_RATE_SECONDS = {
    "s": 1,
    "sec": 1,
    "m": 60,
    "min": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}


def parse_rate(text: str) -> float:
    """``"50/s"``, ``"3000/min"``, ``"2M/day"`` → events per second.

    Raises:
        ValueError: with a message saying what is accepted.
    """
    match = _RATE.fullmatch(text)
    if match is None:
        raise ValueError(f"expected a rate like '50/s', '3000/min' or '2M/day', got {text!r}")
    amount = float(match.group(1)) * {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6}[match.group(2)]
    per_second = amount / _RATE_SECONDS[match.group(3)]
    if per_second <= 0:
        raise ValueError(f"a rate must be above zero, got {text!r}")
    return per_second
