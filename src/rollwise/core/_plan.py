"""Plans: the rollout design, written before it starts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

from rollwise.core._cron import Cron
from rollwise.core._sources import PrometheusSource

#: The default stratum length: chosen by measurement in docs/judgement.md (benchmarks/validity.py).
DEFAULT_STRATUM = timedelta(minutes=15)
#: Stratum lengths a plan may choose: whole minutes that divide an hour, so that windows line
#: up with the hours of the day in every SDK.
STRATUM_MINUTES = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)


class GuardKind(StrEnum):
    RATE = "rate"
    LATENCY = "latency"
    GAUGE = "gauge"


class Worse(StrEnum):
    """Which direction of the metric is a regression."""

    HIGHER = "higher"
    LOWER = "lower"


class Action(StrEnum):
    """What a guard's regression triggers."""

    ROLLBACK = "rollback"
    PAUSE = "pause"


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How much worse than the baseline is still acceptable.

    ``relative``: ``amount`` is a fraction of the baseline (0.10 for ``10%``). Otherwise it is
    absolute, in the metric's unit: a rate difference as a fraction (``0.2pp`` → 0.002) or
    milliseconds of latency (``50ms`` → 50.0).
    """

    amount: float
    relative: bool
    text: str = ""


@dataclass(frozen=True, slots=True)
class Guard:
    """A metric check with its tolerance or limits and the action on regression."""

    metric: str
    kind: GuardKind
    worse: Worse = Worse.HIGHER
    tolerance: Tolerance | None = None
    #: Latency guards: the quantile compared (0.95 for p95).
    quantile: float | None = None
    #: Absolute limits on the exposed side (rate as a fraction, latency in ms, gauge as is).
    maximum: float | None = None
    minimum: float | None = None
    #: Gauge guards: the largest acceptable growth per minute.
    max_growth_per_minute: float | None = None
    #: Gauge guards: consecutive breaching ticks before a regression is declared.
    breaches: int = 3
    #: Attributes the guard is also judged by, one segment per value (e.g. tenant).
    by: tuple[str, ...] = ()
    #: With ``by``: how many segment values (the first to appear) are judged; α is shared
    #: among them.
    max_segments: int = 20
    on_regression: Action = Action.ROLLBACK
    #: Where the counts come from: None for the SDKs, else the queries of an outside source.
    source: PrometheusSource | None = None

    @property
    def has_limit(self) -> bool:
        return (
            self.tolerance is not None
            or self.maximum is not None
            or self.minimum is not None
            or self.max_growth_per_minute is not None
        )

    @property
    def label(self) -> str:
        if self.kind is GuardKind.LATENCY and self.quantile is not None:
            return f"{self.metric} p{self.quantile * 100:g}"
        return self.metric


@dataclass(frozen=True, slots=True)
class Audience:
    """Who a stage adds: named segments and/or a percentage of units."""

    segments: tuple[str, ...] = ()
    percent: float | None = None


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of exposure plus what must hold before leaving it."""

    name: str
    audience: Audience
    bake: timedelta | None = None
    min_samples: int | None = None
    min_samples_per: str | None = None
    cover: tuple[str, ...] = ()
    approval_required: bool = False
    irreversible: bool = False
    #: Percent of units always kept unexposed as a baseline: the stage exposes at most
    #: 100 - holdback percent (``percent: 100, holdback: 2%`` exposes 98 %).
    holdback: float | None = None

    @property
    def exposed_percent(self) -> float:
        """The percentage of units that the stage's percentage rule exposes."""
        if self.audience.percent is None:
            return 0.0
        return min(self.audience.percent, 100.0 - (self.holdback or 0.0))

    @property
    def is_targeted(self) -> bool:
        """Segments only (an internal team, a pilot tenant): no random share of customers."""
        return bool(self.audience.segments) and not self.audience.percent


@dataclass(frozen=True, slots=True)
class Window:
    """A recurring period a stage may have to span (a nightly job, a peak hour)."""

    name: str
    cron: Cron
    duration: timedelta

    def next_span(self, after: datetime) -> tuple[datetime, datetime]:
        """Start and end of the first occurrence starting at or after ``after`` (cron times
        are read in ``after``'s time zone, which the result keeps)."""
        start = self.cron.next_at_or_after(after.replace(tzinfo=None)).replace(tzinfo=after.tzinfo)
        return start, start + self.duration


@dataclass(frozen=True, slots=True)
class Plan:
    """The rollout design: unit, stages, guards, windows and rollback policy.

    Stage audiences are cumulative: a stage keeps every earlier stage's segments exposed and
    sets the percentage of the remaining units.
    """

    flag: str
    unit: str
    stages: tuple[Stage, ...]
    guards: tuple[Guard, ...] = ()
    #: The variant being rolled out.
    variant: str = "on"
    #: The variant served after a rollback; None means the flag's safe default.
    rollback_to: str | None = None
    max_stage_duration: timedelta | None = None
    windows: Mapping[str, Window] = field(default_factory=dict)
    #: The false-rollback rate the judgement keeps, per rollout, across all guards and segments.
    false_rollback_rate: float = 0.01
    #: The traffic the team expects (requests per second), for the linter's simulation.
    traffic_per_second: float | None = None
    #: Length of the time windows in which exposed and baseline are compared (the strata of
    #: the judgement): short enough that the exposed share and the base rate are steady within
    #: one. The SDKs aggregate per window of this length.
    stratum: timedelta = DEFAULT_STRATUM
    #: Where each field path came from in the source file (for findings); empty if built in code.
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", MappingProxyType(dict(self.windows)))
        object.__setattr__(self, "lines", MappingProxyType(dict(self.lines)))

    def line_of(self, path: str) -> int | None:
        """The line of a field path, or of its nearest parent that has one."""
        while path:
            line = self.lines.get(path)
            if line is not None:
                return line
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return self.lines.get("")

    def stage_named(self, name: str) -> Stage | None:
        for stage in self.stages:
            if stage.name == name:
                return stage
        return None


def cumulative_audience(plan: Plan, index: int) -> Audience:
    """Who is exposed while stage ``index`` runs: every segment named so far, and the
    percentage of the latest stage that set one (after its holdback)."""
    segments: list[str] = []
    exposed: float | None = None
    for stage in plan.stages[: index + 1]:
        for name in stage.audience.segments:
            if name not in segments:
                segments.append(name)
        if stage.audience.percent is not None:
            exposed = stage.exposed_percent
    return Audience(tuple(segments), exposed)
