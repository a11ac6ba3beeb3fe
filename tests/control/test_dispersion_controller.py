"""Users who differ, through the store and the controller: replicate aggregates arrive in
batches like any others, the controller's incremental evidence divides by the same φ as a full
recomputation, and an A/A that the request-level test rolls back holds (issue 9, item 6)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from rollwise.control import Controller
from rollwise.core.judgement import (
    REPLICATE_WINDOW,
    REPLICATES,
    Move,
    RolloutState,
    decide,
    judge_guards,
    replicate_of,
    replicate_segment,
)
from rollwise.store import AggregateRow, Store

START = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
FLAGS = "flags:\n" + "".join(
    f"  {name}:\n    variants: [off, on]\n    unit: user\n" for name in ("counted", "ignored")
)
PLAN = """
flag: {flag}
unit: user
guards:
  - {{metric: errors, kind: rate, tolerance: 10%}}
stages:
  - {{name: pilot, audience: {{percent: 20}}, bake: 3d}}
  - {{name: all, audience: {{percent: 100}}}}
"""
USERS = 3000
REPLICATE = np.array([replicate_of(f"user-{index}") for index in range(USERS)])


def _world(seed: int) -> list[dict[bool, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """A day of 15-minute windows from 3,000 users, 20 % exposed, requests per user
    Pareto(1.5) and 3 % of clients failing half their requests on both sides (an A/A): per
    window and side, the total (requests, events) and the replicates' increments."""
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.5, USERS) + 1
    rates = 400 * weights / weights.sum()
    exposed = rng.random(USERS) < 0.2
    failing = np.where(rng.random(USERS) < 0.03, 0.5, 0.01)
    windows = []
    for _ in range(96):
        n = rng.poisson(rates)
        x = rng.binomial(n, failing)
        windows.append(
            {
                side: (
                    np.array([n[members].sum(), x[members].sum()]),
                    np.bincount(REPLICATE[members], n[members], REPLICATES).astype(np.int64),
                    np.bincount(REPLICATE[members], x[members], REPLICATES).astype(np.int64),
                )
                for side, members in ((True, exposed), (False, ~exposed))
            }
        )
    return windows


def test_an_aa_with_differing_users_holds_and_the_controller_divides_like_a_recomputation(
    store: Store,
) -> None:
    """Seed 26's exposed side drew a heavy broken client: request by request it looks 8× worse.
    The rollout whose SDK ships no replicates (an old SDK: φ is 1) is rolled back within the
    day; the one with replicates holds all day, each of its decisions that of ``decide`` on
    ``store.observations`` (φ included), its sentence naming φ."""
    store.apply_flags(FLAGS, "flags.yaml", "alice", START)
    ids = {
        flag: store.start_rollout(None, "alice", START, text=PLAN.format(flag=flag)).id
        for flag in ("counted", "ignored")
    }
    controller = Controller(store)
    moves: dict[str, set[Move]] = {"counted": set(), "ignored": set()}
    compared = 0
    for index, window in enumerate(_world(26)):
        now = START + timedelta(minutes=15 * (index + 1))
        label = int((now - timedelta(minutes=15)).timestamp() // 60)
        live = {r.id: r for r in store.rollouts(live=True)}
        rows: list[AggregateRow] = []
        for flag, rollout_id in ids.items():
            if rollout_id not in live:
                continue
            for side, (total, requests, events) in window.items():
                n, x = (int(v) for v in total)
                rows.append(AggregateRow(rollout_id, 0, label, side, "", "errors", n, x))
                if flag == "ignored":
                    continue
                for k in np.flatnonzero(requests).tolist():
                    rows.append(
                        AggregateRow(
                            rollout_id,
                            0,
                            REPLICATE_WINDOW,
                            side,
                            replicate_segment(k),
                            "errors",
                            int(requests[k]),
                            int(events[k]),
                        )
                    )
        store.ingest(f"window-{index}", "sdk", rows, [], now)
        for outcome in controller.tick(now):
            record = live[outcome.rollout_id]
            flag = record.flag
            moves[flag].add(outcome.decision.move)
            if flag != "counted" or outcome.decision.at != now:
                continue
            plan = store.parsed_plan(record.plan_id)
            state = RolloutState(record.stage, record.stage_entered_at, record.status)
            observations = store.observations(record, plan)
            assert observations.dispersion["errors"].applied
            judged = judge_guards(
                plan,
                observations,
                record.stage,
                now,
                bounds=outcome.applied,
                pending_segment_bounds=False,
            )
            full = decide(plan, state, observations, now, record.approvals, judged=judged)
            assert outcome.decision == full, index
            (verdict,) = full.verdicts
            assert "units differ (φ = " in verdict.sentence
            compared += 1
    assert Move.ROLLBACK in moves["ignored"]
    assert moves["counted"] == {Move.HOLD}
    assert compared > 50
    assert controller.judge_failures == 0
