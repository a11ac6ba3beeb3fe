"""What a well-formed SDK batch must also agree with before anything of it is stored: the
rollouts it names exist and are live (or ended a moment ago), its stages are the ones being
exposed, and its metrics are ones something declared. A replicate aggregate (window 0, segment
``~replicate=k``: a replicate's counts in the stage, for the judge's dispersion) is checked like
any other row, and its metric must be one the rollout's plan guards as a rate: the dispersion
is a rate guard's, and the SDK learns which metrics those are from the snapshot.

The server asks this of every batch before it queues it (``Store.check_batch``), so that a
batch is refused whole, naming its first bad row, and a good batch is never held up by a bad one
in the same transaction. The shape of a batch (histogram length, counts, finite gauges, times
near the server's clock, printable text) is the HTTP model's job, not this one's.

Late batches: an SDK flushes every few seconds and keeps a batch the server did not take for a
retry, so its batches trail the rollout. For ``LATE_BATCH_GRACE`` after a rollout left a stage, a
batch for that stage is taken; for as long after a rollout ended, a batch for it is taken too.
Those rows are true (the units *were* exposed then, and a rollback's report must list them) and
judged with the stage they name; after the grace they are refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rollwise.core import LIVE_STATUSES, FlagSet, Plan
from rollwise.core.judgement import RolloutStatus, replicated_metrics
from rollwise.store import _schema as t
from rollwise.store._control import LATEST_FLAGS, ControlStore, rollout_record
from rollwise.store._errors import ConflictError, NotFoundError, RefusedError
from rollwise.store._pool import reading
from rollwise.store._records import AggregateRow, ExposureRow, GaugeRow, RolloutRecord

__all__ = ["LATE_BATCH_GRACE", "BatchChecks", "InvalidBatch"]

#: How long after a rollout left a stage (or ended) a batch for it is still taken.
LATE_BATCH_GRACE = timedelta(minutes=5)


class InvalidBatch(RefusedError):
    """A batch that is well-formed but names what does not exist: a stage the rollout's plan
    does not have, a metric nothing declares. To the SDK it is as wrong as a malformed batch,
    and answered the same way (422, ``invalid``); ``details["path"]`` names the first bad row."""

    code = "invalid"


@dataclass(frozen=True, slots=True)
class _Target:
    """A rollout as a batch's rows are checked against it."""

    rollout: RolloutRecord
    plan: Plan
    #: The stages taken now: the current one, and the one it left within the grace.
    stages: frozenset[int]
    guarded: frozenset[str]
    #: The metrics with replicate aggregates (``replicated_metrics``).
    rates: frozenset[str]
    grace: timedelta


