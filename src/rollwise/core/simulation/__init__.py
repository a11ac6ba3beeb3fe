"""The simulator: Monte Carlo runs of a plan with the real decision function, on a simulated
clock, against synthetic traffic. Randomness comes only from the numpy Generator passed in."""

from __future__ import annotations

from rollwise.core.simulation._scenario import Regression, Scenario
from rollwise.core.simulation._simulator import (
    START,
    RunResult,
    Simulation,
    run_many,
    run_numbered,
    stage_shares,
)

__all__ = [
    "START",
    "Regression",
    "RunResult",
    "Scenario",
    "Simulation",
    "run_many",
    "run_numbered",
    "stage_shares",
]
