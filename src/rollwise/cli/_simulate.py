"""``rollwise simulate PLAN``: Monte Carlo runs of a plan with the real decision function."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rollwise.cli._files import read_flags, read_plan
from rollwise.core import InputError, format_duration, parse_duration
from rollwise.core._quantities import parse_percent, parse_rate

if TYPE_CHECKING:  # the simulator needs numpy (the ``cli`` extra): imported when run
    from rollwise.core.simulation import RunResult, Scenario, Simulation


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "simulate",
        help="run a plan many times on simulated traffic and report what it would catch",
        description=(
            "Monte Carlo runs of a plan with the real decision function on a simulated clock: "
            "how often it rolls back, how fast, and how many units and failed requests a "
            "regression reaches first."
        ),
    )
    parser.add_argument("plan", help="the plan file (YAML)")
    parser.add_argument("--flags", help="the flags file (needed when stages name segments)")
    parser.add_argument("--traffic", help="requests per second, e.g. 50/s (default: the plan's)")
    parser.add_argument("--error-rate", default="1%", help="base rate of every rate metric")
    parser.add_argument("--latency-p95", default="120ms", help="base p95 of every latency metric")
    parser.add_argument("--regression", help="e.g. 'checkout.error x2' or 'checkout.latency +40ms'")
    parser.add_argument(
        "--in", dest="within", metavar="ATTR=VALUE", help="confine it, e.g. tenant=globex"
    )
    parser.add_argument(
        "--quiet-tenants",
        default="0%",
        help="share of tenants with business hours (no traffic 18:00-08:00 UTC), e.g. 30%%",
    )
    parser.add_argument(
        "--daily-swing",
        default="0%",
        help="the base rate's swing over the day, e.g. 50%% (0.5%% to 1.5%% around 1%%)",
    )
    parser.add_argument(
        "--tenant-spread",
        type=float,
        default=0.0,
        help="each tenant's own base rate: x exp(SPREAD * N(0,1)), e.g. 0.3",
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tick", default="5m", help="simulated time between decisions")
    parser.add_argument("--horizon", default="30d", help="longest simulated time of one run")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--plot", metavar="FILE.png", help="draw exposure over time per run")
    parser.set_defaults(run=run)


def _scenario(args: argparse.Namespace, plan_traffic: float | None) -> Scenario:
    from rollwise.core.simulation import Regression, Scenario

    try:
        traffic = parse_rate(args.traffic) if args.traffic else (plan_traffic or 50.0)
        error_rate = parse_percent(args.error_rate) / 100
        p95_text = args.latency_p95.strip()
        p95 = float(p95_text.removesuffix("ms")) if p95_text.endswith("ms") else None
        tick = parse_duration(args.tick)
        horizon = parse_duration(args.horizon)
        quiet = parse_percent(args.quiet_tenants) / 100
        swing = parse_percent(args.daily_swing) / 100
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if swing > 1:
        raise InputError("must be at most 100%", path="--daily-swing")
    if not 0 <= args.tenant_spread <= 2:
        raise InputError("must be between 0 and 2", path="--tenant-spread")
    if p95 is None or p95 <= 0:
        raise InputError(
            f"expected a latency like '120ms', got {args.latency_p95!r}", path="--latency-p95"
        )
    if args.runs < 1:
        raise InputError("must be at least 1", path="--runs")
    within = None
    if args.within:
        if args.regression is None:
            raise InputError("--in confines a regression: give --regression too", path="--in")
        attribute, sep, value = args.within.partition("=")
        if not sep or not attribute or not value:
            raise InputError(f"expected ATTR=VALUE, got {args.within!r}", path="--in")
        within = (attribute, value)
    regression = Regression.parse(args.regression, within) if args.regression else None
    return Scenario(
        requests_per_second=traffic,
        error_rate=error_rate,
        latency_p95_ms=p95,
        regression=regression,
        tick=tick,
        horizon=horizon,
        quiet_tenants=quiet,
        daily_amplitude=swing,
        tenant_rate_sigma=args.tenant_spread,
    )


# Worker processes inherit the prepared simulation by fork (compiled flags hold closures,
# which do not pickle).
_SIMULATION: Simulation | None = None


def _run_one(entropy: tuple[int, int]) -> RunResult:
    from rollwise.core.simulation import run_numbered

    if _SIMULATION is None:
        raise RuntimeError("simulate_runs sets the simulation before running")
    return run_numbered(_SIMULATION, *entropy)


def simulate_runs(
    simulation: Simulation,
    runs: int,
    seed: int,
    jobs: int,
    progress: Callable[[int], None] | None = None,
) -> list[RunResult]:
    """``runs`` rollouts; run i always uses the same random stream, whatever ``jobs`` is.
    ``progress`` is told how many runs are done after each."""
    global _SIMULATION
    _SIMULATION = simulation
    tasks = [(seed, index) for index in range(runs)]
    results: list[RunResult] = []
    if jobs <= 1 or runs < 4:
        for task in tasks:
            results.append(_run_one(task))
            if progress is not None:
                progress(len(results))
        return results
    # Ctrl-C reaches every process of the terminal's group: the workers leave it to this one,
    # which stops them, instead of each printing a traceback.
    with multiprocessing.get_context("fork").Pool(
        jobs, initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN)
    ) as pool:
        # Small chunks: the runs' lengths differ (a rollback ends one early), so the workers
        # share the work evenly, and the progress moves run by run.
        for result in pool.imap(_run_one, tasks, chunksize=max(1, min(4, runs // (jobs * 8)))):
            results.append(result)
            if progress is not None:
                progress(len(results))
    return results


class _Progress:
    """A one-line progress bar on stderr, redrawn in place (only on a terminal)."""

    WIDTH = 30

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.started = time.perf_counter()

    def __call__(self, done: int) -> None:
        elapsed = time.perf_counter() - self.started
        filled = round(self.WIDTH * done / self.total)
        left = elapsed / done * (self.total - done) if done else 0.0
        self.stream.write(
            f"\r  simulating [{'#' * filled}{'-' * (self.WIDTH - filled)}] {done}/{self.total} "
            f"runs, {elapsed:.0f}s elapsed, ~{left:.0f}s left "
        )
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r" + " " * (self.WIDTH + 60) + "\r")
        self.stream.flush()


def _hours(seconds: float | None) -> str:
    return format_duration(timedelta(seconds=round(seconds))) if seconds else "n/a"


def _count(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "n/a"


def run(args: argparse.Namespace) -> int:
    from rollwise.core.simulation import Simulation, stage_shares
    from rollwise.core.simulation._summary import summarize

    plan = read_plan(args.plan)
    flags = read_flags(args.flags) if args.flags else None
    scenario = _scenario(args, plan.traffic_per_second)
    simulation = Simulation(plan, flags, scenario)
    started = time.perf_counter()
    progress = _Progress(args.runs, sys.stderr) if sys.stderr.isatty() else None
    try:
        results = simulate_runs(simulation, args.runs, args.seed, args.jobs, progress)
    finally:
        if progress is not None:
            progress.close()
    wall = time.perf_counter() - started
    summary = summarize(results, regressed=scenario.regression is not None)
    names = [stage.name for stage in plan.stages]
    summary["stage_reached"] = {
        names[int(index)]: count
        for index, count in dict(summary["stage_reached"]).items()  # type: ignore[call-overload]
    }
    document: dict[str, Any] = {
        "plan": args.plan,
        "scenario": {
            "traffic_per_second": scenario.requests_per_second,
            "error_rate": scenario.error_rate,
            "latency_p95_ms": scenario.latency_p95_ms,
            "regression": args.regression,
            "in": args.within,
            "tick": args.tick,
            "seed": args.seed,
            "stage_exposure": dict(zip(names, stage_shares(simulation), strict=True)),
        },
        **summary,
        "wall_seconds": round(wall, 2),
    }
    if args.plot:
        _plot(results, plan.stages, Path(args.plot), args)
        document["plot"] = args.plot
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    _print(document, args)
    return 0


def _print(document: dict[str, Any], args: argparse.Namespace) -> None:
    scenario = document["scenario"]
    regression = args.regression or "none (A/A)"
    if args.within:
        regression += f" in {args.within}"
    print(
        f"{document['runs']} simulated runs of {args.plan} at {scenario['traffic_per_second']:g}/s "
        f"(tick {args.tick}, seed {args.seed}); regression: {regression}"
    )
    exposure = ", ".join(
        f"{name} {share:.1%}" for name, share in scenario["stage_exposure"].items()
    )
    print(f"  exposed share of requests by stage: {exposure}")
    outcomes = document["outcomes"]
    low, high = document["rolled_back_share_ci95"]
    label = "false rollbacks" if "false_rollback_rate" in document else "rolled back"
    print(
        f"  {label}: {document['rolled_back_share']:.1%} (95% CI {low:.1%}–{high:.1%}); "
        f"paused {outcomes['paused']}, completed {outcomes['completed']}, "
        f"unfinished {outcomes['unfinished']}"
    )
    rollback = document["time_to_rollback_s"]
    print(
        f"  time to roll back: median {_hours(rollback['median'])}, p90 {_hours(rollback['p90'])}"
    )
    blast = document["blast_radius"]
    print(
        f"  blast radius before rollback (median / p90): units exposed "
        f"{_count(blast['units_exposed']['median'])} / {_count(blast['units_exposed']['p90'])}; "
        f"exposed requests {_count(blast['exposed_requests']['median'])} / "
        f"{_count(blast['exposed_requests']['p90'])}; failed exposed requests "
        f"{_count(blast['failed_exposed_requests']['median'])} / "
        f"{_count(blast['failed_exposed_requests']['p90'])}"
    )
    complete = document["time_to_complete_s"]
    print(f"  time to complete: median {_hours(complete['median'])}, p90 {_hours(complete['p90'])}")
    if document["triggers"]:
        triggers = ", ".join(f"{name} ×{count}" for name, count in document["triggers"].items())
        print(f"  rolled back by: {triggers}")
    reached = ", ".join(f"{name} ×{count}" for name, count in document["stage_reached"].items())
    print(f"  last stage reached: {reached}")
    if "plot" in document:
        print(f"  plot: {document['plot']}")


def _plot(results: list[RunResult], stages: Any, path: Path, args: argparse.Namespace) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("--plot needs matplotlib: pip install 'rollwise[plot]'") from None
    figure, axis = plt.subplots(figsize=(10, 5), dpi=110)
    markers = {
        "rolled_back": ("x", "#c0392b"),
        "paused": ("s", "#e67e22"),
        "completed": ("o", "#27ae60"),
        "unfinished": (">", "#7f8c8d"),
    }
    for result in results[:100]:
        times = [t / 3600 for t, _ in result.exposure_steps] + [result.seconds / 3600]
        shares = [max(s * 100, 0.1) for _, s in result.exposure_steps]
        shares.append(shares[-1])
        axis.step(times, shares, where="post", color="#34495e", alpha=0.25, linewidth=1)
        marker, colour = markers[result.outcome]
        axis.plot(
            times[-1], shares[-1], marker=marker, color=colour, markersize=6, linestyle="none"
        )
    for outcome, (marker, colour) in markers.items():
        count = sum(1 for r in results[:100] if r.outcome == outcome)
        if count:
            axis.plot(
                [],
                [],
                marker=marker,
                color=colour,
                linestyle="none",
                label=f"{outcome.replace('_', ' ')} ({count})",
            )
    regression = args.regression or "no regression"
    if args.within:
        regression += f" in {args.within}"
    axis.set_title(f"{args.plan}: exposure over time, {min(len(results), 100)} runs ({regression})")
    axis.set_xlabel("simulated hours since start")
    axis.set_ylabel("requests exposed (%)")
    axis.set_yscale("log")
    ticks = [0.1, 0.5, 1, 2, 5, 10, 25, 50, 100]
    axis.set_yticks(ticks, [f"{t:g}%" for t in ticks])
    axis.set_ylim(0.08, 130)
    axis.grid(alpha=0.3)
    axis.legend(loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