class BatchChecks(ControlStore):
    """``check_batch``, on the control plane it reads (mixed into ``Store``)."""

    #: How long after a rollout left a stage (or ended) a batch for it is still taken, on the
    #: store's clock. A server whose clock runs faster than the wall clock (the demo's) widens
    #: it, so that the same wall-clock delay is taken.
    late_batch_grace: timedelta = LATE_BATCH_GRACE

    def check_batch(
        self,
        aggregates: Sequence[AggregateRow],
        exposures: Sequence[ExposureRow],
        gauges: Sequence[GaugeRow],
        now: datetime,
    ) -> None:
        """Refuse a batch that contradicts what is stored, naming its first bad row (in the
        order aggregates, exposures, gauges). Reads only.

        Raises:
            NotFoundError: a row names a rollout that does not exist (404).
            ConflictError: a row names a rollout that ended more than ``LATE_BATCH_GRACE`` ago,
                or a stage that exists but is not being exposed (409).
            InvalidBatch: a row names a stage the plan does not have, or a metric that neither
                the rollout's plan guards nor the flags file declares, or it is a replicate
                aggregate of a metric no rate guard of the plan judges (422).
        """
        named = dict.fromkeys(
            [row.rollout_id for row in aggregates] + [unit.rollout_id for unit in exposures]
        )
        if not named and not gauges:
            return
        with reading(self.engine) as connection:
            # The rollouts and the flags file's version in one statement: one round trip, and
            # one snapshot of both.
            rows: Sequence[sa.Row[Any]] = []
            if named:
                rows = connection.execute(
                    sa.select(
                        t.rollouts, LATEST_FLAGS.scalar_subquery().label("flags_version")
                    ).where(t.rollouts.c.id.in_(list(named)))
                ).all()
            version = rows[0].flags_version if rows else connection.execute(LATEST_FLAGS).scalar()
            targets = {row.id: self._target(connection, rollout_record(row), now) for row in rows}
            unknown = [rollout for rollout in named if rollout not in targets]
            flags: FlagSet | None = None
            for path, rollout_id, stage, metric, replicate in _rows(aggregates, exposures):
                target = targets.get(rollout_id)
                if target is None:
                    missing = ", ".join(str(i) for i in sorted(unknown))
                    raise NotFoundError(
                        f"{path}.rollout: the batch names unknown rollout(s): {missing}",
                        details={"path": f"{path}.rollout", "rollouts": sorted(unknown)},
                    )
                _check_live(path, target, now, self.late_batch_grace)
                _check_stage(path, target, stage)
                if replicate is not None and metric not in target.rates:
                    raise InvalidBatch(
                        f"{path}.metric: rollout {rollout_id}'s plan has no rate guard and no "
                        f"latency guard with a tolerance on {metric!r}: replicate aggregates "
                        f"(segment {replicate}) are kept for those only",
                        details={"path": f"{path}.metric", "rollout": rollout_id},
                    )
                if metric is None or metric in target.guarded:
                    continue
                flags = flags if flags is not None else self._flags_at(connection, version)
                if metric not in flags.metrics:
                    raise InvalidBatch(
                        f"{path}.metric: rollout {rollout_id}'s plan does not guard {metric!r} "
                        "and the flags file does not declare it",
                        details={"path": f"{path}.metric", "rollout": rollout_id},
                    )
            if gauges:
                self._check_gauges(connection, gauges, self._flags_at(connection, version))

    def _target(self, connection: sa.Connection, rollout: RolloutRecord, now: datetime) -> _Target:
        plan = self._parsed_plans.get(rollout.plan_id)
        if plan is None:
            plan = self._plan_in(connection, rollout.plan_id)[1]
        stages = {rollout.stage}
        if rollout.stage > 0 and now - rollout.stage_entered_at <= self.late_batch_grace:
            stages.add(rollout.stage - 1)
        return _Target(
            rollout,
            plan,
            frozenset(stages),
            frozenset(guard.metric for guard in plan.guards),
            replicated_metrics(plan),
            self.late_batch_grace,
        )

    def _check_gauges(
        self, connection: sa.Connection, gauges: Sequence[GaugeRow], flags: FlagSet
    ) -> None:
        """A gauge is system-wide: its metric must be declared in the flags file or guarded by
        a live rollout."""
        declared = flags.metrics
        live: set[str] | None = None
        for index, gauge in enumerate(gauges):
            if gauge.metric in declared:
                continue
            if live is None:
                live = {g.metric for _, plan in self._live_in(connection) for g in plan.guards}
            if gauge.metric not in live:
                path = f"gauges[{index}].metric"
                raise InvalidBatch(
                    f"{path}: no live rollout guards {gauge.metric!r} and the flags file does "
                    "not declare it",
                    details={"path": path},
                )


def _rows(
    aggregates: Sequence[AggregateRow], exposures: Sequence[ExposureRow]
) -> Iterator[tuple[str, int, int, str | None, str | None]]:
    """(path, rollout, stage, metric, replicate segment or None) of each row, in the batch's
    order. A segment starting with "~" is a replicate's (the HTTP model refuses any other)."""
    for index, row in enumerate(aggregates):
        replicate = row.segment if row.segment.startswith("~") else None
        yield f"aggregates[{index}]", row.rollout_id, row.stage, row.metric, replicate
    for index, unit in enumerate(exposures):
        yield f"exposures[{index}]", unit.rollout_id, unit.stage, None, None


def _check_live(path: str, target: _Target, now: datetime, grace: timedelta) -> None:
    rollout = target.rollout
    if rollout.status in LIVE_STATUSES:
        return
    ended = rollout.ended_at or rollout.stage_entered_at
    if now - ended <= grace:
        return
    verb = "was rolled back" if rollout.status is RolloutStatus.ROLLED_BACK else "completed"
    minutes = int(grace.total_seconds() // 60)
    raise ConflictError(
        f"{path}.rollout: rollout {rollout.id} {verb} at {ended.isoformat()}; "
        f"batches for it are taken for {minutes} minutes after it ends",
        details={
            "path": f"{path}.rollout",
            "rollout": rollout.id,
            "status": rollout.status.value,
            "ended_at": ended.isoformat(),
        },
    )


def _check_stage(path: str, target: _Target, stage: int) -> None:
    if stage in target.stages:
        return
    rollout, names = target.rollout, [s.name for s in target.plan.stages]
    details = {"path": f"{path}.stage", "rollout": rollout.id, "stage": stage, "stages": names}
    if stage >= len(names):
        raise InvalidBatch(
            f"{path}.stage: rollout {rollout.id}'s plan has no stage {stage}: its stages are "
            + ", ".join(f"{index} ({name})" for index, name in enumerate(names)),
            details=details,
        )
    minutes = int(target.grace.total_seconds() // 60)
    current = rollout.stage
    raise ConflictError(
        f"{path}.stage: rollout {rollout.id} is in stage {current} ({names[current]}) since "
        f"{rollout.stage_entered_at.isoformat()}; stage {stage} ({names[stage]}) is not being "
        f"exposed (the stage it left is taken for {minutes} minutes)",
        details={**details, "current_stage": current},
    )
