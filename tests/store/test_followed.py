"""The observations the API reads are followed: after a rollout's first read, only the rows
written since are read, and the result is always what reading it whole gives."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np

from rollwise.core.judgement import LATENCY_BUCKETS
from rollwise.store import AggregateRow, ExposureRow, RolloutRecord, Store
from rollwise.store._followed import FollowedObservations

START = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
FLAGS = "flags:\n" + "".join(
    f"  {name}:\n    variants: [off, on]\n    unit: tenant\n" for name in ("one", "two")
)
PLAN = """
flag: {flag}
unit: tenant
guards:
  - {{metric: errors, kind: rate, tolerance: 50%, by: [tenant]}}
  - {{metric: latency, kind: latency, quantile: 0.9, tolerance: 30%}}
stages:
  - {{name: canary, audience: {{percent: 5}}, bake: 2h}}
  - {{name: half, audience: {{percent: 50}}, bake: 3h}}
"""
TENANTS = ("t1", "t2", "t3")


def _rows(rollout: int, stage: int, window: int, rng: np.random.Generator) -> list[AggregateRow]:
    """A window of one rollout, each key with a random chance of being there at all (quiet
    tenants, a side without requests): error counts per tenant and in all, a latency histogram
    in all, and now and then a replicate's counts (the judge's dispersion)."""
    rows = []
    for side in (True, False):
        for segment in ("", *(f"tenant={t}" for t in TENANTS)):
            if rng.random() < 0.8:
                requests = int(rng.integers(1, 500))
                events = int(rng.integers(0, requests + 1))
                rows.append(
                    AggregateRow(rollout, stage, window, side, segment, "errors", requests, events)
                )
        if rng.random() < 0.8:
            histogram = [0] * LATENCY_BUCKETS
            for bucket in rng.integers(0, LATENCY_BUCKETS, size=int(rng.integers(1, 40))):
                histogram[int(bucket)] += 1
            rows.append(
                AggregateRow(
                    rollout, stage, window, side, "", "latency", sum(histogram), 0, tuple(histogram)
                )
            )
        if rng.random() < 0.3:
            requests = int(rng.integers(1, 100))
            events = int(rng.integers(0, requests + 1))
            replicate = f"~replicate={int(rng.integers(0, 8))}"
            rows.append(
                AggregateRow(rollout, stage, 0, side, replicate, "errors", requests, events)
            )
    return rows


def test_followed_observations_are_what_a_whole_read_gives(store: Store) -> None:
    """Two rollouts get random batches: new windows, windows written again (a late batch adds
    to a window already read), replicates, units first seen. After each batch one of them (or
    none) is read followed, by the store's follower and by one that keeps a single rollout (so
    it forgets and reads whole again), and compared with a whole read at the stage it is at."""
    store.apply_flags(FLAGS, "flags.yaml", "alice", START)
    records = [
        store.start_rollout(None, "alice", START, text=PLAN.format(flag=flag))
        for flag in ("one", "two")
    ]
    plans = [store.parsed_plan(record.plan_id) for record in records]
    forgetful = FollowedObservations(store.engine, keep=1)
    rng = np.random.default_rng(20261202)
    compared = 0
    for step in range(60):
        now = START + timedelta(minutes=5 * step)
        stage = 0 if step < 30 else 1
        rows: list[AggregateRow] = []
        units: list[ExposureRow] = []
        for record in records:
            window = int(now.timestamp() // 60) // 15 * 15
            if step % 4 == 3:  # late: a window from an hour ago, read already
                window -= 60
            rows += _rows(record.id, stage, window, rng)
            units += [
                ExposureRow(record.id, f"u{step}-{n}", stage, bool(rng.random() < 0.3), now)
                for n in range(int(rng.integers(0, 4)))
            ]
        store.ingest(f"batch-{step}", "sdk", rows, units, now)
        asked = int(rng.integers(0, 3))  # 2: neither, so changes pile up between reads
        if asked == 2:
            continue
        record, plan = replace(records[asked], stage=stage), plans[asked]
        whole = store.observations(record, plan)
        assert store.followed_observations(record, plan) == whole
        assert forgetful.observations(record, plan) == replace(whole, gauges={})
        compared += 1
    assert compared >= 30
    # The store's follower read each rollout whole once; the forgetful one again after every
    # switch from one rollout to the other.
    assert store.followed.whole_reads == 2
    assert forgetful.whole_reads > 2
    assert all(store.observations(r, p).rates for r, p in zip(records, plans, strict=True))


def test_a_rollout_nobody_asks_for_is_forgotten(store: Store) -> None:
    """Asked again within ``idle`` seconds, a rollout is read from where it was; after that, or
    once ``keep`` others were asked for since, it is forgotten and read whole."""
    store.apply_flags(FLAGS, "flags.yaml", "alice", START)
    one, two = (
        store.start_rollout(None, "alice", START, text=PLAN.format(flag=flag))
        for flag in ("one", "two")
    )
    plan = store.parsed_plan(one.plan_id)
    clock = [0.0]
    follower = FollowedObservations(store.engine, keep=8, idle=10.0, clock=lambda: clock[0])
    rng = np.random.default_rng(7)

    def batch(step: int) -> None:
        window = int(START.timestamp() // 60) + 15 * step
        rows = _rows(one.id, 0, window, rng) + _rows(two.id, 0, window, rng)
        store.ingest(f"batch-{step}", "sdk", rows, [], START)

    def read(record: RolloutRecord, after: float) -> None:
        clock[0] += after
        whole = replace(store.observations(record, plan), gauges={})
        assert follower.observations(record, plan) == whole

    batch(0)
    read(one, 0.0)
    batch(1)
    read(one, 9.0)
    assert (follower.whole_reads, len(follower)) == (1, 1)
    batch(2)
    read(two, 9.0)
    assert (follower.whole_reads, len(follower)) == (2, 2)
    batch(3)
    read(two, 9.0)  # one was last asked for 18 s ago: forgotten
    assert (follower.whole_reads, len(follower)) == (2, 1)
    read(one, 0.0)
    assert (follower.whole_reads, len(follower)) == (3, 2)
