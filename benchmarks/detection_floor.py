#!/usr/bin/env python3
"""How close to Wald's figure can any rate test of this kind get? The floor under the detection
targets of ``benchmarks/validity.py`` (docs/judgement.md, "How fast detection can be").

The validation table reports mean exposed requests to detection against Wald's approximation
of the SPRT's expected sample size (null at the tolerance, β = 5 %), and issue 9 targets 1.3×
that figure on 1 % → 2 %, 1 % → 1.5 % and 0.1 % → 0.2 %. This runs, on the very streams of those
scenarios (same seed, same runs), judges that know more than rollwise can:

- **oracle**: the likelihood ratio at the true regression only — the SPRT that knows the effect,
  judged at the same looks (every tick, about 100 exposed requests) with the same threshold 1/α;
- **priors on the tested effects**: mixtures on exactly the regressions of the table's rows
  with a 1.3× target (1.5× and 2×, equal and 2:3 weights), and on all three of its effects
  (1.2×, 1.5×, 2×, equal and 1:4:6 weights) — the fixed priors a test could have if it knew
  which regressions would be asked of it;
- **rollwise**: the shipped mixture, with the replicates the SDK ships (φ̂ discounting the
  evidence, as in the validation table) and without them (φ = 1).

Beside them, two figures with no looks: Wald's approximation itself, and Wald's lower bound for
a test that always detects (β → 0), log(1/α) / KL: no level-α test, sequential or not, has a
smaller expected sample size under the regression (Wald, *Sequential Analysis*, 1947, §3.4;
the bound follows from the data-processing inequality for the Kullback–Leibler divergence).

    python benchmarks/detection_floor.py [--runs 10000] [--seed 20261130] [--jobs 2]

Prints a table and writes benchmarks/results/detection_floor.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from rollwise.core import load_plan
from rollwise.core.judgement import HARM_ALTERNATIVES, harm_alpha
from validity import Z95, Scenario, Tick, run_fast_path, scenarios, sprt_exposed

RESULTS = Path(__file__).parent / "results" / "detection_floor.json"
THETA0 = 1.1
SHARE = 0.05
#: The validation table's whole-traffic regressions: (scenario, base rate, factor, target).
ROWS = (
    ("rate_0.01_x2", 0.01, 2.0, 1.3),
    ("rate_0.01_x1.5", 0.01, 1.5, 1.3),
    ("rate_0.001_x2", 0.001, 2.0, 1.3),
    ("rate_0.1_x1.2", 0.10, 1.2, 1.6),
)
#: Judges: name → (grid of multiples of θ0, None for the oracle's one point; replicates used;
#: the regressions it is run on, None for all). The priors on 1.5× and 2× have no weight near
#: 1.2×: they would rarely detect it, and a run that does not detect goes on to the horizon. A
#: point repeated weighs more (2:3 below is 0.4 on 1.5×, 0.6 on 2×; 1:4:6 adds a little weight
#: on 1.2×, as a prior must to detect the 10 % → 12 % row at all).
JUDGES: dict[str, tuple[tuple[float, ...] | None, bool, tuple[float, ...] | None]] = {
    "oracle": (None, False, None),
    "prior on 1.5x, 2x": ((1.5 / THETA0, 2.0 / THETA0), False, (1.5, 2.0)),
    "prior 2:3 on 1.5x, 2x": ((1.5 / THETA0,) * 2 + (2.0 / THETA0,) * 3, False, (1.5, 2.0)),
    "prior on 1.2x, 1.5x, 2x": ((1.2 / THETA0, 1.5 / THETA0, 2.0 / THETA0), False, None),
    "prior 1:4:6 on 1.2x, 1.5x, 2x": (
        (1.2 / THETA0,) + (1.5 / THETA0,) * 4 + (2.0 / THETA0,) * 6,
        False,
        None,
    ),
    "rollwise, no replicates": (HARM_ALTERNATIVES, False, None),
    "rollwise (as shipped)": (HARM_ALTERNATIVES, True, None),
}


def _judges(factor: float) -> list[str]:
    return [name for name, (_, _, only) in JUDGES.items() if only is None or factor in only]


class _Replay:
    """One run's ticks, drawn once and replayed to every judge: each judge sees the same stream,
    and the world (the costly part) is drawn only as far as the slowest judge reads it."""

    def __init__(self, scenario: Scenario, rng: np.random.Generator) -> None:
        self._source = scenario.world(rng)
        self._seen: list[Tick] = []

    def world(self, rng: np.random.Generator) -> Iterator[Tick]:
        for index in itertools.count():
            if index == len(self._seen):
                drawn = next(self._source, None)
                if drawn is None:
                    return
                self._seen.append(drawn)
            yield self._seen[index]


def _chunk(args: tuple[str, float, int, int, int]) -> dict[str, list[int | None]]:
    name, factor, seed, first, count = args
    scenario = next(s for s in scenarios() if s.name == name)
    plan = load_plan(scenario.plan)
    needed: dict[str, list[int | None]] = {judge: [] for judge in _judges(factor)}
    for index in range(first, first + count):
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index,)))
        replay = _Replay(scenario, rng)
        replayed = dataclasses.replace(scenario, world=replay.world)
        for judge in needed:
            grid, replicates, _ = JUDGES[judge]
            outcome = run_fast_path(
                replayed,
                plan,
                rng,
                grid=grid if grid is not None else (factor / THETA0,),
                replicates=replicates,
            )
            needed[judge].append(outcome.exposed_at_harm)
    return needed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--only", nargs="*", default=None, help="scenario names")
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    alpha = harm_alpha(load_plan(next(s for s in scenarios() if s.name == ROWS[0][0]).plan))
    began = time.perf_counter()
    rows = []
    size = max(1, math.ceil(args.runs / (args.jobs * 4)))
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for name, rate, factor, target in ROWS:
            if args.only and name not in args.only:
                continue
            reference = sprt_exposed(THETA0, factor, SHARE, rate, alpha)
            row: dict[str, object] = {
                "scenario": name,
                "target": target,
                "wald_approximation": reference,
                "power_one_bound": sprt_exposed(THETA0, factor, SHARE, rate, alpha, beta=0.0),
                "judges": {},
            }
            tasks = [
                (name, factor, args.seed, first, min(size, args.runs - first))
                for first in range(0, args.runs, size)
            ]
            chunks = list(pool.map(_chunk, tasks))
            for judge in _judges(factor):
                found = [n for chunk in chunks for n in chunk[judge]]
                detected = [n for n in found if n is not None]
                mean = sum(detected) / len(detected) if detected else math.inf
                sd = float(np.std(detected)) if len(detected) > 1 else 0.0
                row["judges"][judge] = {  # type: ignore[index]
                    "detected": len(detected) / args.runs,
                    "mean_exposed": mean,
                    "halfwidth": Z95 * sd / math.sqrt(max(len(detected), 1)),
                    "ratio_to_wald": mean / reference,
                }
            rows.append(row)
            _print_row(row)
            _write(args, alpha, rows, began)
    print(f"wrote {RESULTS} in {time.perf_counter() - began:.0f} s")
    return 0


def _write(
    args: argparse.Namespace, alpha: float, rows: list[dict[str, object]], began: float
) -> None:
    """The rows so far (a long run leaves what it measured if stopped)."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "runs": args.runs,
                "seed": args.seed,
                "alpha": alpha,
                "theta0": THETA0,
                "measured": datetime.now(UTC).isoformat(timespec="seconds"),
                "seconds": round(time.perf_counter() - began, 1),
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )


def _print_row(row: dict[str, object]) -> None:
    reference = float(row["wald_approximation"])  # type: ignore[arg-type]
    bound = float(row["power_one_bound"])  # type: ignore[arg-type]
    print(
        f"{row['scenario']} (target {row['target']}× Wald's {reference:,.0f}; "
        f"power-one bound {bound:,.0f} = {bound / reference:.2f}×)"
    )
    for judge, found in row["judges"].items():  # type: ignore[attr-defined]
        print(
            f"  {judge:30} {found['mean_exposed']:>9,.0f} ± {found['halfwidth']:>5,.0f}"
            f"  {found['ratio_to_wald']:.2f}×  detected {found['detected']:.2%}"
        )


if __name__ == "__main__":
    sys.exit(main())
