"""What a batch of simulated runs says about a plan: rollback share, timing, blast radius."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rollwise.core.simulation._simulator import RunResult


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a proportion (Wilson 1927), at 95 % by default."""
    if total == 0:
        return 0.0, 1.0
    share = successes / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True, slots=True)
class Spread:
    median: float | None
    p90: float | None
    mean: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(
            _quantile(values, 0.5),
            _quantile(values, 0.9),
            sum(values) / len(values) if values else None,
        )


def summarize(results: Sequence[RunResult], regressed: bool) -> dict[str, object]:
    """The figures ``rollwise simulate`` reports, as plain data (JSON-ready)."""
    runs = len(results)
    outcomes = Counter(result.outcome for result in results)
    rolled = [r for r in results if r.outcome == "rolled_back"]
    completed = [r for r in results if r.outcome == "completed"]
    low, high = wilson(len(rolled), runs)
    summary: dict[str, object] = {
        "runs": runs,
        "outcomes": {
            name: outcomes.get(name, 0)
            for name in ("rolled_back", "paused", "completed", "unfinished")
        },
        "rolled_back_share": len(rolled) / runs if runs else 0.0,
        "rolled_back_share_ci95": [low, high],
        "time_to_rollback_s": _spread([r.seconds for r in rolled]),
        "blast_radius": {
            "units_exposed": _spread([r.units_exposed for r in rolled]),
            "exposed_requests": _spread([float(r.exposed_requests) for r in rolled]),
            "failed_exposed_requests": _spread([float(r.exposed_failures) for r in rolled]),
        },
        "time_to_complete_s": _spread([r.seconds for r in completed]),
        "triggers": dict(Counter(r.trigger for r in rolled if r.trigger).most_common()),
        "stage_reached": dict(Counter(str(r.stage_reached) for r in results)),
    }
    if not regressed:
        summary["false_rollback_rate"] = summary["rolled_back_share"]
        summary["false_rollback_rate_ci95"] = [low, high]
    return summary


def _spread(values: Sequence[float]) -> dict[str, float | None]:
    spread = Spread.of(values)
    return {"median": spread.median, "p90": spread.p90, "mean": spread.mean}
