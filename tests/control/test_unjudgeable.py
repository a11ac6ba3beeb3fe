"""A rollout whose data cannot be judged is paused, loudly; the others tick on."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

import pytest

from rollwise.control import Controller
from rollwise.core.judgement import Move, RolloutStatus
from rollwise.core.judgement._rollout import RolloutEvidence
from rollwise.store import AggregateRow, Store
from rollwise.store import _schema as t

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
FLAGS = "flags:\n" + "".join(f"  {name}:\n    variants: [off, on]\n" for name in ("good", "bad"))
PLAN = """
flag: {flag}
unit: user
guards: [{{metric: errors, kind: rate, tolerance: 50%}}]
stages:
  - {{name: canary, audience: {{percent: 5}}, bake: 1d}}
  - {{name: all, audience: {{percent: 100}}}}
"""


def _rollouts(store: Store) -> dict[str, int]:
    store.apply_flags(FLAGS, "flags.yaml", "alice", NOW)
    ids = {}
    for flag in ("good", "bad"):
        ids[flag] = store.start_rollout(None, "alice", NOW, text=PLAN.format(flag=flag)).id
        rows = [
            AggregateRow(ids[flag], 0, 600, True, "", "errors", 500, 5),
            AggregateRow(ids[flag], 0, 600, False, "", "errors", 9500, 95),
        ]
        assert store.ingest(f"batch-{flag}", "sdk", rows, [], NOW)
    return ids


def _paused_loudly(store: Store, rollout_id: int, error: str) -> None:
    assert store.rollout(rollout_id).status is RolloutStatus.PAUSED
    (decision,) = store.decisions(rollout_id, limit=1)
    assert decision.move == "pause"
    assert "cannot be judged" in decision.reasons[0] and error in decision.reasons[0]
    (audit,) = store.audit_log(limit=1, target="bad")
    assert audit.action == "rollout.pause" and audit.actor == "controller"
    assert error in audit.details["reasons"][0]


def test_data_no_e_value_can_take_pauses_its_rollout_and_only_it(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """An aggregate with negative requests (written past the ingest path's checks) cannot be
    judged: that rollout is paused, the error is the reason in its decision log and audit
    entry and in the log; the other rollout is judged as usual, at this tick and the next;
    ``judge_failures`` counts the pause once."""
    ids = _rollouts(store)
    with store.engine.begin() as connection:
        connection.execute(
            t.aggregates.update()
            .where((t.aggregates.c.rollout_id == ids["bad"]) & t.aggregates.c.exposed)
            .values(requests=-5)
        )
    controller = Controller(store)
    with caplog.at_level(logging.ERROR, logger="rollwise.control"):
        outcomes = {outcome.flag: outcome for outcome in controller.tick(NOW)}
    bad = outcomes["bad"]
    assert bad.applied and bad.decision.move is Move.PAUSE
    _paused_loudly(store, ids["bad"], "ValueError")
    assert f"rollout {ids['bad']} of flag bad: its data cannot be judged" in caplog.text
    assert outcomes["good"].decision.move is Move.HOLD
    assert controller.judge_failures == 1
    later = controller.tick(NOW + timedelta(minutes=1))
    assert [outcome.flag for outcome in later] == ["good"]
    assert store.rollout(ids["good"]).status is RolloutStatus.RUNNING
    assert controller.judge_failures == 1


def test_a_guard_that_raises_pauses_only_its_rollout(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the judgement raises for one rollout (here a guard's verdicts), that rollout is
    paused with the error named, and the other is judged."""
    ids = _rollouts(store)
    judged = RolloutEvidence.judged

    def failing(self: RolloutEvidence, *args: object, **options: object) -> object:
        if self.plan.flag == "bad":
            raise RuntimeError("the guard's judge broke")
        return judged(self, *args, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(RolloutEvidence, "judged", failing)
    controller = Controller(store)
    outcomes = {outcome.flag: outcome for outcome in controller.tick(NOW)}
    assert outcomes["bad"].decision.move is Move.PAUSE and outcomes["bad"].applied
    _paused_loudly(store, ids["bad"], "RuntimeError: the guard's judge broke")
    assert outcomes["good"].decision.move is Move.HOLD and not outcomes["good"].applied
    assert controller.judge_failures == 1


def test_the_server_counts_unjudgeable_rollouts_in_its_metrics(store: Store) -> None:
    """The server's controller loop pauses the rollout whose data cannot be judged and counts
    it in ``rollwise_unjudgeable_rollouts_total`` on /metrics."""
    from fastapi.testclient import TestClient

    from rollwise.control import ManualClock
    from rollwise.server import create_app

    ids = _rollouts(store)
    with store.engine.begin() as connection:
        connection.execute(
            t.aggregates.update()
            .where((t.aggregates.c.rollout_id == ids["bad"]) & t.aggregates.c.exposed)
            .values(requests=-5)
        )
    app = create_app(store, ManualClock(NOW), tick=timedelta(seconds=0.05))
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while store.rollout(ids["bad"]).status is not RolloutStatus.PAUSED:
            assert time.monotonic() < deadline, "the controller loop never paused the rollout"
            time.sleep(0.05)
        text = ""
        while "rollwise_unjudgeable_rollouts_total 1.0" not in text:
            assert time.monotonic() < deadline, text
            text = client.get("/metrics").text
            time.sleep(0.05)
    assert store.rollout(ids["good"]).status is RolloutStatus.RUNNING
    # Both rollouts were read in the first tick: none waits to be judged.
    assert "rollwise_rollouts_waiting 0.0" in text
