#!/usr/bin/env python3
"""How the choice of mixture changes detection time (docs/judgement.md, "The mixture").

The harm test of a rate guard mixes likelihood ratios over alternatives θ1 = θ0 × a. A mixture
tuned for large regressions is slow on small ones and the reverse; this measures mean exposed
requests to detection for several grids and regressions, on identical streams (fixed seed),
with the real ``rate_log_evidence``. 5 % of traffic exposed, base error rate 1 %, tolerance 10 %,
α = 1 %.

Two references on the same streams: the oracle, an SPRT that knows the regression (the one
alternative θ1 = the true ratio, the same looks and the same threshold 1/α: what no mixture
can beat by more than luck), and Wald's approximation of the SPRT's expected sample size (no
looks, no overshoot: what ``benchmarks/validity.py``'s detection targets are relative to).
Their ratio says how much of a mixture's distance from Wald's figure is the looks' and the
boundary's, which any test judged at these looks pays. Prints a table and writes
benchmarks/results/mixture.json.

    python benchmarks/mixture.py [--runs 300] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

from rollwise.core.judgement import HARM_ALTERNATIVES, RateSample, Tally, rate_log_evidence
from validity import sprt_exposed

GRIDS: dict[str, tuple[float, ...]] = {
    f"rollwise ({HARM_ALTERNATIVES[0]:g}-{HARM_ALTERNATIVES[-1]:g}, "
    f"{len(HARM_ALTERNATIVES)} points)": HARM_ALTERNATIVES,
    "previous (1.15-4.5, 6 points)": (1.15, 1.4, 1.8, 2.4, 3.2, 4.5),
    "narrow, small effects (1.1)": (1.1,),
    "narrow, large effects (4.0)": (4.0,),
    "wide (1.05-20, 24 points)": tuple(np.geomspace(1.05, 20, 24)),
}
REGRESSIONS = (1.3, 2.0, 4.0)
ORACLE = "oracle: an SPRT knowing the regression, same looks"
THETA0 = 1.1
ALPHA = 0.01
TICK = 1000  # requests per look, 50 exposed
HORIZON = 400_000  # exposed requests


def detection(grid: tuple[float, ...], factor: float, runs: int, seed: int) -> dict[str, float]:
    threshold = math.log(1 / ALPHA)
    needed: list[int] = []
    for stream in np.random.SeedSequence(seed).spawn(runs):
        rng = np.random.default_rng(stream)
        n_t = x_t = n_c = x_c = 0
        while n_t < HORIZON:
            exposed = int(rng.binomial(TICK, 0.05))
            n_t += exposed
            x_t += int(rng.binomial(exposed, 0.01 * factor))
            n_c += TICK - exposed
            x_c += int(rng.binomial(TICK - exposed, 0.01))
            sample = RateSample(Tally(n_t, x_t), Tally(n_c, x_c))
            if rate_log_evidence([sample], THETA0, grid) >= threshold:
                needed.append(n_t)
                break
    mean = sum(needed) / len(needed) if needed else math.inf
    return {"detected": len(needed) / runs, "mean_exposed_requests": mean}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[str, dict[str, dict[str, float]]] = {}
    for name, grid in GRIDS.items():
        results[name] = {
            f"x{factor:g}": detection(grid, factor, args.runs, args.seed) for factor in REGRESSIONS
        }
    oracle = {
        f"x{factor:g}": detection((factor / THETA0,), factor, args.runs, args.seed)
        for factor in REGRESSIONS
    }
    wald = {
        f"x{factor:g}": sprt_exposed(THETA0, factor, 0.05, 0.01, ALPHA) for factor in REGRESSIONS
    }
    results[ORACLE] = oracle
    header = ["mixture", *(f"x{f:g} mean exposed (detected)" for f in REGRESSIONS)]
    rows = [
        [
            name,
            *(
                f"{r['mean_exposed_requests']:,.0f} ({r['detected']:.1%})"
                for r in results[name].values()
            ),
        ]
        for name in results
    ]
    rows.append(["Wald's approximation (no looks)", *(f"{wald[key]:,.0f}" for key in wald)])

    def mean(name: str, key: str) -> float:
        return results[name][key]["mean_exposed_requests"]

    def ratio(name: str, key: str) -> str:
        """A mean over the runs that detected is a fair figure only when nearly all did."""
        if results[name][key]["detected"] < 0.95:
            return "- (power < 95 %)"
        return f"{mean(name, key) / mean(ORACLE, key):.2f}"

    for name in GRIDS:
        rows.append([f"  {name} / oracle", *(ratio(name, key) for key in wald)])
    rows.append(
        [
            "  oracle / Wald's approximation",
            *(f"{mean(ORACLE, key) / wald[key]:.2f}" for key in wald),
        ]
    )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    print(f"Mean exposed requests to detect a regression ({args.runs} runs, seed {args.seed})")
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    output = Path(__file__).resolve().parent / "results" / "mixture.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "runs": args.runs,
                "seed": args.seed,
                "theta0": THETA0,
                "alpha": ALPHA,
                "results": results,
                "wald_expected_exposed": wald,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {output} in {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
