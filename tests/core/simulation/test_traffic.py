"""The simulated traffic, drawn a block of ticks at a time: a block holds one stage's ticks, a
stage change starts a new one at that tick, and the draws follow the stage, the hour and the
regression as they did when each tick drew its own."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np

from rollwise.core import load_flags, load_plan
from rollwise.core.simulation import Regression, Scenario, Simulation
from rollwise.core.simulation._simulator import START
from rollwise.core.simulation._traffic import BLOCK, Traffic

ROOT = Path(__file__).resolve().parents[3]
PLAN = load_plan((ROOT / "examples/checkout/plan.yaml").read_text())
FLAGS = load_flags((ROOT / "examples/checkout/flags.yaml").read_text())


def _traffic(seed: int = 3, **changes: object) -> tuple[Simulation, Traffic]:
    settings: dict[str, object] = {"requests_per_second": 200, "tick": timedelta(minutes=5)}
    scenario = Scenario(**{**settings, **changes})  # type: ignore[arg-type]
    simulation = Simulation(PLAN, FLAGS, scenario)
    rate = np.full(len(simulation.population.cells), scenario.error_rate)
    return simulation, Traffic(simulation, np.random.default_rng(seed), rate, START)


def test_a_block_serves_its_stage_until_the_stage_changes() -> None:
    _, traffic = _traffic()
    first = traffic.block(0, 2)
    assert (first.first, first.stage, first.ticks) == (0, 2, BLOCK)
    assert traffic.block(BLOCK - 1, 2) is first  # the same draws, not new ones
    changed = traffic.block(10, 3)  # the stage moved on at tick 10
    assert (changed.first, changed.stage) == (10, 3)
    assert traffic.block(10 + BLOCK, 3).first == 10 + BLOCK  # past the block: the next


def test_the_draws_follow_the_stage_the_hour_and_the_regression() -> None:
    simulation, traffic = _traffic(regression=Regression("checkout.error", 3.0))
    for stage in (2, 3, 4):  # 5 %, 25 %, 100 % with a 2 % holdback
        block = traffic.block(1000 * stage, stage)
        assert (block.exposed + block.baseline == block.requests).all()
        expected = float(simulation.stage_exposure[stage][0] @ simulation.population.shares)
        share = block.exposed.sum() / block.requests.sum()
        assert abs(share - expected) < 0.02, (stage, share, expected)
    # 100 % stage: plenty exposed; the regression triples the exposed error rate only.
    block = traffic.block(5000, 4)
    exposed_rate = block.events["checkout.error", True].sum() / block.exposed.sum()
    baseline_rate = block.events["checkout.error", False].sum() / block.baseline.sum()
    assert 0.025 < exposed_rate < 0.035 and 0.005 < baseline_rate < 0.016
    # Each side's latency histogram counts that side's requests, tick by tick.
    assert (
        block.histograms["checkout.latency", True].sum(axis=1) == block.exposed.sum(axis=1)
    ).all()
    assert (
        block.histograms["checkout.latency", False].sum(axis=1) == block.baseline.sum(axis=1)
    ).all()


def test_quiet_tenants_send_nothing_outside_business_hours() -> None:
    simulation, traffic = _traffic(quiet_tenants=0.5, business_hours=(8, 18))
    tick = simulation.scenario.tick
    quiet = simulation.quiet_cells
    assert quiet.any() and not quiet.all()
    # START is Monday 09:00: the block starting at 18:00 runs through the evening and night.
    evening = int(timedelta(hours=9) / tick)
    block = traffic.block(evening, 2)
    hours = [(START + tick * (evening + row)).hour for row in range(block.ticks)]
    closed = np.array([not 8 <= hour < 18 for hour in hours])
    assert closed.any()
    assert block.requests[closed][:, quiet].sum() == 0
    assert block.requests[closed][:, ~quiet].sum() > 0
