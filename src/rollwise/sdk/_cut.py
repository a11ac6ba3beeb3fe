"""What a cut of the aggregates hands over: counts per key, new exposures, gauge readings."""

from __future__ import annotations

from dataclasses import dataclass, field

from rollwise.sdk._exposures import ExposureKey

#: (rollout, stage, window start in minutes since the epoch, exposed, segment, metric)
AggregateKey = tuple[int, int, int, bool, str, str]


class Tally:
    """The counts of one key: requests, events (failures, conversions) and, for latencies, a
    histogram over ``LATENCY_BUCKETS`` fixed buckets."""

    __slots__ = ("events", "histogram", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.events = 0
        self.histogram: list[int] | None = None


@dataclass(frozen=True, slots=True)
class Cut:
    """What was aggregated since the previous cut; owned by the caller once cut."""

    tallies: dict[AggregateKey, Tally]
    #: Each new exposure with when it was first seen (seconds since the epoch).
    exposures: list[tuple[ExposureKey, float]]
    #: System-wide gauge readings (metric, value, seconds since the epoch), oldest first.
    gauges: list[tuple[str, float, float]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.tallies or self.exposures or self.gauges)


def segment_value(value: object) -> str | None:
    """An attribute value as segment text (``acme``, ``42``, ``true``); None when it has none
    (missing, empty, a list)."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def add_tally(into: Tally, other: Tally) -> None:
    """Add ``other``'s counts into ``into``."""
    into.requests += other.requests
    into.events += other.events
    if other.histogram is not None:
        if into.histogram is None:
            into.histogram = list(other.histogram)
        else:
            into.histogram = [a + b for a, b in zip(into.histogram, other.histogram, strict=True)]
