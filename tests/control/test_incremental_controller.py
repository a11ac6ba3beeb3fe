"""The controller reads only what changed at each tick and decides exactly what judging all of a
rollout's aggregates decides — through expansions, a rollback, late batches and a restart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from rollwise.control import Controller
from rollwise.control._controller import _signature, _state
from rollwise.core.judgement import (
    LATENCY_BUCKETS,
    Move,
    RolloutState,
    decide,
    judge_guards,
)
from rollwise.core.simulation._simulator import _lognormal_bucket_probabilities
from rollwise.store import AggregateRow, ExposureRow, Store, decision_evidence

START = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
FLAGS = "flags:\n" + "".join(
    f"  {name}:\n    variants: [off, on]\n    unit: tenant\n" for name in ("aa", "bb", "bad")
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
  - {{name: all, audience: {{percent: 100}}, holdback: 5%, bake: 3h}}
"""
TENANTS = ("t1", "t2", "t3", "t4")
SHAPE = _lognormal_bucket_probabilities(120.0, 0.5, 1.0, 0.0)
SHARES = (0.05, 0.5, 0.95)


def _batch(
    rollout: int, stage: int, window: int, factor: float, rng: np.random.Generator
) -> list[AggregateRow]:
    """Five minutes of one rollout: errors per tenant and in all, latency in all. Tenant t1 is
    exposed from the first stage on, t2 from the second, t3 from the third (``unit: tenant``)."""
    exposed_tenants = TENANTS[: stage + 1]
    rows: list[AggregateRow] = []
    totals = {True: [0, 0], False: [0, 0]}
    for tenant in TENANTS:
        side = tenant in exposed_tenants
        requests = int(rng.poisson(4000))
        events = int(rng.binomial(requests, 0.01 * (factor if side else 1.0)))
        rows.append(
            AggregateRow(
                rollout, stage, window, side, f"tenant={tenant}", "errors", requests, events
            )
        )
        totals[side][0] += requests
        totals[side][1] += events
    for side, (requests, events) in totals.items():
        if requests:
            rows.append(AggregateRow(rollout, stage, window, side, "", "errors", requests, events))
            histogram = tuple(int(v) for v in rng.multinomial(requests, SHAPE))
            assert len(histogram) == LATENCY_BUCKETS
            rows.append(
                AggregateRow(rollout, stage, window, side, "", "latency", requests, 0, histogram)
            )
    return rows


