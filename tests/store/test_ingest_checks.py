"""What a batch must agree with before it is stored (``Store.check_batch``): live rollouts, the
stage being exposed (or the one just left), declared metrics; the first bad row is named."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from rollwise.core import RolloutAction
from rollwise.store import (
    LATE_BATCH_GRACE,
    AggregateRow,
    ConflictError,
    ExposureRow,
    GaugeRow,
    InvalidBatch,
    NotFoundError,
    RolloutRecord,
    Store,
)
from tests.store._checkout import FLAGS, NOW, PLAN

SECOND = timedelta(seconds=1)


def _started(store: Store) -> RolloutRecord:
    store.apply_flags(FLAGS, "flags.yaml", "alice", NOW)
    plan = store.save_plan(PLAN, "plan.yaml", "alice", NOW).record
    return store.start_rollout(plan.id, "alice", NOW)


def _row(rollout: int, stage: int = 0, metric: str = "checkout.error") -> AggregateRow:
    return AggregateRow(rollout, stage, 100, True, "", metric, 10, 1)


def test_rows_of_the_current_stage_and_declared_metrics_are_taken(store: Store) -> None:
    """Guarded metrics, a metric only the flags file declares, declared gauges: no refusal."""
    rollout = _started(store)
    store.check_batch(
        [_row(rollout.id), _row(rollout.id, metric="checkout.abandoned")],
        [ExposureRow(rollout.id, "acme", 0, True, NOW)],
        [GaugeRow("payments.queue_depth", 3.0, NOW)],
        NOW,
    )
    store.apply_flags(
        FLAGS.replace("metrics:\n", "metrics:\n  search.clicks: {kind: rate}\n"),
        "flags.yaml",
        "alice",
        NOW,
    )
    store.check_batch([_row(rollout.id, metric="search.clicks")], [], [], NOW)


def test_a_stage_the_plan_does_not_have_is_invalid_naming_the_first_bad_row(
    store: Store,
) -> None:
    """Stage 7 of a 3-stage plan: 422-invalid, naming the row and the plan's stages."""
    rollout = _started(store)
    with pytest.raises(InvalidBatch) as refused:
        store.check_batch([_row(rollout.id), _row(rollout.id, stage=7)], [], [], NOW)
    assert str(refused.value).startswith(
        f"aggregates[1].stage: rollout {rollout.id}'s plan has no stage 7: its stages are "
        "0 (internal), 1 (pilot-tenant)"
    )
    assert refused.value.details["path"] == "aggregates[1].stage"
    with pytest.raises(InvalidBatch, match=r"^exposures\[0\]\.stage: .* no stage 3"):
        store.check_batch([], [ExposureRow(rollout.id, "acme", 3, True, NOW)], [], NOW)


def test_the_stage_just_left_is_taken_for_the_grace_and_then_refused(store: Store) -> None:
    """After an expansion, stage 0 rows are taken for LATE_BATCH_GRACE, then refused (409);
    a stage not reached yet is refused."""
    rollout = _started(store)
    with pytest.raises(ConflictError, match=r"aggregates\[0\]\.stage: .* stage 1 \(pilot-tenant\)"):
        store.check_batch([_row(rollout.id, stage=1)], [], [], NOW)
    store.transition(rollout, action=RolloutAction.EXPAND, actor="controller", now=NOW, stage=1)
    for stage in (0, 1):
        store.check_batch([_row(rollout.id, stage=stage)], [], [], NOW + LATE_BATCH_GRACE)
    late = NOW + LATE_BATCH_GRACE + SECOND
    store.check_batch([_row(rollout.id, stage=1)], [], [], late)
    with pytest.raises(
        ConflictError, match=r"is in stage 1 .* stage 0 \(internal\) is not being exposed"
    ):
        store.check_batch([], [ExposureRow(rollout.id, "acme", 0, True, NOW)], [], late)


