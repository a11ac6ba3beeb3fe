"""The simulator judges incrementally, like the controller: for the same seed its decisions are
those of judging every tick from scratch."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from rollwise.core import load_flags, load_plan
from rollwise.core.simulation import Regression, Scenario, Simulation

ROOT = Path(__file__).resolve().parents[3]
PLAN = load_plan((ROOT / "examples/checkout/plan.yaml").read_text())
FLAGS = load_flags((ROOT / "examples/checkout/flags.yaml").read_text())


@pytest.mark.parametrize(
    ("changes", "seed", "bounds"),
    [
        ({}, 0, False),  # an A/A through every stage to completion
        # Tenants with quiet hours and a base rate that swings over the day, for two days
        # (unfinished: still in the last stage): windows without aggregates, units exposed late.
        ({"quiet_tenants": 0.34, "daily_amplitude": 0.5, "horizon": timedelta(days=2)}, 1, False),
        ({"regression": Regression("checkout.error", 2.0)}, 1, True),
        ({"regression": Regression("checkout.latency", added_ms=80.0)}, 0, True),
        # Caught in one tenant once it is exposed, against its own history.
        ({"regression": Regression("checkout.error", 3.0, within=("tenant", "globex"))}, 4, False),
    ],
)
def test_incremental_runs_decide_as_a_full_recomputation(
    changes: dict[str, object], seed: int, bounds: bool
) -> None:
    """Every tick's decision (with the bounds shown to people, in the shorter runs) is the same
    to the bit whether
    the run judges from its kept evidence or from all its aggregates, and so is the run's
    result; the fast path (a move per tick, the decision only at the end) gives it too."""
    scenario = Scenario(
        **{"requests_per_second": 200, "tick": timedelta(minutes=5), **changes}  # type: ignore[arg-type]
    )
    simulation = Simulation(PLAN, FLAGS, scenario)

    def run(**options: bool):  # type: ignore[no-untyped-def]
        return simulation.run(np.random.default_rng(seed), **options)

    full, full_decisions = run(keep_decisions=True, bounds=bounds, full=True)
    kept, kept_decisions = run(keep_decisions=True, bounds=bounds)
    assert kept_decisions == full_decisions
    assert kept == full
    # Without bounds (a latency verdict's sentence then names no quantiles).
    fast, _ = run()
    assert fast == run(full=True)[0]
    assert fast.outcome == full.outcome and fast.seconds == full.seconds