def test_the_controller_decides_like_a_full_recomputation(store: Store) -> None:
    """Five-minute ticks over three rollouts until they end (an A/A through its stages, another
    with a base rate drifting, one that regresses and rolls back), with a batch two hours late
    every seven ticks (its latency window is folded: the rollout is read whole
    again) and a controller restart: at every tick each rollout's decision is that of
    ``decide`` on ``store.observations``, and each hold kept in the log carries its
    evidence."""
    store.apply_flags(FLAGS, "flags.yaml", "alice", START)
    factors = {"aa": 1.0, "bb": 1.0, "bad": 3.0}
    ids = {
        flag: store.start_rollout(None, "alice", START, text=PLAN.format(flag=flag)).id
        for flag in factors
    }
    controller = Controller(store)
    rng = np.random.default_rng(20261130)
    now = START
    compared = kept = rebuilds = reused = 0
    moves: set[Move] = set()
    for tick in range(1, 12 * 48):
        now = START + timedelta(minutes=5 * tick)
        window = int((now - timedelta(minutes=5)).timestamp() // 60) // 15 * 15
        live = {r.id: r for r in store.rollouts(live=True)}
        rows: list[AggregateRow] = []
        for flag, rollout_id in ids.items():
            record = live.get(rollout_id)
            if record is None or (flag == "bb" and tick % 3):
                continue  # bb hears from its SDKs every third tick only
            drift = 1 + 0.5 * np.sin(tick / 40) if flag == "bb" else 1.0
            rows += _batch(rollout_id, record.stage, window, factors[flag] * drift, rng)
            if tick % 7 == 0:  # two hours late, for a window folded already
                rows += _batch(rollout_id, record.stage, window - 120, 1.0, rng)
        units = [
            ExposureRow(
                rollout_id,
                f"unit-{tick}-{n}",
                live[rollout_id].stage,
                bool(rng.random() < SHARES[live[rollout_id].stage]),
                now,
            )
            for flag, rollout_id in ids.items()
            if rollout_id in live and not (flag == "bb" and tick % 3)
            for n in range(5)
        ]
        store.ingest(f"tick-{tick}", "sdk", rows, units, now)
        if not live:
            break
        if tick == 20:  # a restart: everything is read whole once
            rebuilds += controller.rebuilds
            controller = Controller(store)
        for outcome in controller.tick(now):
            record = live[outcome.rollout_id]
            plan = store.parsed_plan(record.plan_id)
            state = RolloutState(record.stage, record.stage_entered_at, record.status)
            observations = store.observations(record, plan)
            # A kept decision shows the bounds of what it keeps: no pending segment's.
            judged = judge_guards(
                plan,
                observations,
                record.stage,
                now,
                bounds=outcome.applied,
                pending_segment_bounds=False,
            )
            full = decide(plan, state, observations, now, record.approvals, judged=judged)
            if outcome.decision.at == now:
                assert outcome.decision == full, (tick, record.flag)
                compared += 1
            else:  # nothing it depends on changed: the last decision stands, as it would
                assert outcome.decision.move is full.move is Move.HOLD
                assert _signature(outcome.decision) == _signature(full)
                reused += 1
            moves.add(full.move)
            if outcome.decision.move is Move.HOLD:
                (latest,) = store.decisions(record.id, limit=1)
                if latest.at == now:
                    with_bounds = decide(
                        plan, state, store.observations(record, plan), now, record.approvals
                    )
                    assert latest.evidence == decision_evidence(with_bounds)
                    kept += 1
    assert {Move.HOLD, Move.EXPAND, Move.ROLLBACK} <= moves
    # At each start, and for late batches: read whole again.
    assert rebuilds + controller.rebuilds > 2 * len(ids) + 3
    assert compared > 150 and kept > 30 and reused > 10
    assert controller.judge_failures == 0


def test_a_restarted_controller_reads_rollouts_a_chunk_at_a_time(store: Store) -> None:
    """After a restart, a tick reads rollouts whole for ``read_seconds`` at most (here none:
    one chunk of two a tick), a killed flag's first, then the oldest. Those not read yet are
    not judged (``waiting`` counts them); from the tick that reads them they are judged as
    the store's observations judge them."""
    names = [f"f{n}" for n in range(5)]
    store.apply_flags(
        "flags:\n"
        + "".join(f"  {name}:\n    variants: [off, on]\n    unit: tenant\n" for name in names),
        "flags.yaml",
        "alice",
        START,
    )
    ids = [
        store.start_rollout(None, "alice", START, text=PLAN.format(flag=name)).id for name in names
    ]
    rng = np.random.default_rng(7)
    now = START
    for tick in range(1, 13):  # an hour of batches from every rollout
        now = START + timedelta(minutes=5 * tick)
        window = int((now - timedelta(minutes=5)).timestamp() // 60) // 15 * 15
        rows = [row for rollout in ids for row in _batch(rollout, 0, window, 1.0, rng)]
        store.ingest(f"hour-{tick}", "sdk", rows, [], now)
    store.set_killed("f3", True, "alice", now)
    killed = store.kill_switches()
    controller = Controller(store, read_seconds=0.0, read_chunk=2)
    judged: list[set[int]] = []
    waiting: list[int] = []
    for tick in range(1, 5):
        now += timedelta(minutes=1)
        live = {record.id: record for record in store.rollouts(live=True)}
        outcomes = controller.tick(now)
        judged.append({outcome.rollout_id for outcome in outcomes})
        waiting.append(controller.waiting)
        for outcome in outcomes:
            record = live[outcome.rollout_id]
            plan = store.parsed_plan(record.plan_id)
            state = _state(record, killed.get(record.flag, False))
            full = decide(plan, state, store.observations(record, plan), now, record.approvals)
            assert outcome.decision.move is full.move, (tick, record.flag)
    assert judged[0] == {ids[3], ids[0]}
    assert {ids[1], ids[2]} <= judged[1] <= {ids[0], ids[1], ids[2], ids[3]}
    assert ids[4] in judged[2]
    assert waiting == [3, 1, 0, 0]
    assert controller.rebuilds == 5
