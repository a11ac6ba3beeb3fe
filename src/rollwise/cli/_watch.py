"""``rollwise rollout status FLAG [--watch]``: the rollout as a person reads it, and a gate a
CI job can wait on."""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import UTC, datetime
from typing import Any

from rollwise.cli._output import number, parse_time, span, when
from rollwise.cli._remote import Remote, add_connection

#: What ``--watch`` exits with when the rollout ends (or stops for a human).
EXIT_COMPLETED = 0
EXIT_ROLLED_BACK = 1
EXIT_PAUSED = 2
_ENDS = {"completed": EXIT_COMPLETED, "rolled_back": EXIT_ROLLED_BACK, "paused": EXIT_PAUSED}
MIN_INTERVAL = 0.5


def _interval(text: str) -> float:
    """argparse type of --interval: seconds, at least 0.5."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, like 2 or 0.5, got {text!r}") from None
    if not math.isfinite(value) or value < MIN_INTERVAL:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_INTERVAL:g} seconds (not to load the server), got {text}"
        )
    return value


def add_parser(actions: Any) -> None:
    status = actions.add_parser(
        "status",
        help="the rollout's stage, guards and next decision",
        description=(
            "The rollout of FLAG: its stages, each guard's estimate with its bounds against the "
            "tolerance, and what it waits for. With --watch it refreshes until the rollout "
            "ends and exits 0 when it completes, 1 when it is rolled back, 2 when it is paused "
            "(a human must look): a CI gate, like kubectl argo rollouts status. Errors also "
            "exit 2, with a message on stderr."
        ),
    )
    status.add_argument("flag")
    status.add_argument(
        "--watch",
        action="store_true",
        help="refresh until the rollout completes (exit 0), is rolled back (1) or paused (2)",
    )
    status.add_argument(
        "--interval",
        type=_interval,
        default=2.0,
        metavar="SECONDS",
        help=f"seconds between refreshes, at least {MIN_INTERVAL:g} (default 2)",
    )
    add_connection(status)
    status.set_defaults(run=run)


def _ratio(value: float | None) -> str:
    # The judgement clamps a ratio it cannot bound to [0.001, 1000]: show those ends as such.
    if value is not None and value <= 1e-3:
        return "0×"
    if value is not None and value >= 1e3:
        return "∞×"
    return number(value, "×")


def bounds(verdict: dict[str, Any]) -> str:
    """The guard's numbers, labelled: ``estimate 1.02× [lower 0.91×, upper 1.14×] tolerance
    10% (threshold 1.1×)``; latency in ms over the baseline; a gauge's value against its
    limit."""
    kind = verdict.get("kind")
    estimate, lower, upper = verdict.get("estimate"), verdict.get("lower"), verdict.get("upper")
    threshold, tolerance = verdict.get("threshold"), verdict.get("tolerance") or ""
    if kind == "gauge":
        shown = f"value {number(estimate)}" if estimate is not None else ""
        return f"{shown} limit {number(threshold)}".strip() if threshold is not None else shown
    if kind == "latency":

        def show(value: float | None) -> str:
            return number(value, " ms", signed=True)

    else:
        show = _ratio
    parts = []
    if estimate is not None:
        parts.append(f"estimate {show(estimate)}")
    if lower is not None or upper is not None:
        parts.append(f"[lower {show(lower)}, upper {show(upper)}]")
    if tolerance:
        parts.append(f"tolerance {tolerance}")
    if threshold is not None:
        parts.append(f"(threshold {show(threshold)})")
    return " ".join(parts)


def _gate(gate: dict[str, Any], now: datetime) -> str:
    sentence = str(gate["sentence"])
    current, required = gate.get("current"), gate.get("required")
    if gate.get("name") == "bake" and isinstance(current, int | float) and required:
        return f"{sentence} (ends in {span(float(required) - float(current))})"
    return sentence


def render_status(rollout: dict[str, Any], now: datetime | None = None) -> str:
    """The rollout as a person reads it: stage, exposure, guards with labelled bounds, what it
    waits for, with times relative to ``now`` (the server's time when it sent its current
    decision, else this machine's)."""
    current = rollout.get("current")
    if now is None:
        now = (parse_time(current.get("at")) if current else None) or datetime.now(UTC)
    stages = rollout["plan"]["stages"]
    unit = rollout["plan"]["unit"]
    timing = f"started {when(rollout.get('started_at'), now)}"
    if rollout.get("ended_at"):
        timing += f", ended {when(rollout['ended_at'], now)}"
    lines = [
        f"{rollout['flag']}: rollout {rollout['id']} {rollout['status']} (unit {unit}), {timing}"
    ]
    for index, stage in enumerate(stages):
        audience = ", ".join(
            [*stage["segments"], *([f"{stage['percent']:g}%"] if stage["percent"] else [])]
        )
        marker = "▶" if index == rollout["stage"] else ("✓" if index < rollout["stage"] else " ")
        entered = ""
        if index == rollout["stage"] and rollout.get("stage_entered_at"):
            entered = f"  entered {when(rollout['stage_entered_at'], now)}"
        lines.append(f"  {marker} {stage['name']:<16} {audience}{entered}".rstrip())
    decision = current or rollout.get("decision")
    if decision is None:
        lines.append("  no decision yet")
        return "\n".join(lines)
    if current:
        lines.append(f"  now: {decision['move']}")
    else:
        lines.append(f"  last decision, {when(decision.get('at'), now)}: {decision['move']}")
    evidence = decision.get("evidence") or {}
    for verdict in evidence.get("verdicts", []):
        numbers = bounds(verdict)
        lines.append(f"    {verdict['verdict']:<8} {verdict['sentence']}")
        if numbers:
            lines.append(f"             {numbers}")
    for verdict in evidence.get("segments", []):
        lines.append(f"    {verdict['verdict']:<8} {verdict['sentence']}")
    gates = evidence.get("gates", [])
    waiting = [_gate(g, now) for g in gates if not g["met"]]
    if waiting:
        lines.append("  waiting for: " + "; ".join(waiting))
    # The reasons repeat the gates and verdicts shown above; only the others are news.
    shown = {g["sentence"] for g in gates} | {
        v["sentence"] for v in [*evidence.get("verdicts", []), *evidence.get("segments", [])]
    }
    for reason in decision.get("reasons", []):
        if reason not in shown:
            lines.append(f"  · {reason}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    with Remote(args) as remote:
        return watch(args, remote)


def watch(args: argparse.Namespace, remote: Remote) -> int:
    """Show the rollout once, or with --watch until it ends; the exit code says how it ended."""
    clear = args.watch and not args.json and sys.stdout.isatty()
    while True:
        rollout = remote.rollout_of(args.flag)
        if args.json:
            # One document per refresh; with --watch one per line (JSON Lines).
            print(json.dumps(rollout) if args.watch else json.dumps(rollout, indent=2))
        else:
            if clear:
                print("\033[2J\033[H", end="")
            elif args.watch:
                print(f"--- {datetime.now(UTC):%H:%M:%S} UTC")
            print(render_status(rollout), flush=True)
        if not args.watch:
            return 0
        if rollout["status"] in _ENDS:
            return _ENDS[rollout["status"]]
        time.sleep(args.interval)
