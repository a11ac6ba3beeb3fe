"""Strata as the controller reads them from the store: windows with no aggregates are no
reason to compare one hour of the day with another."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from rollwise.core.judgement import Verdict, harm_alpha, judge_guard
from rollwise.store import AggregateRow, Store
from rollwise.store import _schema as t

FLAGS = """
flags:
  new-checkout:
    variants: [off, on]
    unit: tenant
"""
PLAN = """
flag: new-checkout
unit: tenant
guards:
  - {metric: checkout.error, kind: rate, tolerance: 10%, by: [tenant]}
stages:
  - {name: five-percent, audience: {percent: 5}}
  - {name: all, audience: {percent: 100}}
"""
START = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # midnight
NOW = START + timedelta(days=1)


def _day_of_traffic(rollout_id: int, rng: np.random.Generator) -> list[AggregateRow]:
    """A true A/A over one day of 15-minute windows with ``unit: tenant``: the exposed tenant
    ``bakery`` only has traffic from 08:00 to 18:00; four tenants on the baseline all day; the
    base error rate of everyone is 0.5 % at night and 1.5 % in the afternoon."""
    rows = []
    for index in range(96):
        at = START + timedelta(minutes=15 * index)
        window = int(at.timestamp() // 60)
        hour = at.hour + at.minute / 60
        rate = 0.01 * (1 + 0.5 * np.sin(2 * np.pi * (hour - 9) / 24))
        counts: dict[tuple[bool, str], list[int]] = {}
        tenants = [("bakery", True, 3000)] if 8 <= at.hour < 18 else []
        tenants += [(f"shop-{n}", False, 6000) for n in range(4)]
        for tenant, exposed, mean in tenants:
            requests = int(rng.poisson(mean))
            events = int(rng.binomial(requests, rate))
            for segment in ("", f"tenant={tenant}"):
                cell = counts.setdefault((exposed, segment), [0, 0])
                cell[0] += requests
                cell[1] += events
        rows += [
            AggregateRow(rollout_id, 0, window, exposed, segment, "checkout.error", n, x)
            for (exposed, segment), (n, x) in counts.items()
        ]
    return rows


def test_a_tenant_with_quiet_hours_is_compared_with_the_same_hours_baseline(store: Store) -> None:
    """Through the store and judge_guard, 20 days of A/A with a business-hours tenant exposed:
    no day is judged harm, for the tenant or overall (paired with the baseline by position
    instead of by window, every day was)."""
    store.apply_flags(FLAGS, "flags.yaml", "alice", START)
    record = store.save_plan(PLAN, "plan.yaml", "alice", START).record
    rollout = store.start_rollout(record.id, "alice", START)
    plan = store.parsed_plan(record.id)
    guard = plan.guards[0]
    harmed = 0
    rng = np.random.default_rng(20261130)
    for day in range(20):
        # Each day is judged on its own: the day's aggregates are stored, read back and judged,
        # then removed for the next day.
        rows = _day_of_traffic(rollout.id, rng)
        store.ingest(f"day-{day}", "sdk", rows, [], NOW)
        observations = store.observations(rollout, plan)
        overall, segments = judge_guard(
            guard, observations, 0, harm_alpha(plan), NOW, bounds=False, stages=2
        )
        assert {s.segment for s in segments} == {("tenant", "bakery")} | {
            ("tenant", f"shop-{n}") for n in range(4)
        }
        harmed += any(v.verdict is Verdict.HARM for v in (overall, *segments))
        _clear(store, rollout.id)
    assert harmed == 0


def _clear(store: Store, rollout_id: int) -> None:
    with store.engine.begin() as connection:
        connection.execute(t.aggregates.delete().where(t.aggregates.c.rollout_id == rollout_id))
