"""A simulated rollout's traffic, drawn a block of ticks at a time.

Each tick of a run draws, per cell of the population: requests (Poisson, none from a quiet
tenant outside its business hours), the share exposed under the current stage's flag
(binomial), the events of each rate metric on each side (binomial, at the cell's rate, the
stage's and the hour's factors, and the regression where it applies), each side's latency
histogram of each latency metric (multinomial over the SDK's buckets) and each gauge's reading.

Only the stage depends on what the run decided, so the draws of up to ``BLOCK`` ticks of one
stage are made in one call each (NumPy's per-call cost, not the draws, is what a tick spent
here). A block ends early when the stage changes: the rest of it is dropped unseen, and the
next block is drawn for the new stage. So a block reaches no further than the stage's bake at
first (it cannot move on before), and after the bake no further than the time already spent
in the stage. The ticks' draws are independent of each other and of the decisions, so
dropping ones that were never read changes no distribution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from rollwise.core.simulation._scenario import Scenario

if TYPE_CHECKING:
    from rollwise.core.simulation._simulator import Simulation

#: Ticks drawn at once: enough to spread NumPy's per-call cost, few enough that a stage change
#: drops little (the checkout plan's run spends ~860 ticks in 5 stages).
BLOCK = 64
#: The fewest ticks drawn at once.
MIN_BLOCK = 8


@dataclass(frozen=True, slots=True)
class Block:
    """``ticks`` consecutive ticks of one stage, from ``first``: rows are ticks."""

    first: int
    stage: int
    ticks: int
    requests: np.ndarray  # (ticks, cells)
    exposed: np.ndarray  # (ticks, cells)
    baseline: np.ndarray  # (ticks, cells)
    #: (metric, exposed side?) -> (ticks, cells) events
    events: dict[tuple[str, bool], np.ndarray]
    #: (metric, exposed side?) -> (ticks, buckets) latency counts
    histograms: dict[tuple[str, bool], np.ndarray]
    share_exposed: np.ndarray  # (ticks,)
    gauges: dict[str, np.ndarray]  # metric -> (ticks,)


def stage_factor(factors: Sequence[float], stage: int) -> float:
    """A per-stage factor; stages past the list keep its last value, none means 1."""
    if not factors:
        return 1.0
    return factors[min(stage, len(factors) - 1)]


class Traffic:
    """One run's traffic: ``block(tick, stage)`` holds that tick's draws."""

    def __init__(
        self,
        simulation: Simulation,
        rng: np.random.Generator,
        cell_rate: np.ndarray,
        start: datetime,
    ) -> None:
        self._simulation = simulation
        self._start = start
        self._rng = rng
        self._cell_rate = cell_rate
        scenario = simulation.scenario
        self._expected = (
            scenario.requests_per_second
            * scenario.tick.total_seconds()
            * simulation.population.shares
        )
        self._current: Block | None = None
        self._entered = 0  # the tick the current stage began
        #: Per stage, the ticks of its bake: it cannot move on before they have passed.
        self._bake = [
            math.ceil(stage.bake / scenario.tick) if stage.bake else 0
            for stage in simulation.plan.stages
        ]

    def block(self, tick: int, stage: int) -> Block:
        """The block holding tick number ``tick`` of the run that began at ``start`` (its row:
        ``tick - block.first``), at ``stage``."""
        current = self._current
        if current is None or current.stage != stage or tick >= current.first + current.ticks:
            if current is None or current.stage != stage:
                self._entered = tick
            current = self._current = self._draw(tick, stage, self._size(tick, stage))
        return current

    def _size(self, tick: int, stage: int) -> int:
        """Ticks to draw from ``tick``: up to the end of the stage's bake, which it cannot leave
        before; after it, as many as it has spent in the stage (so that at most about half of
        what is drawn goes unread when it moves on), within [MIN_BLOCK, BLOCK]."""
        spent = tick - self._entered
        bake = self._bake[stage]
        wanted = bake - spent if spent < bake else spent
        return min(BLOCK, max(MIN_BLOCK, wanted))

    def _draw(self, first: int, stage: int, ticks: int) -> Block:
        simulation, rng = self._simulation, self._rng
        scenario: Scenario = simulation.scenario
        step = scenario.tick
        began = [self._start + step * (first + index) for index in range(ticks)]
        hours = np.array([moment.hour + moment.minute / 60 for moment in began])
        active = np.broadcast_to(self._expected, (ticks, len(self._expected)))
        if simulation.has_quiet:
            opens, closes = scenario.business_hours
            closed = np.array([not opens <= moment.hour < closes for moment in began])
            active = np.where(closed[:, None] & simulation.quiet_cells[None, :], 0.0, active)
        requests = rng.poisson(active)
        exposed = rng.binomial(requests, simulation.stage_exposure[stage][0])
        baseline = requests - exposed
        level = stage_factor(scenario.stage_rate_factors, stage) * (
            1 + scenario.daily_amplitude * np.sin(2 * math.pi * hours / 24)
        )
        rate = np.minimum(self._cell_rate[None, :] * level[:, None], 1.0)
        regression = scenario.regression
        events: dict[tuple[str, bool], np.ndarray] = {}
        for metric in simulation.rate_metrics:
            rate_exposed = rate
            if regression is not None and regression.metric == metric:
                rate_exposed = np.where(
                    simulation.regressed_cells[None, :],
                    np.minimum(rate * regression.factor, 1.0),
                    rate,
                )
            events[metric, True] = rng.binomial(exposed, rate_exposed)
            events[metric, False] = rng.binomial(baseline, rate)
        histograms: dict[tuple[str, bool], np.ndarray] = {}
        scale = stage_factor(scenario.stage_latency_factors, stage)
        total_exposed = exposed.sum(axis=1)
        for metric in simulation.latency_metrics:
            base = simulation._latency(scale, 0.0)
            if regression is not None and regression.metric == metric:
                regressed = exposed[:, simulation.regressed_cells].sum(axis=1)
                counts = rng.multinomial(total_exposed - regressed, base)
                counts += rng.multinomial(
                    regressed, simulation._latency(scale * regression.factor, regression.added_ms)
                )
            else:
                counts = rng.multinomial(total_exposed, base)
            histograms[metric, True] = counts
            histograms[metric, False] = rng.multinomial(baseline.sum(axis=1), base)
        share_exposed = total_exposed / np.maximum(requests.sum(axis=1), 1)
        gauges: dict[str, np.ndarray] = {}
        for guard in simulation.gauges:
            limit = guard.maximum if guard.maximum is not None else (guard.minimum or 1.0)
            gauge = scenario.gauge_level * limit * (1 + 0.05 * rng.standard_normal(ticks))
            if regression is not None and regression.metric == guard.metric:
                gauge = gauge * (1 + (regression.factor - 1) * share_exposed)
            gauges[guard.metric] = gauge
        return Block(
            first, stage, ticks, requests, exposed, baseline, events, histograms, share_exposed,
            gauges,
        )  # fmt: skip
