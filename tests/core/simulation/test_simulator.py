"""The simulator: reproducible from a seed, and its figures agree with what it simulated."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from rollwise.core import InputError, load_flags, load_plan
from rollwise.core.simulation import Regression, Scenario, Simulation, run_many
from rollwise.core.simulation._summary import summarize, wilson

ROOT = Path(__file__).resolve().parents[3]
PLAN = load_plan((ROOT / "examples/checkout/plan.yaml").read_text())
FLAGS = load_flags((ROOT / "examples/checkout/flags.yaml").read_text())


def _simulation(**changes: object) -> Simulation:
    settings: dict[str, object] = {"requests_per_second": 200, "tick": timedelta(minutes=5)}
    scenario = Scenario(**{**settings, **changes})  # type: ignore[arg-type]
    return Simulation(PLAN, FLAGS, scenario)


def test_the_same_seed_gives_the_same_runs() -> None:
    """Randomness comes only from the seed: two batches with one seed are identical."""
    simulation = _simulation(regression=Regression("checkout.error", 2.0))
    first = run_many(simulation, 4, seed=42)
    again = run_many(simulation, 4, seed=42)
    assert [(r.outcome, r.seconds, r.exposed_requests) for r in first] == [
        (r.outcome, r.seconds, r.exposed_requests) for r in again
    ]


def test_a_doubled_error_rate_is_rolled_back_in_the_internal_stage() -> None:
    """Every run rolls back, in stage 0, having exposed only the internal team."""
    results = run_many(_simulation(regression=Regression("checkout.error", 2.0)), 10, seed=1)
    assert all(r.outcome == "rolled_back" and r.stage_reached == 0 for r in results)
    assert all(r.trigger.startswith("checkout.error") for r in results)
    summary = summarize(results, regressed=True)
    blast = summary["blast_radius"]
    assert isinstance(blast, dict)
    assert 0 < blast["failed_exposed_requests"]["median"] < blast["exposed_requests"]["median"]
    assert summary["rolled_back_share"] == 1.0


def test_no_regression_is_not_rolled_back_within_a_day() -> None:
    """A/A for a simulated day at 200/s: no run rolls back."""
    results = run_many(_simulation(horizon=timedelta(days=1)), 6, seed=2)
    assert not [r for r in results if r.outcome == "rolled_back"]


def test_decisions_are_kept_with_their_evidence_when_asked() -> None:
    """keep_decisions returns one decision per tick, with bounds for people to read."""
    simulation = _simulation(regression=Regression("checkout.error", 3.0))
    result, decisions = simulation.run(np.random.default_rng(0), keep_decisions=True)
    assert len(decisions) == round(result.seconds / 300)
    assert decisions[-1].move.value == "rollback"
    error_verdict = decisions[-1].verdicts[0]
    assert error_verdict.lower is not None and error_verdict.lower > 1.1


def test_bad_scenarios_name_the_problem() -> None:
    """An unparsable regression, an unguarded metric or an unknown segment are refused."""
    with pytest.raises(InputError, match=r"like 'checkout\.error x2'"):
        Regression.parse("checkout.error doubles")
    with pytest.raises(InputError, match=r"no guard on 'checkout\.refunds'"):
        _simulation(regression=Regression("checkout.refunds", 2.0))
    with pytest.raises(InputError, match="no simulated traffic has tenant=nobody"):
        _simulation(regression=Regression("checkout.error", 2.0, within=("tenant", "nobody")))
    assert Regression.parse("checkout.latency +40ms").added_ms == 40.0


def test_wilson_interval() -> None:
    """The Wilson interval of 0 of 20 starts at 0 and of 20 of 20 ends at 1, and is narrow
    for large samples."""
    assert wilson(0, 20)[0] == 0.0 and wilson(20, 20)[1] == 1.0
    low, high = wilson(500, 1000)
    assert 0.46 < low < 0.5 < high < 0.54


def test_production_conditions_are_simulated_and_do_not_roll_back_an_aa() -> None:
    """A third of the tenants with business hours (no aggregates at night), the base rate
    swinging ±50 % over the day and tenants with a spread of own rates of 0.1: the example plan
    (unit: tenant, by: [tenant]) is not rolled back in 3 A/A runs, and the quiet tenants are
    judged as segments in the runs."""
    simulation = _simulation(
        quiet_tenants=0.34,
        daily_amplitude=0.5,
        tenant_rate_sigma=0.1,
        tick=timedelta(minutes=15),
        regression=None,
    )
    quiet = [
        c.tenant
        for c, q in zip(simulation.population.cells, simulation.quiet_cells, strict=True)
        if q
    ]
    assert quiet, "some tenants have business hours"
    for index in range(3):
        rng = np.random.default_rng(np.random.SeedSequence(9, spawn_key=(index,)))
        result, decisions = simulation.run(rng, keep_decisions=True, bounds=False)
        assert result.outcome != "rolled_back", result.reasons
        judged = {v.segment[1] for d in decisions for v in d.segment_verdicts if v.segment}
        assert judged & set(quiet)


def test_a_night_window_has_no_aggregates_for_quiet_tenants() -> None:
    """Aggregates are made the way an SDK ships them: a tenant with no requests in a window
    (its quiet hours) has no aggregate there at all, not a row of zeros."""
    simulation = _simulation(quiet_tenants=0.5)
    counts = simulation._empty_stratum()
    for (name, _), values in counts.items():
        if name == "requests":
            values[:] = np.where(simulation.quiet_cells, 0, 100)
    segments = {a.segment for a in simulation._aggregates((0, 0), counts)}
    quiet = {
        c.tenant
        for c, q in zip(simulation.population.cells, simulation.quiet_cells, strict=True)
        if q
    }
    assert quiet and not any(f"tenant={tenant}" in segments for tenant in quiet)
    assert "" in segments
