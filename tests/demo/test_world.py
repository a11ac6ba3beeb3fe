"""The simulated checkout: tenants, shapes, the defect and the payments queue."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rollwise.core import bucket, load_plan
from rollwise.demo import DEFECT_TENANT, World, checkout_files
from rollwise.demo._world import STAFF_TENANT, Checkout, Shape, queue_depth, tenants

ROOT = Path(__file__).resolve().parents[2]


def _serve_many(world: World, tenant: str, shape: Shape, new: bool, n: int = 20_000) -> float:
    rng = random.Random(3)
    checkout = Checkout(next(t for t in tenants() if t.name == tenant), shape, 1)
    failures = sum(world.serve(rng, checkout, new).failed for _ in range(n))
    return failures / n


def test_the_demo_ships_the_example_files() -> None:
    """The demo plays exactly examples/checkout/{flags,plan}.yaml (packaged copies agree)."""
    flags, plan = checkout_files()
    assert flags == (ROOT / "examples/checkout/flags.yaml").read_text()
    assert plan == (ROOT / "examples/checkout/plan.yaml").read_text()


def test_weights_are_a_long_tail_that_sums_to_one() -> None:
    """Shop weights fall with rank, staff are a small share, and everything sums to 1."""
    population = tenants()
    assert abs(sum(t.weight for t in population) - 1) < 1e-9
    shops = [t for t in population if t.name != STAFF_TENANT]
    assert all(a.weight > b.weight for a, b in itertools.pairwise(shops))
    assert shops[0].weight > 10 * shops[-1].weight
    assert {t.team for t in population if t.name == STAFF_TENANT} == {
        "checkout",
        "payments",
        "support",
    }


def test_the_defect_tenant_is_exposed_first_by_the_five_percent_stage() -> None:
    """With the plan's salt, the defect tenant's bucket is in the first 5 %; the pilot
    tenant's is not, so the pilot stage cannot see the defect."""
    plan = load_plan(checkout_files()[1])
    assert plan.stages[2].name == "five-percent"
    assert bucket("new-checkout", DEFECT_TENANT) < 5_000
    assert bucket("new-checkout", "acme") >= 5_000


def test_the_defect_hits_only_one_tenants_invoices_on_the_new_checkout() -> None:
    """Invoice payments of the defect tenant fail far more on the new checkout; its card
    payments, other tenants' invoices and the old checkout are at the base rate."""
    world = World()
    base = world.base_error_rate
    defect = _serve_many(world, DEFECT_TENANT, Shape.INVOICE, new=True)
    assert 0.10 < defect < 0.16
    for tenant, shape, new in (
        (DEFECT_TENANT, Shape.INVOICE, False),
        (DEFECT_TENANT, Shape.CARD, True),
        ("granite-tools", Shape.INVOICE, True),
    ):
        assert abs(_serve_many(world, tenant, shape, new) - base) < 0.004
    assert abs(_serve_many(World(defect=False), DEFECT_TENANT, Shape.INVOICE, True) - base) < 0.004


def test_the_new_checkout_costs_a_few_milliseconds() -> None:
    """Same draws, the new checkout is slower by exactly its latency cost."""
    world = World()
    checkout = world.draw(random.Random(1), world.population())
    old = world.serve(random.Random(9), checkout, new=False).latency_ms
    new = world.serve(random.Random(9), checkout, new=True).latency_ms
    assert abs(new - old - world.latency_cost_ms) < 1e-9


def test_the_payments_queue_peaks_in_the_nightly_settlement_under_its_limit() -> None:
    """Over a day, the queue is deepest in 02:00-02:30 and never reaches the plan's 1,000."""
    rng = random.Random(5)
    day = datetime(2026, 11, 27, tzinfo=UTC)
    readings = {
        minute: queue_depth(day + timedelta(minutes=minute), rng) for minute in range(0, 1440, 5)
    }
    settlement = [v for m, v in readings.items() if 120 <= m < 150]
    other = [v for m, v in readings.items() if not 120 <= m < 150]
    assert min(settlement) > max(other)
    assert max(readings.values()) < 1_000
