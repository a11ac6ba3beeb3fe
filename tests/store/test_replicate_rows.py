"""Replicate aggregates in the store (window 0, segment ``~replicate=k``: a replicate's counts of
a rate metric in a stage, for the judge's dispersion): checked like traffic rows, and only for a
rate guard's metric; added up per key; delivered to the judge, never added to traffic totals."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from rollwise.core import RolloutAction
from rollwise.core.judgement import REPLICATE_WINDOW, Aggregate, replicate_segment
from rollwise.store import (
    LATE_BATCH_GRACE,
    AggregateRow,
    ConflictError,
    InvalidBatch,
    NotFoundError,
    RolloutRecord,
    Store,
    outcome_totals,
)
from rollwise.store import _schema as t
from rollwise.store._changes import change_cursor, changes, rollout_aggregates
from tests.store._checkout import FLAGS, NOW, PLAN

WINDOW = int(NOW.timestamp() // 60)


def _started(store: Store) -> RolloutRecord:
    store.apply_flags(FLAGS, "flags.yaml", "alice", NOW)
    plan = store.save_plan(PLAN, "plan.yaml", "alice", NOW).record
    return store.start_rollout(plan.id, "alice", NOW)


def _traffic(rollout: int, requests: int = 100, events: int = 5) -> AggregateRow:
    return AggregateRow(rollout, 0, WINDOW, True, "", "checkout.error", requests, events)


def _replicate(
    rollout: int,
    replicate: int = 3,
    *,
    stage: int = 0,
    exposed: bool = True,
    metric: str = "checkout.error",
    requests: int = 40,
    events: int = 2,
) -> AggregateRow:
    return AggregateRow(
        rollout,
        stage,
        REPLICATE_WINDOW,
        exposed,
        replicate_segment(replicate),
        metric,
        requests,
        events,
    )


def _stored(store: Store) -> dict[tuple[Any, ...], tuple[int, int]]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(t.aggregates)).all()
    return {
        (r.rollout_id, r.stage, r.window, bool(r.exposed), r.segment, r.metric): (
            r.requests,
            r.events,
        )
        for r in rows
    }


def test_a_replicate_row_of_a_rate_guard_or_a_latency_tail_is_taken(store: Store) -> None:
    """A replicate row of the plan's rate guard, on either side, next to traffic, and one of its
    latency guard with a tolerance (requests beyond the tail point): no refusal."""
    rollout = _started(store)
    store.check_batch(
        [
            _traffic(rollout.id),
            _replicate(rollout.id, 0),
            _replicate(rollout.id, 63, exposed=False),
            _replicate(rollout.id, 5, metric="checkout.latency"),
        ],
        [],
        [],
        NOW,
    )


def test_replicate_rows_are_checked_like_traffic_rows(store: Store) -> None:
    """An unknown rollout (404), a stage not being exposed (409), a stage the plan does not have
    (422), a rollout ended past the grace (409): each named at the replicate row."""
    rollout = _started(store)
    with pytest.raises(NotFoundError) as unknown:
        store.check_batch([_traffic(rollout.id), _replicate(rollout.id + 1)], [], [], NOW)
    assert unknown.value.details["path"] == "aggregates[1].rollout"
    with pytest.raises(ConflictError) as ahead:
        store.check_batch([_replicate(rollout.id, stage=1)], [], [], NOW)
    assert ahead.value.details["path"] == "aggregates[0].stage"
    with pytest.raises(InvalidBatch, match=r"^aggregates\[0\]\.stage: .* no stage 7"):
        store.check_batch([_replicate(rollout.id, stage=7)], [], [], NOW)
    store.transition(rollout, action=RolloutAction.ROLLBACK, actor="alice", now=NOW)
    store.check_batch([_replicate(rollout.id)], [], [], NOW + LATE_BATCH_GRACE)
    with pytest.raises(ConflictError) as ended:
        store.check_batch([_replicate(rollout.id)], [], [], NOW + 2 * LATE_BATCH_GRACE)
    assert ended.value.details["path"] == "aggregates[0].rollout"


@pytest.mark.parametrize(
    "metric",
    [
        "checkout.abandoned",  # a rate in the flags file, not guarded by the plan
        "made.up",  # declared nowhere
    ],
)
def test_a_replicate_row_must_be_of_a_rate_guard(store: Store, metric: str) -> None:
    """Replicates are a rate guard's (or a latency tail's) dispersion: any other metric is
    invalid (422), naming the row's metric, even one a traffic row may carry."""
    rollout = _started(store)
    with pytest.raises(InvalidBatch) as refused:
        store.check_batch(
            [_replicate(rollout.id), _replicate(rollout.id, metric=metric)], [], [], NOW
        )
    assert refused.value.details["path"] == "aggregates[1].metric"
    assert str(refused.value).startswith(
        f"aggregates[1].metric: rollout {rollout.id}'s plan has no rate guard and no latency "
        f"guard with a tolerance on {metric!r}"
    )


def test_replicate_rows_add_up_and_stay_out_of_traffic_totals(store: Store) -> None:
    """Two batches' replicate rows are summed per key, like every aggregate; the traffic totals
    (``outcome_totals``) are those of the traffic rows alone."""
    rollout = _started(store)
    for number in (1, 2):
        rows = [
            _traffic(rollout.id),
            _replicate(rollout.id, 3, requests=40, events=2),
            _replicate(rollout.id, 3, exposed=False, requests=70, events=number),
        ]
        store.check_batch(rows, [], [], NOW)
        assert store.ingest(f"batch-{number}", "sdk:app", rows, [], NOW)
    stored = _stored(store)
    segment = replicate_segment(3)
    assert stored[(rollout.id, 0, 0, True, segment, "checkout.error")] == (80, 4)
    assert stored[(rollout.id, 0, 0, False, segment, "checkout.error")] == (140, 3)
    assert stored[(rollout.id, 0, WINDOW, True, "", "checkout.error")] == (200, 10)
    (totals,) = outcome_totals(store, rollout.id, "checkout.error")
    assert (totals.exposed, totals.requests, totals.events) == (True, 200, 10)


def test_the_judge_is_handed_replicate_rows(store: Store) -> None:
    """The change feed and a rollout's whole read deliver replicate rows (the judge's
    dispersion is made of them), and the data fingerprint changes with them."""
    rollout = _started(store)
    store.ingest("batch-1", "sdk:app", [_traffic(rollout.id)], [], NOW)
    cursor = change_cursor(store.engine)
    before = store.data_fingerprints([rollout.id])
    store.ingest("batch-2", "sdk:app", [_replicate(rollout.id, 5)], [], NOW)
    expected = Aggregate(0, 0, True, replicate_segment(5), "checkout.error", 40, 2, None)
    delivered = changes(store.engine, cursor).aggregates[rollout.id]
    ((_, every),) = rollout_aggregates(store.engine, [rollout.id])
    assert expected in every and len(every) == 2
    # The replicate row is delivered; on PostgreSQL a row at the watermark may come again
    # while another transaction is in flight (store/_changes.py), so the traffic row may too.
    assert expected in delivered
    assert set(delivered) <= set(every)
    assert store.data_fingerprints([rollout.id]) != before
