"""What the store hands back: plain frozen records, never live database rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from rollwise.core.judgement import RolloutStatus


class Role(StrEnum):
    """What a token may do. SDK keys read the snapshot and post events, nothing else."""

    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    SDK = "sdk"


@dataclass(frozen=True, slots=True)
class PlanRecord:
    id: int
    flag: str
    version: int
    text: str
    created_at: datetime
    created_by: str


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    id: int
    flag: str
    plan_id: int
    status: RolloutStatus
    stage: int
    stage_entered_at: datetime
    started_at: datetime
    ended_at: datetime | None
    version: int
    approvals: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    id: int
    rollout_id: int
    at: datetime
    stage: int
    move: str
    reasons: tuple[str, ...]
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AggregateRow:
    """One aggregate as an SDK batch carries it."""

    rollout_id: int
    stage: int
    window: int  # window start, minutes since the epoch
    exposed: bool
    segment: str  # "" for the whole traffic, else "attribute=value"
    metric: str
    requests: int
    events: int = 0
    #: A latency's counts per bucket, dense ...
    histogram: tuple[int, ...] | None = None
    #: ... or sparse: its non-zero buckets, flat (index, count, index, count, …), over the
    #: judge's ``LATENCY_BUCKETS`` (what the SDK sends). At most one of the two.
    buckets: tuple[int, ...] | None = None


@dataclass(frozen=True, slots=True)
class ExposureRow:
    """A unit's exposure as an SDK batch carries it (the unit already hashed)."""

    rollout_id: int
    unit: str
    stage: int
    exposed: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class GaugeRow:
    """A gauge reading as an SDK batch carries it."""

    metric: str
    value: float
    at: datetime


@dataclass(frozen=True, slots=True)
class ExposedUnits:
    """A rollout's exposed units counted by the database (the rollout page's account of who
    was exposed), not read one by one: a rollout by user can expose hundreds of thousands."""

    #: Units first exposed in each stage (stages that exposed none are left out).
    per_stage: Mapping[int, int]
    #: (window start in minutes since the epoch, units first exposed in that window), for the
    #: windows that exposed some, oldest first.
    per_window: Sequence[tuple[int, int]]

    @property
    def total(self) -> int:
        return sum(self.per_stage.values())
