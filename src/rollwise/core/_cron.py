"""Five-field cron expressions (minute hour day-of-month month day-of-week), for plan windows.

The fields follow POSIX crontab: ``*``, numbers, ranges ``a-b``, lists ``a,b`` and steps
``*/n`` or ``a-b/n``; day-of-week 0-7 with 0 and 7 both Sunday. As in cron, when both
day-of-month and day-of-week are restricted, a day matches if either does. Times are UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12))
_DOW = ("day of week", 0, 7)


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ValueError(f"bad step {step_text!r} in the {name} field")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            if not (first.isdigit() and last.isdigit()):
                raise ValueError(f"bad range {base!r} in the {name} field")
            start, end = int(first), int(last)
        elif base.isdigit():
            start = int(base)
            end = high if step_text else start
        else:
            raise ValueError(f"bad value {base!r} in the {name} field")
        if not (low <= start <= high and low <= end <= high and start <= end):
            raise ValueError(f"{base!r} is outside {low}-{high} in the {name} field")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed cron schedule."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Monday … 6 = Sunday, as datetime.weekday()
    days_restricted: bool
    weekdays_restricted: bool

    def _day_matches(self, moment: datetime) -> bool:
        if moment.month not in self.months:
            return False
        day_ok = moment.day in self.days
        weekday_ok = moment.weekday() in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok

    def next_at_or_after(self, moment: datetime) -> datetime:
        """The first start time at or after ``moment`` (to the minute).

        Raises:
            ValueError: if the schedule never fires within eight years (e.g. 30 February).
        """
        start = moment.replace(second=0, microsecond=0)
        if start < moment:
            start += timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(366 * 8):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise ValueError(f"the schedule {self.expression!r} never fires")


def parse_cron(expression: str) -> Cron:
    """Parse a five-field cron expression.

    Raises:
        ValueError: naming the field that is wrong.
    """
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(
            f"expected five fields 'minute hour day-of-month month day-of-week' "
            f"(e.g. '0 2 * * *'), got {expression!r}"
        )
    minutes, hours, days, months = (
        _parse_field(text, *spec) for text, spec in zip(parts[:4], _FIELDS, strict=True)
    )
    cron_weekdays = _parse_field(parts[4], *_DOW)
    # cron: 0 and 7 are Sunday; datetime: Monday is 0, Sunday is 6.
    weekdays = frozenset((day - 1) % 7 for day in cron_weekdays)
    return Cron(
        expression=expression,
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=weekdays,
        # As in Vixie cron, a field that starts with '*' (also '*/2') does not restrict.
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
    )
