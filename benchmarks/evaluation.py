#!/usr/bin/env python3
"""Local flag evaluations per second on one core: rollwise against peer SDKs, in the same run.

Two scenarios over the same 10,000 users (see benchmarks/peers/README.md):
  a. a plain 25 % percentage rollout bucketed by user;
  b. country in [US, CA, GB, DE] and email ends with @example.com and in segment `premium`
     (tier in [gold, platinum]), then 50 % of those users.

Each is measured twice: on contexts built once beforehand (a ``rollwise.Context``, each peer's
context object), and on plain dicts, as most applications pass them (rollwise: the dict itself;
each peer: its own way of evaluating for a dict, conversion included). rollwise is measured in
this process (the project's environment) through its public call,
``client.enabled(flag, context)``, with the peers' own harness (benchmarks/peers/run_peers.py:
same pool, pre-bound calls, warm-up, best of N timed repeats). The peers run in their own
environment (``make bench`` builds .venv-bench), one child process each. rollwise and the
peers take turns, round after round, so that a change in the machine's speed (this virtual
machine's varies by minutes) falls on both: the table keeps each one's best over the rounds,
and the ratios are also given round by round. Prints a table and writes JSON to
benchmarks/results/evaluation.json.

    python benchmarks/evaluation.py [--peers-python PATH] [--rounds 3] [--seconds 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "peers"))

import run_peers  # noqa: E402  (the shared harness; it imports no SDK at module level)

from rollwise import Client, Context  # noqa: E402
from rollwise.core import load_flags  # noqa: E402

FLAGS = f"""
segments:
  {run_peers.SEGMENT}:
    when: [{{tier: {run_peers.PREMIUM_TIERS}}}]
flags:
  {run_peers.FLAG_A}:
    variants: [off, on]
    rules: [{{percent: {run_peers.ROLLOUT_A_PERCENT}, serve: on}}]
  {run_peers.FLAG_B}:
    variants: [off, on]
    rules:
      - when:
          - country: {run_peers.TARGET_COUNTRIES}
          - email: {{ends_with: "{run_peers.EMAIL_SUFFIX}"}}
          - segment: {run_peers.SEGMENT}
        percent: {run_peers.ROLLOUT_B_PERCENT}
        serve: on
"""

#: The issues' targets: absolute floors per scenario, the ratio to the fastest peer (on the
#: same kind of context), and at most this cost of a plain dict over a pre-built Context.
FLOORS = {"a": 500_000, "b": 300_000}
RATIO_TARGET = 5.0
DICT_COST_TARGET = 1.3
#: Result labels: a scenario on pre-built contexts, and on plain dicts.
KINDS = {"pre-built": "", "plain dict": "_dict"}


def bench_rollwise(seconds: float, repeats: int, warmup: float) -> dict[str, Any]:
    users = run_peers.build_users()
    client = Client(load_flags(FLAGS, "benchmark flags"))
    pools: dict[str, list[Any]] = {
        "": [Context(user.key, user.attributes()) for user in users],
        "_dict": [{"key": user.key, **user.attributes()} for user in users],
    }
    result: dict[str, Any] = {"call": "client.enabled(flag, context)"}
    for scenario, flag in run_peers.SCENARIOS.items():
        calls = {
            suffix: [functools.partial(client.enabled, flag, context) for context in pool]
            for suffix, pool in pools.items()
        }
        # The repeats of the pre-built and the dict runs alternate, so that a change in the
        # machine's load between them does not pass for a difference between the two.
        runs: dict[str, list[dict[str, Any]]] = {suffix: [] for suffix in calls}
        for _ in range(repeats):
            for suffix, timed in calls.items():
                runs[suffix].append(run_peers.measure(timed, seconds, 1, warmup))
        for suffix, timed in calls.items():
            rates = [run["evals_per_s"] for run in runs[suffix]]
            result[scenario + suffix] = {
                "evals_per_s": max(rates),
                "repeats_evals_per_s": rates,
                "background_cpu_share": max(run["background_cpu_share"] for run in runs[suffix]),
                **run_peers.check_share(scenario, timed, users),
            }
    return result


def bench_peers(python: str, seconds: float, repeats: int, warmup: float) -> dict[str, Any]:
    command = [
        python,
        str(HERE / "peers" / "run_peers.py"),
        *("--seconds", str(seconds), "--repeats", str(repeats), "--warmup", str(warmup)),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
    if done.returncode != 0:
        return {"error": f"peer benchmark exited {done.returncode}: {done.stderr.strip()[-500:]}"}
    peers: dict[str, Any] = json.loads(done.stdout)["peers"]
    return peers


def _rate(entry: dict[str, Any], scenario: str) -> float | None:
    figures = entry.get(scenario)
    if not isinstance(figures, dict) or not figures.get("equivalent", False):
        return None
    return float(figures["evals_per_s"])


def _fastest(peers: dict[str, Any], label: str) -> tuple[str, float | None]:
    """The peer measured fastest on ``label`` (an equivalent result, no error), and its rate."""
    rates = [
        (name, rate)
        for name, entry in peers.items()
        if "error" not in entry and (rate := _rate(entry, label)) is not None
    ]
    return max(rates, key=lambda item: item[1], default=("none", None))


def report(rollwise: dict[str, Any], peers: dict[str, Any]) -> dict[str, Any]:
    names = [name for name in peers if "error" not in peers[name]]
    header = ["scenario", "context", "rollwise", *names, "fastest peer", "ratio", "targets"]
    rows, verdicts = [], {}
    for scenario in run_peers.SCENARIOS:
        for kind, suffix in KINDS.items():
            label = scenario + suffix
            ours = _rate(rollwise, label) or 0.0
            theirs = {name: _rate(peers[name], label) for name in names}
            fastest_name, fastest = _fastest(peers, label)
            ratio = ours / fastest if fastest else None
            met = ours >= FLOORS[scenario] and (ratio is None or ratio >= RATIO_TARGET)
            verdicts[label] = {
                "context": kind,
                "rollwise_evals_per_s": round(ours),
                "fastest_peer": fastest_name,
                "fastest_peer_evals_per_s": round(fastest) if fastest else None,
                "ratio_to_fastest_peer": round(ratio, 2) if ratio else None,
                "floor": FLOORS[scenario],
                "ratio_target": RATIO_TARGET,
                "targets_met": met,
            }
            rows.append(
                [
                    scenario,
                    kind,
                    f"{ours:,.0f}",
                    *(f"{theirs[n]:,.0f}" if theirs[n] else "n/a" for n in names),
                    fastest_name,
                    f"{ratio:.1f}x" if ratio else "n/a",
                    f"{'met' if met else 'MISSED'} (>= {FLOORS[scenario]:,}/s, "
                    f">= {RATIO_TARGET:g}x)",
                ]
            )
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    print("Evaluations per second, one thread, best of the rounds (higher is better)")
    for row in [header, *rows]:
        print("  ".join(str(cell).rjust(width) for cell, width in zip(row, widths, strict=True)))
    for name in peers:
        if "error" in peers[name]:
            print(f"  {name}: not measured: {peers[name]['error']}")
    for scenario in run_peers.SCENARIOS:
        built, plain = _rate(rollwise, scenario), _rate(rollwise, scenario + "_dict")
        if not built or not plain:
            continue
        cost = built / plain
        met = cost <= DICT_COST_TARGET
        verdicts[f"{scenario}_dict_cost"] = {
            "plain_dict_cost_over_pre_built": round(cost, 3),
            "target": DICT_COST_TARGET,
            "targets_met": met,
        }
        print(
            f"rollwise ({scenario}): a plain dict costs {cost:.2f}x a pre-built Context — "
            f"target <= {DICT_COST_TARGET:g}x: {'met' if met else 'MISSED'}"
        )
    return verdicts


def _best_of(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One SDK's results over the rounds: each measured label at its best round, with every
    round's rate (``rounds_evals_per_s``); an SDK that failed in every round keeps its error."""
    measured = [result for result in rounds if "error" not in result]
    if not measured:
        return rounds[-1]
    merged = dict(measured[-1])
    for label, figures in measured[-1].items():
        if not isinstance(figures, dict) or "evals_per_s" not in figures:
            continue
        each = [result[label] for result in measured if isinstance(result.get(label), dict)]
        merged[label] = {
            **figures,
            "evals_per_s": max(entry["evals_per_s"] for entry in each),
            "rounds_evals_per_s": [entry["evals_per_s"] for entry in each],
            "repeats_evals_per_s": [r for entry in each for r in entry["repeats_evals_per_s"]],
            "background_cpu_share": max(entry["background_cpu_share"] for entry in each),
            "equivalent": all(entry.get("equivalent", False) for entry in each),
        }
    return merged


