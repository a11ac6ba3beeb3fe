"""The rollout state machine: one table of status × action → status, and the checks that go with
it (which stage an approval may name, whether a flags file leaves live rollouts whole).

The store's guarded UPDATE enforces the table (``WHERE status IN legal_from(action) AND
version = ?``), and the server and the controller both go through it, so a race between an
operator and the controller resolves to exactly one legal outcome.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from rollwise.core._exposure import flag_at_stage, flag_rolled_back
from rollwise.core._flag import Flag, FlagSet, Segment
from rollwise.core._plan import Plan
from rollwise.core.judgement import RolloutStatus


class RolloutAction(StrEnum):
    """What can happen to a rollout once it is started."""

    EXPAND = "expand"
    PAUSE = "pause"
    RESUME = "resume"
    ROLLBACK = "rollback"
    COMPLETE = "complete"
    APPROVE = "approve"


_RUNNING = RolloutStatus.RUNNING
_PAUSED = RolloutStatus.PAUSED

#: The whole state machine. A pair that is not here is illegal. ``rolled_back`` and
#: ``completed`` are final: a rolled-back change comes back only through a new rollout.
TRANSITIONS: Mapping[tuple[RolloutStatus, RolloutAction], RolloutStatus] = MappingProxyType(
    {
        (_RUNNING, RolloutAction.EXPAND): _RUNNING,
        (_RUNNING, RolloutAction.PAUSE): _PAUSED,
        (_RUNNING, RolloutAction.ROLLBACK): RolloutStatus.ROLLED_BACK,
        (_RUNNING, RolloutAction.COMPLETE): RolloutStatus.COMPLETED,
        (_RUNNING, RolloutAction.APPROVE): _RUNNING,
        (_PAUSED, RolloutAction.RESUME): _RUNNING,
        (_PAUSED, RolloutAction.ROLLBACK): RolloutStatus.ROLLED_BACK,
        (_PAUSED, RolloutAction.APPROVE): _PAUSED,
    }
)

#: Statuses in which a rollout owns its flag's targeting and is judged or waits for a human.
LIVE_STATUSES = frozenset({_RUNNING, _PAUSED})


def legal_from(action: RolloutAction) -> frozenset[RolloutStatus]:
    """The statuses ``action`` may be taken from."""
    return frozenset(status for status, act in TRANSITIONS if act is action)


def next_status(status: RolloutStatus, action: RolloutAction) -> RolloutStatus | None:
    """The status after ``action``, or None when the table does not allow it."""
    return TRANSITIONS.get((status, action))


def refusal(status: RolloutStatus, action: RolloutAction) -> str:
    """Why ``action`` is not possible from ``status``, in words."""
    allowed = sorted(s.value for s in legal_from(action))
    needs = " or ".join(allowed) if allowed else "no status"
    return f"cannot {action.value} a rollout that is {status.value}; it must be {needs}"


def approval_refusal(
    plan: Plan, status: RolloutStatus, stage: int, approvals: Sequence[str], name: str
) -> str | None:
    """Why approving stage ``name`` is refused now, or None when it is accepted.

    Only the next stage, when it requires approval and has none yet, can be approved: approving
    a stage that needs none, the one already running, one further ahead, or one twice would
    say "approved" while changing nothing (or, ahead, approve a stage no one has looked at).
    """
    if next_status(status, RolloutAction.APPROVE) is None:
        return refusal(status, RolloutAction.APPROVE)
    index = next((i for i, s in enumerate(plan.stages) if s.name == name), None)
    if index is None:
        names = ", ".join(s.name for s in plan.stages)
        return f"the plan has no stage {name!r}; stages: {names}"
    current = plan.stages[stage].name
    if index <= stage:
        return f"stage {name!r} was entered already; the rollout is at stage {current!r}"
    if index > stage + 1:
        following = plan.stages[stage + 1].name
        return f"stage {name!r} is not next: the rollout is at {current!r}, next is {following!r}"
    if not plan.stages[index].approval_required:
        return f"stage {name!r} does not require approval"
    if name in approvals:
        return f"stage {name!r} is approved already"
    return None


@dataclass(frozen=True, slots=True)
class LiveRollout:
    """What the compatibility check needs of a running or paused rollout."""

    id: int
    stage: int
    plan: Plan


def flags_conflicts(flags: FlagSet, live: Sequence[LiveRollout]) -> list[str]:
    """Each way a new flags file would leave a live rollout's flag, variant, unit or segments
    undefined, named with the rollout and stage it would break."""
    conflicts = []
    for rollout in live:
        plan = rollout.plan
        at = f"rollout {rollout.id} at stage {plan.stages[rollout.stage].name!r}"
        flag = flags.flags.get(plan.flag)
        if flag is None:
            conflicts.append(f"flag {plan.flag}: removed, but {at} is live on it")
            continue
        names = {v.name for v in flag.variants}
        if plan.variant not in names:
            conflicts.append(f"flag {plan.flag}: variant {plan.variant!r} is served by {at}")
        if plan.rollback_to is not None and plan.rollback_to not in names:
            conflicts.append(
                f"flag {plan.flag}: variant {plan.rollback_to!r} is the rollback variant of {at}"
            )
        if flag.unit != plan.unit:
            conflicts.append(
                f"flag {plan.flag}: unit {flag.unit!r}, but {at} buckets by {plan.unit!r}"
            )
        used = {name for stage in plan.stages for name in stage.audience.segments}
        for name in sorted(used - set(flags.segments)):
            conflicts.append(f"segment {name}: used by {at} (flag {plan.flag})")
    return conflicts


def served_flag(
    flag: Flag, plan: Plan, status: RolloutStatus, stage: int, segments: Mapping[str, Segment]
) -> Flag:
    """``flag`` as SDKs are served it while its latest rollout is in ``status`` at ``stage``.

    A running, paused or completed rollout serves its stage's rules; a rolled-back one serves
    its rollback variant until the flag is rolled out again — falling back to the flag's static
    rules could expose the change anew.

    Raises:
        InputError: the flag no longer has what the plan needs (variant, segment).
    """
    if status is RolloutStatus.ROLLED_BACK:
        return flag_rolled_back(flag, plan)
    return flag_at_stage(flag, plan, stage, segments)
