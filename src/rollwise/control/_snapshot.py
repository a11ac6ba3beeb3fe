"""What SDKs are served: the applied flags, with kill switches and each rollout's stage rules."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from rollwise.core import Flag, FlagSet, GuardKind, InputError, served_flag
from rollwise.core._flagdump import flags_document
from rollwise.core.judgement import RolloutStatus, tail_quantiles
from rollwise.store import RolloutRecord, Store

logger = logging.getLogger("rollwise.control")


def _latest_by_flag(rollouts: list[RolloutRecord]) -> dict[str, RolloutRecord]:
    latest: dict[str, RolloutRecord] = {}
    for rollout in rollouts:  # ordered by id: later rollouts win
        latest[rollout.flag] = rollout
    return latest


def served_flags(store: Store) -> tuple[FlagSet, list[dict[str, Any]]]:
    """The flag set SDKs evaluate, and the live rollouts they attribute outcomes to.

    A running or paused rollout serves its current stage; a completed one keeps its last stage;
    a rolled-back one keeps serving its rollback variant until the flag is rolled out again —
    falling back to the flag's static rules could expose the change anew.
    """
    flags = store.flags()
    served: dict[str, Flag] = dict(flags.flags)
    live: list[dict[str, Any]] = []
    for key, rollout in _latest_by_flag(store.rollouts()).items():
        flag = served.get(key)
        if flag is None:
            continue
        plan = store.parsed_plan(rollout.plan_id)
        try:
            staged = served_flag(flag, plan, rollout.status, rollout.stage, flags.segments)
        except InputError as exc:
            # Applying flags refuses anything that breaks a live rollout; an ended one whose
            # variant or segment was removed since serves the flag as applied (its variant is
            # gone, so nothing can expose it) rather than breaking every SDK's snapshot.
            logger.warning(
                "rollout %s of flag %s: %s; serving the flag as applied", rollout.id, key, exc
            )
            staged = flag
        served[key] = replace(staged, killed=flag.killed)
        if rollout.status in (RolloutStatus.RUNNING, RolloutStatus.PAUSED):
            live.append(
                {
                    "id": rollout.id,
                    "flag": key,
                    "stage": rollout.stage,
                    "variant": plan.variant,
                    "unit": plan.unit,
                    # What SDKs attribute outcomes to: not gauges (system-wide), not guards
                    # whose counts come from another source (they would count twice).
                    "metrics": {
                        g.metric: g.kind.value
                        for g in plan.guards
                        if g.kind is not GuardKind.GAUGE and g.source is None
                    },
                    "segments": sorted({a for g in plan.guards if g.source is None for a in g.by}),
                    # Per latency metric judged against the baseline, the quantile its tail
                    # point is at: the SDK counts, per replicate of units, the requests slower
                    # than its own baseline's quantile there (the judge's dispersion).
                    "tails": tail_quantiles(plan),
                    "samples_per": plan.stages[rollout.stage].min_samples_per,
                    # The SDK aggregates per window of the plan's stratum (minutes).
                    "window_minutes": int(plan.stratum.total_seconds() // 60),
                }
            )
    return replace(flags, flags=served), live


def snapshot_document(store: Store) -> dict[str, Any]:
    """The snapshot as JSON-ready data: version, flags document, live rollouts."""
    version = store.snapshot_version()
    flags, live = served_flags(store)
    return {"version": version, "flags": flags_document(flags), "rollouts": live}
