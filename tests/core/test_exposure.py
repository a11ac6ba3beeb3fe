"""Stage audiences compile into flag rules: cumulative, sticky from stage to stage."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from rollwise.core import (
    Context,
    Plan,
    evaluate,
    flag_at_stage,
    flag_rolled_back,
    load_flags,
    load_plan,
)

ROOT = Path(__file__).resolve().parents[2]
FLAGS = load_flags((ROOT / "examples/checkout/flags.yaml").read_text())
PLAN: Plan = load_plan((ROOT / "examples/checkout/plan.yaml").read_text())
FLAG = FLAGS.flags["new-checkout"]
STAGED = [flag_at_stage(FLAG, PLAN, index, FLAGS.segments) for index in range(len(PLAN.stages))]

tenants = st.text(alphabet="abcdefghijklmnop-0123456789", min_size=1, max_size=12)
teams = st.sampled_from([None, "checkout", "payments", "sales"])


def _context(tenant: str, team: str | None) -> Context:
    attributes = {"tenant": tenant, "app_version": "2.5.0"}
    if team is not None:
        attributes["team"] = team
    return Context(f"user-of-{tenant}", attributes)


def test_internal_stage_exposes_only_the_internal_team() -> None:
    """Stage 0: the internal team is on, a customer tenant is off (the baseline)."""
    internal = STAGED[0]
    assert evaluate(internal, _context("globex", "checkout")).variant == "on"
    assert evaluate(internal, _context("globex", None)).variant == "off"
    assert evaluate(internal, _context("acme", None)).variant == "off"


def test_pilot_stage_keeps_the_internal_team_and_adds_the_pilot() -> None:
    """Stage 1 is cumulative: internal team and pilot tenant on, other tenants off."""
    pilot = STAGED[1]
    assert evaluate(pilot, _context("globex", "payments")).variant == "on"
    assert evaluate(pilot, _context("acme", None)).variant == "on"
    assert evaluate(pilot, _context("globex", None)).variant == "off"


def test_percent_stages_expose_their_share_of_tenants() -> None:
    """5 %, 25 % and 98 % (100 % less a 2 % holdback) of 20,000 tenants, within 4 SE."""
    for index, share in ((2, 0.05), (3, 0.25), (4, 0.98)):
        exposed = sum(
            evaluate(STAGED[index], _context(f"tenant-{n}", None)).enabled for n in range(20_000)
        )
        assert abs(exposed / 20_000 - share) < 4 * (share * (1 - share) / 20_000) ** 0.5


@settings(max_examples=300)
@given(tenants, teams)
def test_a_unit_exposed_at_one_stage_stays_exposed_at_every_later_stage(
    tenant: str, team: str | None
) -> None:
    """Monotonic expansion through the whole example plan, for any tenant and team."""
    context = _context(tenant, team)
    exposed = [evaluate(flag, context).enabled for flag in STAGED]
    first = exposed.index(True) if True in exposed else len(exposed)
    assert all(exposed[first:])


def test_rollback_serves_the_rollback_variant_to_everyone() -> None:
    """After a rollback even the internal team and the pilot tenant get 'off'."""
    rolled_back = flag_rolled_back(FLAG, PLAN)
    for tenant, team in (("acme", None), ("globex", "checkout"), ("initech", None)):
        assert evaluate(rolled_back, _context(tenant, team)).variant == "off"
