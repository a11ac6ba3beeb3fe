"""The rollout state machine's table and the checks around it: which action is legal from
which status, which stage an approval may name, which flags files would break a live rollout,
and what a rollout's flag is served in each status."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rollwise.core import (
    LIVE_STATUSES,
    TRANSITIONS,
    FlagSet,
    InputError,
    LiveRollout,
    Plan,
    RolloutAction,
    approval_refusal,
    evaluate,
    flag_at_stage,
    flags_conflicts,
    legal_from,
    load_flags,
    load_plan,
    next_status,
    refusal,
    served_flag,
)
from rollwise.core.judgement import RolloutStatus

ROOT = Path(__file__).resolve().parents[2]
FLAGS_TEXT = (ROOT / "examples/checkout/flags.yaml").read_text()
FLAGS = load_flags(FLAGS_TEXT)
#: Stages: internal, pilot-tenant (approval), five-percent, quarter (approval), all.
PLAN: Plan = load_plan((ROOT / "examples/checkout/plan.yaml").read_text())
FLAG = FLAGS.flags["new-checkout"]

RUNNING = RolloutStatus.RUNNING
PAUSED = RolloutStatus.PAUSED
ROLLED_BACK = RolloutStatus.ROLLED_BACK
COMPLETED = RolloutStatus.COMPLETED
A = RolloutAction

# --- the table ----------------------------------------------------------------------------

#: Every status × action, written out by hand: None is "refused".
EXPECTED: dict[tuple[RolloutStatus, RolloutAction], RolloutStatus | None] = {
    (RUNNING, A.EXPAND): RUNNING,
    (RUNNING, A.PAUSE): PAUSED,
    (RUNNING, A.RESUME): None,
    (RUNNING, A.ROLLBACK): ROLLED_BACK,
    (RUNNING, A.COMPLETE): COMPLETED,
    (RUNNING, A.APPROVE): RUNNING,
    (PAUSED, A.EXPAND): None,
    (PAUSED, A.PAUSE): None,
    (PAUSED, A.RESUME): RUNNING,
    (PAUSED, A.ROLLBACK): ROLLED_BACK,
    (PAUSED, A.COMPLETE): None,
    (PAUSED, A.APPROVE): PAUSED,
    **{(final, action): None for final in (ROLLED_BACK, COMPLETED) for action in RolloutAction},
}


def test_the_expected_table_names_every_pair() -> None:
    """The hand-written table below covers every status × action exactly once."""
    assert set(EXPECTED) == {(s, a) for s in RolloutStatus for a in RolloutAction}


@pytest.mark.parametrize(("status", "action"), sorted(EXPECTED), ids=lambda value: str(value))
def test_each_status_and_action_leads_where_the_table_says(
    status: RolloutStatus, action: RolloutAction
) -> None:
    """next_status gives the hand-written answer for every pair, and TRANSITIONS holds a pair
    exactly when it is legal."""
    assert next_status(status, action) is EXPECTED[(status, action)]
    assert ((status, action) in TRANSITIONS) == (EXPECTED[(status, action)] is not None)


@pytest.mark.parametrize("final", [ROLLED_BACK, COMPLETED])
def test_final_statuses_have_no_exits(final: RolloutStatus) -> None:
    """Nothing leaves rolled_back or completed: a change comes back only as a new rollout."""
    assert [a for a in RolloutAction if next_status(final, a) is not None] == []
    assert not any(status is final for status, _ in TRANSITIONS)


def test_live_statuses_are_running_and_paused_and_each_can_be_rolled_back() -> None:
    """Running and paused are live; from either a rollback is always possible (stop fast)."""
    assert frozenset({RUNNING, PAUSED}) == LIVE_STATUSES
    assert all(next_status(s, A.ROLLBACK) is ROLLED_BACK for s in LIVE_STATUSES)


@pytest.mark.parametrize(
    ("action", "statuses"),
    [
        (A.EXPAND, {RUNNING}),
        (A.PAUSE, {RUNNING}),
        (A.RESUME, {PAUSED}),
        (A.ROLLBACK, {RUNNING, PAUSED}),
        (A.COMPLETE, {RUNNING}),
        (A.APPROVE, {RUNNING, PAUSED}),
    ],
)
def test_legal_from_lists_the_statuses_an_action_may_be_taken_from(
    action: RolloutAction, statuses: set[RolloutStatus]
) -> None:
    """legal_from is the table read by action (what the store's guarded UPDATE uses)."""
    assert legal_from(action) == frozenset(statuses)
    assert legal_from(action) == {s for s in RolloutStatus if EXPECTED[(s, action)] is not None}


@pytest.mark.parametrize(
    ("status", "action", "message"),
    [
        (PAUSED, A.PAUSE, "cannot pause a rollout that is paused; it must be running"),
        (RUNNING, A.RESUME, "cannot resume a rollout that is running; it must be paused"),
        (
            ROLLED_BACK,
            A.ROLLBACK,
            "cannot rollback a rollout that is rolled_back; it must be paused or running",
        ),
        (
            COMPLETED,
            A.APPROVE,
            "cannot approve a rollout that is completed; it must be paused or running",
        ),
        (PAUSED, A.EXPAND, "cannot expand a rollout that is paused; it must be running"),
    ],
)
def test_a_refusal_says_what_the_status_must_be(
    status: RolloutStatus, action: RolloutAction, message: str
) -> None:
    """The refusal names the action, the status it met, and the statuses that would do."""
    assert refusal(status, action) == message


# --- approvals ----------------------------------------------------------------------------

STAGE_NAMES = [s.name for s in PLAN.stages]


@pytest.mark.parametrize(
    ("status", "stage", "approvals", "name", "message"),
    [
        pytest.param(
            RUNNING,
            0,
            (),
            "quarter",
            "stage 'quarter' is not next: the rollout is at 'internal', next is 'pilot-tenant'",
            id="a stage further ahead is not next",
        ),
        pytest.param(
            RUNNING,
            2,
            (),
            "pilot-tenant",
            "stage 'pilot-tenant' was entered already; the rollout is at stage 'five-percent'",
            id="a stage behind was entered already",
        ),
        pytest.param(
            PAUSED,
            1,
            (),
            "pilot-tenant",
            "stage 'pilot-tenant' was entered already; the rollout is at stage 'pilot-tenant'",
            id="the running stage was entered already",
        ),
        pytest.param(
            RUNNING,
            1,
            (),
            "five-percent",
            "stage 'five-percent' does not require approval",
            id="a stage without approval needs none",
        ),
        pytest.param(
            RUNNING,
            0,
            ("pilot-tenant",),
            "pilot-tenant",
            "stage 'pilot-tenant' is approved already",
            id="a stage approved already is not approved twice",
        ),
        pytest.param(
            ROLLED_BACK,
            0,
            (),
            "pilot-tenant",
            "cannot approve a rollout that is rolled_back; it must be paused or running",
            id="a rolled-back rollout takes no approval",
        ),
        pytest.param(
            COMPLETED,
            4,
            (),
            "nope",
            "cannot approve a rollout that is completed; it must be paused or running",
            id="an ended rollout is refused before its stage name is looked at",
        ),
        pytest.param(
            RUNNING,
            0,
            (),
            "nope",
            "the plan has no stage 'nope'; stages: internal, pilot-tenant, five-percent, quarter, all",
            id="an unknown stage is named with the plan's stages",
        ),
    ],
)
def test_each_approval_refusal_says_why(
    status: RolloutStatus, stage: int, approvals: tuple[str, ...], name: str, message: str
) -> None:
    """Each reason an approval is refused, in words a person can act on."""
    assert approval_refusal(PLAN, status, stage, approvals, name) == message


@pytest.mark.parametrize("status", [RUNNING, PAUSED])
def test_the_next_stage_needing_approval_can_be_approved(status: RolloutStatus) -> None:
    """The next stage, requiring approval and not approved yet: accepted, running or paused."""
    assert approval_refusal(PLAN, status, 0, (), "pilot-tenant") is None
    assert approval_refusal(PLAN, status, 2, ("pilot-tenant",), "quarter") is None


@given(
    status=st.sampled_from(list(RolloutStatus)),
    stage=st.integers(0, len(PLAN.stages) - 1),
    approvals=st.sets(st.sampled_from(STAGE_NAMES)),
    name=st.sampled_from([*STAGE_NAMES, "nope", ""]),
)
def test_an_approval_is_accepted_exactly_when_it_is_due(
    status: RolloutStatus, stage: int, approvals: set[str], name: str
) -> None:
    """Accepted iff the rollout is live, the stage is the next one, it requires approval, and
    it has none yet; otherwise refused with a reason."""
    due = (
        status in LIVE_STATUSES
        and name in STAGE_NAMES
        and STAGE_NAMES.index(name) == stage + 1
        and PLAN.stages[stage + 1].approval_required
        and name not in approvals
    )
    why = approval_refusal(PLAN, status, stage, sorted(approvals), name)
    assert (why is None) == due
    if why is not None:
        assert why.strip()


# --- flags files against live rollouts --------------------------------------------------

AT_PILOT = LiveRollout(7, 1, PLAN)
#: A plan whose rollback variant is not the safe default.
LEGACY_FLAGS = load_flags(
    """
flags:
  pricing:
    variants: [off, on, legacy]
    unit: tenant
"""
)
LEGACY_PLAN = load_plan(
    """
flag: pricing
unit: tenant
guards: [{metric: checkout.error, kind: rate, tolerance: 10%}]
stages:
  - {name: some, audience: {percent: 10}}
  - {name: all, audience: {percent: 100}}
rollback: {to: legacy}
"""
)


def _edited(*edits: tuple[str, str]) -> FlagSet:
    """The example flags file with each ``(old, new)`` replaced (``old`` must be there)."""
    text = FLAGS_TEXT
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    return load_flags(text)


def test_an_unchanged_or_unrelated_flags_file_conflicts_with_nothing() -> None:
    """The applied file, or one that only drops another flag, leaves the rollout whole."""
    assert flags_conflicts(FLAGS, [AT_PILOT]) == []
    others = replace(FLAGS, flags={"new-checkout": FLAG})
    assert flags_conflicts(others, [AT_PILOT]) == []
    assert flags_conflicts(replace(FLAGS, flags={}), []) == []


@pytest.mark.parametrize(
    ("flags", "live", "conflicts"),
    [
        pytest.param(
            replace(FLAGS, flags={"search-v2": FLAGS.flags["search-v2"]}),
            [AT_PILOT],
            ["flag new-checkout: removed, but rollout 7 at stage 'pilot-tenant' is live on it"],
            id="removing the flag names the rollout and stage live on it",
        ),
        pytest.param(
            _edited(
                ("variants: [off, on]", "variants: [off, beta]"), ("serve: on\n", "serve: beta\n")
            ),
            [AT_PILOT],
            ["flag new-checkout: variant 'on' is served by rollout 7 at stage 'pilot-tenant'"],
            id="renaming the served variant names the variant",
        ),
        pytest.param(
            _edited(("variants: [off, on]", "variants: [safe, on]")),
            [AT_PILOT],
            [
                "flag new-checkout: variant 'off' is the rollback variant of rollout 7 at "
                "stage 'pilot-tenant'"
            ],
            id="renaming the rollback variant names it as such",
        ),
        pytest.param(
            replace(FLAGS, flags={**FLAGS.flags, "new-checkout": replace(FLAG, unit="user")}),
            [AT_PILOT],
            [
                "flag new-checkout: unit 'user', but rollout 7 at stage 'pilot-tenant' "
                "buckets by 'tenant'"
            ],
            id="changing the unit names both units",
        ),
        pytest.param(
            replace(
                FLAGS, segments={k: v for k, v in FLAGS.segments.items() if k != "pilot-tenants"}
            ),
            [AT_PILOT],
            [
                "segment pilot-tenants: used by rollout 7 at stage 'pilot-tenant' (flag new-checkout)"
            ],
            id="dropping the running stage's segment names segment, rollout and flag",
        ),
        pytest.param(
            replace(
                FLAGS, segments={k: v for k, v in FLAGS.segments.items() if k != "internal-team"}
            ),
            [LiveRollout(3, 4, PLAN)],
            ["segment internal-team: used by rollout 3 at stage 'all' (flag new-checkout)"],
            id="a segment of an earlier stage is still used: audiences are cumulative",
        ),
        pytest.param(
            replace(
                FLAGS,
                flags={**FLAGS.flags, "new-checkout": replace(FLAG, unit="user")},
                segments={},
            ),
            [AT_PILOT],
            [
                "flag new-checkout: unit 'user', but rollout 7 at stage 'pilot-tenant' "
                "buckets by 'tenant'",
                "segment internal-team: used by rollout 7 at stage 'pilot-tenant' "
                "(flag new-checkout)",
                "segment pilot-tenants: used by rollout 7 at stage 'pilot-tenant' "
                "(flag new-checkout)",
            ],
            id="every conflict is listed, not only the first",
        ),
        pytest.param(
            LEGACY_FLAGS,
            [AT_PILOT, LiveRollout(12, 0, LEGACY_PLAN)],
            ["flag new-checkout: removed, but rollout 7 at stage 'pilot-tenant' is live on it"],
            id="each live rollout is checked on its own",
        ),
        pytest.param(
            load_flags("flags:\n  pricing:\n    variants: [off, on]\n    unit: tenant\n"),
            [LiveRollout(12, 1, LEGACY_PLAN)],
            ["flag pricing: variant 'legacy' is the rollback variant of rollout 12 at stage 'all'"],
            id="a rollback variant other than the safe default must stay",
        ),
    ],
)
def test_each_way_a_flags_file_breaks_a_live_rollout_is_named(
    flags: FlagSet, live: list[LiveRollout], conflicts: list[str]
) -> None:
    """Flag, variant, rollback variant, unit or segment: each conflict names the flag or
    segment, what is missing, and the rollout id and stage it would break."""
    assert flags_conflicts(flags, live) == conflicts


# --- what a rollout's flag is served -------------------------------------------------------

CONTEXTS = [
    {"key": "u1", "tenant": "acme", "team": "checkout", "app_version": "3.0.0"},
    {"key": "u2", "tenant": "globex", "app_version": "3.0.0"},
    *({"key": f"u-{n}", "tenant": f"tenant-{n}", "app_version": "2.4.0"} for n in range(200)),
]


@pytest.mark.parametrize("status", [RUNNING, PAUSED, COMPLETED])
@pytest.mark.parametrize("stage", range(len(PLAN.stages)))
def test_a_rollout_that_was_not_rolled_back_serves_its_stage(
    status: RolloutStatus, stage: int
) -> None:
    """Running, paused or completed: the flag is served its stage's rules."""
    assert served_flag(FLAG, PLAN, status, stage, FLAGS.segments) == flag_at_stage(
        FLAG, PLAN, stage, FLAGS.segments
    )


@pytest.mark.parametrize("stage", range(len(PLAN.stages)))
def test_a_rolled_back_rollout_serves_the_rollback_variant_to_everyone(stage: int) -> None:
    """Whatever stage it reached, everyone (the pilot tenant too, whom the flag's own rules
    would turn on) gets the rollback variant; no segment is needed to say so."""
    served = served_flag(FLAG, PLAN, ROLLED_BACK, stage, {})
    assert served.rules == ()
    assert {evaluate(served, context).variant for context in CONTEXTS} == {"off"}
    assert evaluate(FLAG, CONTEXTS[0]).variant == "on"  # the static rules would expose acme


def test_a_rollback_variant_other_than_the_safe_default_is_served() -> None:
    """``rollback: {to: legacy}`` serves legacy to everyone after a rollback."""
    flag = LEGACY_FLAGS.flags["pricing"]
    served = served_flag(flag, LEGACY_PLAN, ROLLED_BACK, 1, LEGACY_FLAGS.segments)
    assert {evaluate(served, context).variant for context in CONTEXTS} == {"legacy"}


def test_a_killed_flag_stays_killed_in_every_status() -> None:
    """The kill switch is kept: the safe default whatever the rollout's status and stage."""
    killed = replace(FLAG, killed=True)
    for status in RolloutStatus:
        served = served_flag(killed, PLAN, status, 4, FLAGS.segments)
        assert served.killed
        assert {evaluate(served, context).variant for context in CONTEXTS} == {"off"}


def test_a_stage_whose_segment_or_variant_is_gone_cannot_be_served() -> None:
    """A live rollout's flag without its segment or variant raises InputError (so applying
    such a flags file is refused, and a snapshot never serves half a stage)."""
    with pytest.raises(InputError, match="unknown segment 'pilot-tenants'"):
        served_flag(FLAG, PLAN, RUNNING, 1, {"internal-team": FLAGS.segments["internal-team"]})
    beta = _edited(
        ("variants: [off, on]", "variants: [off, beta]"), ("serve: on\n", "serve: beta\n")
    )
    with pytest.raises(InputError):
        served_flag(beta.flags["new-checkout"], PLAN, PAUSED, 2, beta.segments)
