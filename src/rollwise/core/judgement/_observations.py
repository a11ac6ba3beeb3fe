"""What the controller has seen, as the judgement reads it: tallies, histograms, readings.

Everything is cumulative per stage: the store (and the simulator) keep aggregates per
(rollout, stage, variant, segment, metric), and these types are their totals. A judgement is
then a pure function of the totals, which is what makes it restartable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from rollwise.core.judgement._dispersion import Dispersion


@dataclass(frozen=True, slots=True)
class Tally:
    """Requests (opportunities) and the events among them (errors, timeouts, conversions)."""

    requests: int = 0
    events: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.requests + other.requests, self.events + other.events)

    @property
    def rate(self) -> float | None:
        return self.events / self.requests if self.requests else None


@dataclass(frozen=True, slots=True)
class RateSample:
    """A rate metric's totals on both sides within one stratum: one stage, one time window.

    Strata matter: the exposed share of requests and the base rate may both move with the
    time of day, and comparing totals pooled over such changes is biased (Simpson's paradox).
    Within a short window both are steady, so the judgement compares the sides window by
    window. ``window`` is any increasing label of the window (e.g. its start in minutes).
    """

    exposed: Tally = Tally()
    baseline: Tally = Tally()
    stage: int = 0
    window: int = 0


@dataclass(frozen=True, slots=True)
class LatencySample:
    """Latency histograms (counts per bucket of ``LATENCY_BOUNDARIES_MS``) of one stratum."""

    exposed: tuple[int, ...] = ()
    baseline: tuple[int, ...] = ()
    stage: int = 0
    window: int = 0


@dataclass(frozen=True, slots=True)
class GaugeReading:
    at: datetime
    value: float


#: A metric's series: its strata in time order, each labelled with its stage and window.
RateSeries = Sequence[RateSample]
LatencySeries = Sequence[LatencySample]

#: Key of a split metric: (attribute, value), e.g. ("tenant", "globex"). None is the whole.
SegmentKey = tuple[str, str] | None


@dataclass(frozen=True, slots=True)
class Exposure:
    """Units that reached a stage's percentage rule, by side: the input of the ratio check."""

    exposed_units: int = 0
    baseline_units: int = 0


@dataclass(frozen=True, slots=True)
class Observations:
    """Everything the judgement may use at one tick."""

    rates: Mapping[tuple[str, SegmentKey], RateSeries] = field(default_factory=dict)
    latencies: Mapping[tuple[str, SegmentKey], LatencySeries] = field(default_factory=dict)
    gauges: Mapping[str, Sequence[GaugeReading]] = field(default_factory=dict)
    #: Per stage: units assigned by the percentage rule, for the sample-ratio check.
    exposure: Sequence[Exposure] = ()
    #: Per stage: exposed requests in total, and per value of min_samples_per's attribute.
    samples: Sequence[int] = ()
    samples_per: Sequence[Mapping[str, int]] = ()
    #: Per rate metric: the dispersion between units its evidence is divided by.
    dispersion: Mapping[str, Dispersion] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rates", MappingProxyType(dict(self.rates)))
        object.__setattr__(self, "latencies", MappingProxyType(dict(self.latencies)))
        object.__setattr__(self, "gauges", MappingProxyType(dict(self.gauges)))

    def segments(self, metric: str, attribute: str) -> list[str]:
        """The values of ``attribute`` seen for ``metric``, in the order they first appeared
        (by stratum; within one, largest first, then by name).

        The judgement judges the first ``max_segments`` values, each at a level by its place in
        this order (``segment_alpha``), so which values are judged, and at which level, must
        not depend on how the data turn out later: an order by size *now* would let a segment
        leave and re-enter the judged set as it grows.
        """
        first: dict[str, tuple[int, int, int]] = {}
        for (name, key), series in self.rates.items():
            if name == metric and key is not None and key[0] == attribute and series:
                head = series[0]
                size = head.exposed.requests + head.baseline.requests
                first[key[1]] = (head.stage, head.window, -size)
        for (name, key), lseries in self.latencies.items():
            if name == metric and key is not None and key[0] == attribute and lseries:
                lhead = lseries[0]
                first[key[1]] = (
                    lhead.stage,
                    lhead.window,
                    -sum(lhead.exposed) - sum(lhead.baseline),
                )
        return sorted(first, key=lambda value: (*first[value], value))
