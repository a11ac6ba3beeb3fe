"""The simulated world's cells (tenants, the internal team, request shapes) and their users,
and latency as histogram buckets."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rollwise.core._context import Context
from rollwise.core._evaluation import evaluate
from rollwise.core._flag import Flag
from rollwise.core._plan import Plan
from rollwise.core.judgement import LATENCY_BOUNDARIES_MS
from rollwise.core.simulation._scenario import Scenario

_Z95 = 1.6448536269514722


@dataclass(frozen=True, slots=True)
class Cell:
    tenant: str
    team: str | None
    traffic_type: str
    share: float  # of all requests


class Population:
    """The cells of the simulated world and their users."""

    def __init__(self, scenario: Scenario, plan: Plan) -> None:
        names = scenario.names()
        weights = np.array([1 / (rank + 1) ** scenario.tenant_skew for rank in range(len(names))])
        weights = weights / weights.sum() * (1 - scenario.internal_share)
        self.cells: list[Cell] = []
        self.users: dict[str, list[str]] = {}
        groups: list[tuple[str, str | None, float]] = [
            (name, None, float(w)) for name, w in zip(names, weights, strict=True)
        ]
        if scenario.internal_share > 0:
            groups.append(("internal", scenario.internal_team, scenario.internal_share))
        for tenant, team, share in groups:
            count = max(20, round(scenario.users_per_tenant * share * len(groups)))
            self.users[tenant] = [f"{tenant}-user-{index}" for index in range(count)]
            for traffic_type, type_share in scenario.traffic_types:
                self.cells.append(Cell(tenant, team, traffic_type, share * type_share))
        self.shares = np.array([cell.share for cell in self.cells])
        self.unit = plan.unit

    def contexts(self, cell: Cell) -> list[Context]:
        attributes: dict[str, object] = {
            "tenant": cell.tenant,
            "traffic_type": cell.traffic_type,
            "app_version": "99.0.0",
        }
        if cell.team:
            attributes["team"] = cell.team
        result = []
        for user in self.users[cell.tenant]:
            values = dict(attributes)
            if self.unit not in values and self.unit not in ("user", "key"):
                values[self.unit] = f"{user}-{self.unit}"
            result.append(Context.of({"key": user, **values}))
        return result

    def exposure(self, flag: Flag) -> tuple[np.ndarray, list[frozenset[str]], list[frozenset[str]]]:
        """Per cell: the share of its requests exposed, and the distinct units the percentage
        rule assigned to each side (the sample-ratio check counts units, not users)."""
        fractions: list[float] = []
        assigned_exposed: list[frozenset[str]] = []
        assigned_baseline: list[frozenset[str]] = []
        has_percent = any(rule.percent for rule in flag.rules)
        unit = "user" if self.unit == "key" else self.unit
        for cell in self.cells:
            exposed = 0
            percent_exposed: set[str] = set()
            percent_baseline: set[str] = set()
            contexts = self.contexts(cell)
            for context in contexts:
                resolution = evaluate(flag, context)
                if resolution.enabled:
                    exposed += 1
                value = str(context.values.get(unit))
                if resolution.reason == "percent":
                    percent_exposed.add(value)
                elif resolution.reason == "fallthrough" and has_percent:
                    percent_baseline.add(value)
            fractions.append(exposed / len(contexts))
            assigned_exposed.append(frozenset(percent_exposed))
            assigned_baseline.append(frozenset(percent_baseline))
        return np.array(fractions), assigned_exposed, assigned_baseline


def _lognormal_bucket_probabilities(
    p95_ms: float, sigma: float, scale: float, added_ms: float
) -> np.ndarray:
    """P(bucket) for latency = scale × LogNormal(median, sigma) + added, at the histogram edges."""
    from math import erf

    median = p95_ms / math.exp(_Z95 * sigma)
    edges = np.array(LATENCY_BOUNDARIES_MS)

    def cdf(x: float) -> float:
        y = (x - added_ms) / scale
        if y <= 0:
            return 0.0
        return 0.5 * (1 + erf((math.log(y) - math.log(median)) / (sigma * math.sqrt(2))))

    cumulative = np.array([cdf(x) for x in edges] + [1.0])
    probabilities = np.diff(np.concatenate([[0.0], cumulative]))
    probabilities = np.clip(probabilities, 0, None)
    result: np.ndarray = probabilities / probabilities.sum()
    return result
