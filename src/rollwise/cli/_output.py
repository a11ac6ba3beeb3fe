"""How commands show what they got: text or JSON, aligned tables, and times as a person reads
them ("3m ago", "in 2h 10m")."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def emit(args: argparse.Namespace, data: Any, text: str) -> int:
    """Print ``data`` as JSON with ``--json``, else ``text``; returns exit code 0."""
    print(json.dumps(data, indent=2) if args.json else text)
    return 0


def span(seconds: float) -> str:
    """A length of time in its two largest units, like the demo report: ``"6h 58m"``,
    ``"45s"``, ``"2d 3h"``."""
    remaining = round(abs(seconds))
    parts: list[str] = []
    for unit, size in _UNITS:
        count, remaining = divmod(remaining, size)
        if count or parts:
            parts.append(f"{count}{unit}")
        if len(parts) == 2:
            break
    shown = [part for part in parts if not part.startswith("0")]
    return " ".join(shown) or "0s"


def parse_time(text: object) -> datetime | None:
    """An ISO-8601 timestamp from the server (naive ones are UTC), or None."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def relative(moment: datetime | None, now: datetime) -> str:
    """``"3m ago"``, ``"in 2h 10m"``, ``"just now"``; ``"—"`` for no time."""
    if moment is None:
        return "—"
    seconds = (moment - now).total_seconds()
    if abs(seconds) < 1:
        return "just now"
    return f"in {span(seconds)}" if seconds > 0 else f"{span(seconds)} ago"


def when(text: object, now: datetime) -> str:
    """A server timestamp as a relative time (``"—"`` if it is missing or not a time)."""
    return relative(parse_time(text), now)


def number(value: float | None, unit: str = "", *, signed: bool = False) -> str:
    """A measured value with three significant digits; unbounded ends show as ∞."""
    if value is None:
        return "?"
    if not math.isfinite(value) or abs(value) >= 1e6:
        return ("-∞" if value < 0 else "+∞" if signed else "∞") + unit
    sign = "+" if signed else ""
    # Three significant digits, without exponents for what a person counts (1,000 not 1e+03).
    shown = f"{value:{sign},.0f}" if abs(value) >= 1000 else f"{value:{sign}.3g}"
    return f"{shown}{unit}"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns aligned on the widest cell; the last column is not padded."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(
            cell if i == len(row) - 1 else cell.ljust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in cells
    ]
    return "\n".join(lines)


def warn(message: str) -> None:
    """A warning on stderr: the command still did what it was asked."""
    print(f"rollwise: warning: {message}", file=sys.stderr)
