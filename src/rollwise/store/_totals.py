"""Totals of a rollout's stored outcomes per stage and side: what a report's blast radius is
made of (requests served the new variant, and how many of them failed)."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from rollwise.store import _schema as t
from rollwise.store._store import Store


@dataclass(frozen=True, slots=True)
class OutcomeTotals:
    """One metric's requests and events (failures, conversions) in one stage, on one side."""

    stage: int
    exposed: bool
    requests: int
    events: int


def outcome_totals(
    store: Store, rollout_id: int, metric: str, segment: str = ""
) -> list[OutcomeTotals]:
    """The stored aggregates of ``metric`` summed over windows, per (stage, side), ordered by
    stage then baseline before exposed. ``segment`` "" is the whole traffic; "tenant=acme" one
    tenant's. The segment is matched exactly, so replicate aggregates (segment
    ``~replicate=k``, not traffic of their own) are never added to a segment's totals."""
    a = t.aggregates
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(a.c.stage, a.c.exposed, sa.func.sum(a.c.requests), sa.func.sum(a.c.events))
            .where((a.c.rollout_id == rollout_id) & (a.c.metric == metric))
            .where(a.c.segment == segment)
            .group_by(a.c.stage, a.c.exposed)
            .order_by(a.c.stage, a.c.exposed)
        ).all()
    return [
        OutcomeTotals(int(stage), bool(exposed), int(requests or 0), int(events or 0))
        for stage, exposed, requests, events in rows
    ]
