"""Monte Carlo runs of a plan: the real decision function on a simulated clock.

Each tick takes the traffic of every cell of the population (a tenant or the internal team,
times a request shape) from ``_traffic.py``, which draws it a block of ticks at a time:
requests, the share that is exposed under the current stage's flag (evaluated with the real
bucketing on the cell's users), events and latency histograms per side. The counts are added
to per-stage aggregates keyed like the SDK's, (stage, variant, segment, metric), and
``decide`` is called with them. Randomness comes only from the numpy
Generator passed in. Each run judges like the controller: its aggregates go into a
``RolloutEvidence`` that folds in only what changed (``full=True`` judges every tick from scratch
instead, the reference it is tested against).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np

from rollwise.core._errors import InputError
from rollwise.core._exposure import flag_at_stage
from rollwise.core._flag import Flag, FlagSet, Variant
from rollwise.core._plan import GuardKind, Plan, Worse
from rollwise.core.judgement import (
    AggregateTable,
    Decision,
    Exposure,
    GaugeReading,
    Move,
    RolloutState,
    SegmentKey,
    decide,
)
from rollwise.core.judgement._decision import decide_move
from rollwise.core.judgement._rollout import RolloutEvidence
from rollwise.core.simulation._population import (
    Cell,
    Population,
    _lognormal_bucket_probabilities,
)
from rollwise.core.simulation._scenario import Scenario
from rollwise.core.simulation._shipping import WindowShipping
from rollwise.core.simulation._traffic import Traffic

__all__ = [
    "START",
    "Cell",
    "Population",
    "RunResult",
    "Simulation",
    "_lognormal_bucket_probabilities",
    "run_many",
    "run_numbered",
    "share_exposed",
    "stage_shares",
]

_ENDS = (Move.ROLLBACK, Move.PAUSE, Move.COMPLETE)
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday morning


@dataclass
class RunResult:
    """How one simulated rollout ended."""

    outcome: str  # rolled_back, paused, completed, unfinished
    seconds: float
    stage_reached: int
    exposed_requests: int
    exposed_failures: int
    units_exposed: float
    trigger: str = ""
    reasons: tuple[str, ...] = ()
    #: (seconds since start, share of requests exposed) at each stage change, for plots.
    exposure_steps: list[tuple[float, float]] = field(default_factory=list)


class Simulation(WindowShipping):
    """Prepared once per (plan, flags, scenario); each ``run`` is one Monte Carlo rollout."""

    def __init__(self, plan: Plan, flags: FlagSet | None, scenario: Scenario) -> None:
        self.plan = plan
        self.scenario = scenario
        flag = flags.flags.get(plan.flag) if flags is not None else None
        if flag is None:
            flag = Flag(plan.flag, (Variant("off", False), Variant(plan.variant, True)))
        segments = flags.segments if flags is not None else {}
        self.population = Population(scenario, plan)
        self.stage_flags = []
        self.stage_exposure = []
        for index in range(len(plan.stages)):
            try:
                staged = flag_at_stage(flag, plan, index, segments)
            except InputError as exc:
                raise InputError(f"{exc.message}; pass the flags file with --flags") from None
            self.stage_flags.append(staged)
            self.stage_exposure.append(self.population.exposure(staged))
        self.rate_metrics = sorted({g.metric for g in plan.guards if g.kind is GuardKind.RATE})
        self.latency_metrics = sorted(
            {g.metric for g in plan.guards if g.kind is GuardKind.LATENCY}
        )
        self.gauges = [g for g in plan.guards if g.kind is GuardKind.GAUGE]
        self.split_by = sorted({a for g in plan.guards for a in g.by})
        per = {s.min_samples_per for s in plan.stages if s.min_samples_per}
        self.sample_attributes = sorted(per)
        regression = scenario.regression
        self.regressed_cells = np.ones(len(self.population.cells), dtype=bool)
        if regression is not None and regression.within is not None:
            attribute, value = regression.within
            self.regressed_cells = np.array(
                [self._attribute(cell, attribute) == value for cell in self.population.cells]
            )
            if not self.regressed_cells.any():
                raise InputError(
                    f"no simulated traffic has {attribute}={value}; tenants are "
                    f"{', '.join(scenario.names())}",
                    path="--in",
                )
        self.window = scenario.window or plan.stratum
        self._latency_cache: dict[tuple[float, float], np.ndarray] = {}
        names = scenario.names()
        quiet: set[str] = set()
        if scenario.quiet_tenants > 0:
            every = max(1, round(1 / scenario.quiet_tenants))
            quiet = {name for index, name in enumerate(names) if index % every == every - 1}
        self.quiet_cells = np.array([cell.tenant in quiet for cell in self.population.cells])
        self.has_quiet = bool(self.quiet_cells.any())
        self.cell_tenant = np.array(
            [
                names.index(c.tenant) if c.tenant in names else len(names)
                for c in self.population.cells
            ]
        )
        # Which rate metric counts as "failed requests" for the blast radius.
        failing = [
            g.metric for g in plan.guards if g.kind is GuardKind.RATE and g.worse is Worse.HIGHER
        ]
        if regression is not None and regression.metric in self.rate_metrics:
            self.failure_metric: str | None = regression.metric
        else:
            self.failure_metric = failing[0] if failing else None
        known = set(self.rate_metrics) | set(self.latency_metrics) | {g.metric for g in self.gauges}
        if regression is not None and regression.metric not in known:
            raise InputError(
                f"the plan has no guard on {regression.metric!r}; guarded metrics: "
                f"{', '.join(sorted(known))}",
                path="--regression",
            )
        self._assigned_cache: dict[tuple[int, bytes], Exposure] = {}
        # Rows: the whole traffic, then each (attribute, value) guards split by or stages count
        # samples per, as the SDK splits them (LiveRollout.split_by).
        self.keys: list[SegmentKey] = [None]
        rows = [np.ones(len(self.population.cells))]
        for attribute in dict.fromkeys([*self.split_by, *self.sample_attributes]):
            for value, indexes in self._masks(attribute).items():
                self.keys.append((attribute, value))
                row = np.zeros(len(self.population.cells))
                row[indexes] = 1
                rows.append(row)
        self.membership = np.array(rows, dtype=np.int64)
        # Per (metric, side), the rows the judgement reads (``RolloutEvidence.keeps``).
        self._rows: dict[tuple[str, bool], tuple[list[SegmentKey], np.ndarray]] = {}
        self.segment_texts = ["" if key is None else f"{key[0]}={key[1]}" for key in self.keys]
        self.masks = {
            attribute: self._masks(attribute)
            for attribute in {*self.split_by, *self.sample_attributes}
        }

    @staticmethod
    def _attribute(cell: Cell, attribute: str) -> str | None:
        return {"tenant": cell.tenant, "traffic_type": cell.traffic_type, "team": cell.team}.get(
            attribute
        )

    def _masks(self, attribute: str) -> dict[str, np.ndarray]:
        values: dict[str, list[int]] = {}
        for index, cell in enumerate(self.population.cells):
            value = self._attribute(cell, attribute)
            if value is not None:
                values.setdefault(value, []).append(index)
        return {value: np.array(indexes) for value, indexes in values.items()}

    def _latency(self, scale: float, added_ms: float) -> np.ndarray:
        key = (scale, added_ms)
        probabilities = self._latency_cache.get(key)
        if probabilities is None:
            probabilities = self._latency_cache[key] = _lognormal_bucket_probabilities(
                self.scenario.latency_p95_ms, self.scenario.latency_sigma, scale, added_ms
            )
        return probabilities

    def _window_start(self, moment: datetime) -> int:
        """The window a moment falls in, as the SDK labels it: its start in minutes since the
        epoch, windows aligned to multiples of their length."""
        minutes = int(self.window.total_seconds() // 60)
        return int(moment.timestamp() // 60) // minutes * minutes

    def run(
        self,
        rng: np.random.Generator,
        *,
        keep_decisions: bool = False,
        bounds: bool | None = None,
        full: bool = False,
    ) -> tuple[RunResult, list[Decision]]:
        """One simulated rollout, from stage 0 until it stops or the horizon passes.

        Each tick's counts are added to the current window's aggregates, which are put, the way
        the store keeps them (only keys that saw requests), into the rollout's
        ``RolloutEvidence``: the controller's incremental path, in memory. At each tick the
        move is ``decide_move``'s, and the decision that ends the run ``decide``'s.
        ``keep_decisions`` returns every tick's decision, with the bounds shown to people
        unless ``bounds`` is False. ``full`` judges every tick from scratch instead
        (``AggregateTable`` and ``decide``): the reference the incremental path is tested
        against.
        """
        scenario, plan = self.scenario, self.plan
        table = AggregateTable() if full else None
        shown = keep_decisions if bounds is None else bounds
        # No batch is ever late here: only the current window stays open.
        evidence = None if full else RolloutEvidence(plan, open_minutes=0, bounds=shown)
        cells = len(self.population.cells)
        tenant_factor = np.exp(
            scenario.tenant_rate_sigma * rng.standard_normal(len(scenario.names()) + 1)
        )
        stratum = (0, self._window_start(START))
        current = self._empty_stratum()
        traffic = Traffic(self, rng, scenario.error_rate * tenant_factor[self.cell_tenant], START)
        stages = len(plan.stages)
        n_exposed = np.zeros((stages, cells), dtype=np.int64)
        n_baseline = np.zeros((stages, cells), dtype=np.int64)
        events_exposed = {m: np.zeros((stages, cells), dtype=np.int64) for m in self.rate_metrics}
        gauge_readings: dict[str, list[GaugeReading]] = {g.metric: [] for g in self.gauges}
        state = RolloutState(0, START)
        approvals = [stage.name for stage in plan.stages] if scenario.approve else []
        now = START
        decisions: list[Decision] = []
        steps: list[tuple[float, float]] = [
            (0.0, float(self.stage_exposure[0][0] @ self.population.shares))
        ]
        decision: Decision | None = None
        exposure: list[Exposure] = []
        end = START + scenario.horizon
        tick = -1
        while now < end:
            began = now
            now += scenario.tick
            tick += 1
            stage = state.stage
            label = (stage, self._window_start(began))
            if label != stratum:
                stratum, current = label, self._empty_stratum()
            block = traffic.block(tick, stage)
            row = tick - block.first
            exposed, baseline = block.exposed[row], block.baseline[row]
            n_exposed[stage] += exposed
            n_baseline[stage] += baseline
            current["requests", True] += exposed
            current["requests", False] += baseline
            for key, counts in block.events.items():
                current[key] += counts[row]
            for metric in self.rate_metrics:
                events_exposed[metric][stage] += block.events[metric, True][row]
            for key, counts in block.histograms.items():
                current[key] += counts[row]
            for metric, values in block.gauges.items():
                gauge_readings[metric].append(GaugeReading(now, float(values[row])))
                del gauge_readings[metric][:-64]
            # Earlier stages' exposure is settled: only the current stage's is read again.
            del exposure[stage:]
            exposure.extend(
                self._assigned(s, (n_exposed[s] + n_baseline[s]) > 0)
                for s in range(len(exposure), stage + 1)
            )
            gauges = {metric: tuple(readings) for metric, readings in gauge_readings.items()}
            if table is not None:
                table.put_all(self._aggregates(stratum, current))
                observations = replace(table.observations(plan, stage, exposure), gauges=gauges)
                decision = decide(plan, state, observations, now, approvals, bounds=shown)
                move = decision.move
            else:
                assert evidence is not None
                self._put(evidence, stratum, current)
                observations = evidence.observations(stage, exposure, gauges)
                move = decide_move(
                    plan,
                    state,
                    observations,
                    now,
                    approvals,
                    evidence.guard_states(stage, now, gauges),
                )
                if keep_decisions or move in _ENDS or now >= end:
                    judged = evidence.judged(stage, now, gauges, bounds=shown)
                    decision = decide(
                        plan, state, observations, now, approvals, bounds=shown, judged=judged
                    )
                    if decision.move is not move:
                        raise RuntimeError("decide_move disagrees with decide")
                if evidence.stale:
                    raise RuntimeError("the simulator never changes a folded window")
            if keep_decisions:
                assert decision is not None
                decisions.append(decision)
            if move is Move.EXPAND:
                state = RolloutState(stage + 1, now)
                share = float(self.stage_exposure[stage + 1][0] @ self.population.shares)
                steps.append(((now - START).total_seconds(), share))
                continue
            if move in _ENDS:
                break
        outcome = {
            Move.ROLLBACK: "rolled_back",
            Move.PAUSE: "paused",
            Move.COMPLETE: "completed",
        }.get(decision.move if decision else Move.HOLD, "unfinished")
        failures = 0
        if self.failure_metric is not None:
            failures = int(events_exposed[self.failure_metric].sum())
        trigger = ""
        if decision is not None and decision.trigger is not None:
            segment = decision.trigger.segment
            trigger = decision.trigger.metric + (f" ({segment[0]}={segment[1]})" if segment else "")
        result = RunResult(
            outcome=outcome,
            seconds=(now - START).total_seconds(),
            stage_reached=state.stage,
            exposed_requests=int(n_exposed.sum()),
            exposed_failures=failures,
            units_exposed=self._units_exposed(n_exposed),
            trigger=trigger,
            reasons=decision.reasons if decision else (),
            exposure_steps=steps,
        )
        return result, decisions

    def _assigned(self, stage: int, seen: np.ndarray) -> Exposure:
        """Distinct units assigned to each side among the cells that had traffic (cached: the
        set of cells with traffic settles within the first ticks)."""
        key = (stage, seen.tobytes())
        cached = self._assigned_cache.get(key)
        if cached is None:
            _, assigned_exposed, assigned_baseline = self.stage_exposure[stage]
            cells = np.nonzero(seen)[0]
            exposed = frozenset[str]().union(*(assigned_exposed[i] for i in cells))
            baseline = frozenset[str]().union(*(assigned_baseline[i] for i in cells))
            cached = self._assigned_cache[key] = Exposure(len(exposed), len(baseline))
        return cached

    def _units_exposed(self, n_exposed: np.ndarray) -> float:
        """Distinct units that made at least one exposed request (expected value given the
        exposed requests of each cell, spread evenly over the cell's exposed users)."""
        per_cell = n_exposed.sum(axis=0)
        if self.plan.unit == "tenant":
            tenants = {self.population.cells[i].tenant for i in np.nonzero(per_cell)[0]}
            return float(len(tenants))
        total = 0.0
        by_tenant: dict[str, int] = {}
        for index, cell in enumerate(self.population.cells):
            by_tenant[cell.tenant] = by_tenant.get(cell.tenant, 0) + int(per_cell[index])
        final = self.stage_exposure[-1][0]
        for tenant, requests in by_tenant.items():
            if not requests:
                continue
            users = len(self.population.users[tenant])
            shares = [final[i] for i, c in enumerate(self.population.cells) if c.tenant == tenant]
            exposed_users = max(1.0, users * max(shares))
            total += exposed_users * (1 - (1 - 1 / exposed_users) ** requests)
        return total


def share_exposed(simulation: Simulation, stage: int) -> float:
    return float(simulation.stage_exposure[stage][0] @ simulation.population.shares)


def run_numbered(simulation: Simulation, seed: int, index: int) -> RunResult:
    """Run ``index`` of a batch seeded with ``seed``: always the same random stream (the
    ``index``-th child of ``SeedSequence(seed)``), however the batch is split over processes."""
    stream = np.random.SeedSequence(seed, spawn_key=(index,))
    return simulation.run(np.random.default_rng(stream))[0]


def run_many(simulation: Simulation, runs: int, seed: int) -> list[RunResult]:
    """``runs`` independent rollouts from one seed."""
    return [run_numbered(simulation, seed, index) for index in range(runs)]


def stage_shares(simulation: Simulation) -> Sequence[float]:
    return [share_exposed(simulation, index) for index in range(len(simulation.plan.stages))]