def test_a_store_on_a_fast_clock_widens_the_grace(store: Store) -> None:
    """The demo's clock runs thousands of times the wall's: it widens ``late_batch_grace``, and
    the stage left and the rollout ended take batches for that long, then refuse them, saying
    for how many minutes they were taken."""
    store.late_batch_grace = timedelta(days=2)
    rollout = _started(store)
    after = store.transition(
        rollout, action=RolloutAction.EXPAND, actor="controller", now=NOW, stage=1
    )
    store.check_batch([_row(rollout.id, stage=0)], [], [], NOW + timedelta(days=1))
    store.transition(after, action=RolloutAction.ROLLBACK, actor="alice", now=NOW)
    store.check_batch([_row(rollout.id, stage=1)], [], [], NOW + timedelta(days=2))
    with pytest.raises(ConflictError, match="taken for 2880 minutes after it ends"):
        store.check_batch([_row(rollout.id, stage=1)], [], [], NOW + timedelta(days=2, seconds=1))


@pytest.mark.parametrize("action", [RolloutAction.ROLLBACK, RolloutAction.COMPLETE])
def test_an_ended_rollout_takes_late_batches_for_the_grace_only(
    store: Store, action: RolloutAction
) -> None:
    """Rolled back or completed: batches are taken for LATE_BATCH_GRACE after the end (SDKs
    flush late, and a rollback's report must list every exposed unit), then refused (409)."""
    rollout = _started(store)
    store.transition(rollout, action=action, actor="alice", now=NOW)
    store.check_batch([_row(rollout.id)], [], [], NOW + LATE_BATCH_GRACE)
    with pytest.raises(ConflictError) as refused:
        store.check_batch([_row(rollout.id)], [], [], NOW + LATE_BATCH_GRACE + SECOND)
    verb = "was rolled back" if action is RolloutAction.ROLLBACK else "completed"
    assert str(refused.value).startswith(f"aggregates[0].rollout: rollout {rollout.id} {verb} at")
    assert refused.value.details["status"] in ("rolled_back", "completed")


def test_a_paused_rollout_still_takes_batches(store: Store) -> None:
    """Paused is live: its SDKs still report, and a resume judges what they saw."""
    rollout = _started(store)
    store.transition(rollout, action=RolloutAction.PAUSE, actor="alice", now=NOW)
    store.check_batch([_row(rollout.id)], [], [], NOW + timedelta(days=1))


def test_unknown_metrics_and_rollouts_are_refused(store: Store) -> None:
    """A metric neither guarded nor declared (aggregates and gauges) is invalid; an unknown
    rollout is not found; each names the row."""
    rollout = _started(store)
    with pytest.raises(
        InvalidBatch, match=r"^aggregates\[0\]\.metric: .* does not guard 'made.up'"
    ):
        store.check_batch([_row(rollout.id, metric="made.up")], [], [], NOW)
    with pytest.raises(InvalidBatch, match=r"^gauges\[1\]\.metric: .* 'made.up'"):
        store.check_batch(
            [], [], [GaugeRow("payments.queue_depth", 1.0, NOW), GaugeRow("made.up", 1.0, NOW)], NOW
        )
    with pytest.raises(
        NotFoundError,
        match=rf"^exposures\[0\]\.rollout: the batch names unknown rollout\(s\): {rollout.id + 1}$",
    ):
        store.check_batch(
            [_row(rollout.id)], [ExposureRow(rollout.id + 1, "acme", 0, True, NOW)], [], NOW
        )


def test_a_batch_is_checked_in_one_statement(store: Store) -> None:
    """Every SDK batch is checked: the rollouts it names and the flags file (for its gauge and
    a metric only the file declares) come in one statement, once the plan and the file are
    parsed (each once per version)."""
    rollout = _started(store)
    batch = (
        [_row(rollout.id), _row(rollout.id, metric="checkout.abandoned")],
        [ExposureRow(rollout.id, "acme", 0, True, NOW)],
        [GaugeRow("payments.queue_depth", 3.0, NOW)],
    )
    store.check_batch(*batch, NOW)  # the plan and the flags file parsed
    statements: list[str] = []

    def executed(*args: object) -> None:
        statements.append(str(args[2]))

    sa.event.listen(store.engine, "before_cursor_execute", executed)
    try:
        store.check_batch(*batch, NOW)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", executed)
    assert len(statements) == 1, statements
