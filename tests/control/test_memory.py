"""The controller keeps state for running rollouts only, and the judgement's memos stay bounded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rollwise.control import Controller
from rollwise.core import RolloutAction
from rollwise.core.judgement import _evidence, _pairing, _tail, judge_guards
from rollwise.store import AggregateRow, Store

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
PLAN = """
flag: {flag}
unit: user
guards:
  - {{metric: errors, kind: rate, tolerance: 50%, by: [tenant]}}
  - {{metric: latency, kind: latency, tolerance: 20%}}
stages:
  - {{name: canary, audience: {{percent: 5}}, bake: 1d}}
  - {{name: all, audience: {{percent: 100}}}}
"""


def test_ended_rollouts_leave_nothing_in_the_controller(store: Store) -> None:
    """Sixty rollouts started, judged over a few ticks and ended one after another (rolled
    back, paused, completed by an operator): after each tick the controller holds evidence,
    holds and plans of the running rollouts only, and the judgement's memos stay under their
    limits."""
    flags = [f"f{i}" for i in range(60)]
    store.apply_flags(
        "flags:\n" + "".join(f"  {f}:\n    variants: [off, on]\n" for f in flags),
        "flags.yaml",
        "alice",
        NOW,
    )
    controller = Controller(store)
    now = NOW
    started = []
    for index, flag in enumerate(flags):
        now += timedelta(minutes=5)
        rollout = store.start_rollout(None, "alice", now, text=PLAN.format(flag=flag))
        started.append(rollout)
        window = int(now.timestamp() // 60) // 15 * 15
        rows = [
            AggregateRow(rollout.id, 0, window, side, segment, "errors", n, n // 100)
            for side, n in ((True, 500), (False, 9500))
            for segment in ("", "tenant=a", "tenant=b")
        ] + [
            AggregateRow(rollout.id, 0, window, side, "", "latency", n, 0, (0,) * 200 + (n,))
            for side, n in ((True, 500), (False, 9500))
        ]
        assert store.ingest(f"batch-{flag}", "sdk", rows, [], now)
        controller.tick(now)
        if index >= 3:  # keep three running: end the oldest
            ending = store.rollout(started[index - 3].id)
            action = (RolloutAction.ROLLBACK, RolloutAction.PAUSE)[index % 2]
            store.transition(ending, action=action, actor="alice", now=now)
        _running_only(store, controller, now)
    # Memos of the full judgement (the server's views), after judging the same strata often.
    plan = store.parsed_plan(started[-1].plan_id)
    observations = store.observations(store.rollout(started[-1].id), plan)
    for _ in range(3):
        judge_guards(plan, observations, 0, now)
    assert len(_evidence._RUNS) <= _evidence._RUNS_LIMIT
    assert len(_pairing._PAIRED) <= _pairing._PAIRED.limit
    assert len(_pairing._OWN) <= _pairing.OWN_LIMIT
    assert len(_tail._CONVERTED) <= _tail._CONVERTED.limit
    assert len(_tail._WINDOWS) <= _tail._WINDOWS.limit


def _running_only(store: Store, controller: Controller, now: datetime) -> None:
    controller.tick(now)
    running = [r for r in store.rollouts(live=True) if r.status.value == "running"]
    ids = {rollout.id for rollout in running}
    assert set(controller._tracker.tracked) == ids
    assert set(controller._last_hold) <= ids
    assert set(controller._plans) <= {rollout.plan_id for rollout in running}
    assert len(ids) <= 3
