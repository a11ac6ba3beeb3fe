"""Persistence: SQLite by default, PostgreSQL for several replicas; migrated on open."""

from __future__ import annotations

from rollwise.store._batch_check import LATE_BATCH_GRACE, InvalidBatch
from rollwise.store._errors import (
    ConflictError,
    NotFoundError,
    RefusedError,
    StaleVersionError,
    StoreError,
)
from rollwise.store._ingest import EventBatch
from rollwise.store._migrate import migrate
from rollwise.store._records import (
    AggregateRow,
    AuditEntry,
    DecisionRecord,
    ExposedUnits,
    ExposureRow,
    GaugeRow,
    PlanRecord,
    Role,
    RolloutRecord,
    TokenRecord,
)
from rollwise.store._store import Store, build_observations, decision_evidence
from rollwise.store._totals import OutcomeTotals, outcome_totals

__all__ = [
    "LATE_BATCH_GRACE",
    "AggregateRow",
    "AuditEntry",
    "ConflictError",
    "DecisionRecord",
    "EventBatch",
    "ExposedUnits",
    "ExposureRow",
    "GaugeRow",
    "InvalidBatch",
    "NotFoundError",
    "OutcomeTotals",
    "PlanRecord",
    "RefusedError",
    "Role",
    "RolloutRecord",
    "StaleVersionError",
    "Store",
    "StoreError",
    "TokenRecord",
    "build_observations",
    "decision_evidence",
    "migrate",
    "outcome_totals",
]
