"""Durations, percentages and other quantities as people write them in plans."""

from __future__ import annotations

import math
import re
from datetime import timedelta

#: The longest duration a plan may name: no stage bakes, and no window lasts, longer than this.
MAX_DURATION = timedelta(days=365)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def parse_duration(text: str) -> timedelta:
    """``"90s"``, ``"30m"``, ``"1h30m"``, ``"1d"`` → a positive timedelta, at most
    ``MAX_DURATION`` (365 days).

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
            f"got {_excerpt(text)}"
        )
    if seconds <= 0:
        raise ValueError(f"a duration must be longer than zero, got {_excerpt(text)}")
    # Checked before a timedelta is built: '99999999999d' would overflow it.
    if not seconds <= MAX_DURATION.total_seconds():
        raise ValueError(
            f"a duration must be at most {MAX_DURATION.days}d (365 days), got {_excerpt(text)}"
        )
    return timedelta(seconds=seconds)


def _excerpt(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else repr(text[: limit - 1] + "…")


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
    """``"12"``, ``"-0.5"``, ``"1e3"`` → a finite float.

    Raises:
        ValueError: if it is not a number, or too large to be a finite one.
    """
    if not _NUMBER.fullmatch(text.strip()):
        raise ValueError(f"expected a number, got {_excerpt(text)}")
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"a number must be finite, got {_excerpt(text)}")
    return number


def parse_percent(value: object) -> float:
    """``5``, ``5.5``, ``"5%"`` → 5.0 (percent, not a fraction).

    Raises:
        ValueError: if it is not a number between 0 and 100.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a percentage like 5 or '5%', got {value!r}")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            raise ValueError(f"a percentage must be between 0 and 100, got {value!r}") from None
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
        shown = _excerpt(value) if isinstance(value, str) else repr(value)[:40]
        raise ValueError(f"a percentage must be between 0 and 100, got {shown}")
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
        raise ValueError(
            f"expected a rate like '50/s', '3000/min' or '2M/day', got {_excerpt(text)}"
        )
    amount = float(match.group(1)) * {"": 1, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6}[match.group(2)]
    per_second = amount / _RATE_SECONDS[match.group(3)]
    if per_second <= 0:
        raise ValueError(f"a rate must be above zero, got {_excerpt(text)}")
    if not math.isfinite(per_second):
        raise ValueError(f"a rate must be finite, got {_excerpt(text)}")
    return per_second