def round_ratios(rounds: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, list[float]]:
    """Per label, rollwise over the fastest peer within each round (the same minutes)."""
    ratios: dict[str, list[float]] = {}
    for ours, peers in rounds:
        for scenario in run_peers.SCENARIOS:
            for suffix in KINDS.values():
                label = scenario + suffix
                mine, (_, fastest) = _rate(ours, label), _fastest(peers, label)
                if mine and fastest:
                    ratios.setdefault(label, []).append(round(mine / fastest, 2))
    return ratios


def main() -> int:
    parser = argparse.ArgumentParser(description="rollwise vs peer SDKs: local evaluation rate")
    parser.add_argument("--peers-python", help="python of the peers' environment (.venv-bench)")
    parser.add_argument("--rounds", type=int, default=3, help="rollwise, then the peers, N times")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=1, help="timed repeats per round")
    parser.add_argument("--warmup", type=float, default=0.3)
    parser.add_argument("--output", default=str(HERE / "results" / "evaluation.json"))
    args = parser.parse_args()
    if args.rounds < 1 or args.repeats < 1 or args.seconds <= 0:
        parser.error("--rounds and --repeats must be >= 1, --seconds > 0")
    started = time.time()
    rounds: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for _ in range(args.rounds):
        ours = bench_rollwise(args.seconds, args.repeats, args.warmup)
        theirs: dict[str, Any] = {}
        if args.peers_python:
            theirs = bench_peers(args.peers_python, args.seconds, args.repeats, args.warmup)
            if "error" in theirs:
                print(f"peers not measured: {theirs['error']}", file=sys.stderr)
                theirs = {}
        rounds.append((ours, theirs))
    rollwise = _best_of([ours for ours, _ in rounds])
    names = {name for _, theirs in rounds for name in theirs}
    peers = {
        name: _best_of([theirs[name] for _, theirs in rounds if name in theirs])
        for name in sorted(names, key=list(run_peers.PEERS).index)
    }
    verdicts = report(rollwise, peers)
    per_round = round_ratios(rounds)
    for label, ratios in per_round.items():
        print(f"  ratio to the fastest peer round by round, {label}: {ratios}")
        verdicts[label]["ratio_to_fastest_peer_by_round"] = ratios
    document = {
        "benchmark": "evaluation",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seconds": args.seconds,
        "rounds": args.rounds,
        "repeats": args.repeats,
        "started": started,
        "rollwise": rollwise,
        "peers": peers,
        "summary": verdicts,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
