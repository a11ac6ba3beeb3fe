#!/usr/bin/env python3
"""What applying a snapshot costs the SDK: from the body off the wire to the core objects served.

A generated snapshot of N flags (default 1,000: variants, one or two rules with segments,
conditions and percentages, a unit and a description each, as a server writes them) and two
rollouts, applied the way the SDK's follower applies it (``parse_snapshot``):

- **first**: a snapshot read with nothing before it (startup, or a restart from the cache);
- **push**: the next version, one flag killed, read against the snapshot being served, as every
  push on the stream is (a kill switch);
- **YAML round trip**: what the SDK did before, in the same run for the ratio: the body decoded,
  its flags document written back to JSON text and read by PyYAML's pure-Python loader.

Median and best of the repeats, in milliseconds, with ``json.loads`` of the body alone as the
floor. Prints a table and writes benchmarks/results/snapshot_apply.json.

    python benchmarks/snapshot_apply.py [--flags 1000] [--repeats 30] [--yaml-repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rollwise.core import load_flags
from rollwise.sdk._snapshot import Snapshot, _rollout, parse_snapshot

HERE = Path(__file__).resolve().parent

#: The issue's target for a 1,000-flag snapshot.
TARGET_MS = 50.0


def snapshot_document(flags: int, version: int = 1, killed: str | None = None) -> dict[str, Any]:
    """A snapshot of ``flags`` flags as a server writes it; ``killed`` names a flag killed."""
    document: dict[str, Any] = {}
    for index in range(flags):
        key = f"team-{index % 17}.feature-{index:04d}"
        rules: list[dict[str, Any]] = [{"when": {"segment": "internal-team"}, "serve": "on"}]
        if index % 2:
            when = {"region": {"starts_with": ["eu-"]}}
            rules.append({"when": when, "percent": index % 100, "serve": "on"})
        else:
            rules.append({"percent": 25, "serve": "on"})
        document[key] = {
            "variants": {"off": False, "on": True},
            "rules": rules,
            "unit": "tenant" if index % 3 else "user",
            "killed": key == killed,
            "description": f"Feature {index}.",
        }
    keys = list(document)
    return {
        "version": version,
        "flags": {
            "segments": {
                "internal-team": {
                    "when": {"team": {"in": ["checkout", "payments"]}},
                    "description": "",
                }
            },
            "metrics": {"checkout.error": {"kind": "rate", "description": ""}},
            "flags": document,
        },
        "rollouts": [
            {
                "id": number,
                "flag": keys[number],
                "stage": 1,
                "variant": "on",
                "unit": "tenant",
                "metrics": {"checkout.error": "rate"},
                "segments": ["tenant"],
                "window_minutes": 10,
            }
            for number in (1, 2)
        ],
    }


def yaml_round_trip(body: bytes) -> Snapshot:
    """The SDK's previous path: decode, write the flags document back as text, read it as YAML."""
    document = json.loads(body)
    flags = load_flags(json.dumps(document["flags"]), "snapshot")
    flags = replace(flags, version=document["version"])
    # The rollouts were then read from the decoded JSON, as they still are.
    rollouts = tuple(
        _rollout(entry, flags, f"rollouts[{index}]", "snapshot")
        for index, entry in enumerate(document["rollouts"])
    )
    return Snapshot(document["version"], flags, rollouts)


def timings(run: Callable[[], object], repeats: int) -> list[float]:
    """Milliseconds per run (garbage collection left on, as in an application)."""
    measured = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        measured.append((time.perf_counter() - started) * 1000.0)
    return measured


def summary(measured: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(measured), 2),
        "best_ms": round(min(measured), 2),
        "worst_ms": round(max(measured), 2),
        "runs": len(measured),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="rollwise SDK: the cost of applying a snapshot")
    parser.add_argument("--flags", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--yaml-repeats", type=int, default=3)
    parser.add_argument("--output", default=str(HERE / "results" / "snapshot_apply.json"))
    args = parser.parse_args()

    first_body = json.dumps(snapshot_document(args.flags), separators=(",", ":")).encode()
    killed = f"team-{5 % 17}.feature-{5:04d}"
    push_body = json.dumps(
        snapshot_document(args.flags, version=2, killed=killed), separators=(",", ":")
    ).encode()
    served = parse_snapshot(first_body)
    pushed = parse_snapshot(push_body, previous=served)
    if pushed.flags != yaml_round_trip(push_body).flags or not pushed.flags.flags[killed].killed:
        raise SystemExit("the paths disagree: nothing measured")

    results = {
        "json.loads alone": summary(timings(lambda: json.loads(first_body), args.repeats)),
        "first (nothing before)": summary(
            timings(lambda: parse_snapshot(first_body), args.repeats)
        ),
        "push (one flag killed)": summary(
            timings(lambda: parse_snapshot(push_body, previous=served), args.repeats)
        ),
        "YAML round trip (before)": summary(
            timings(lambda: yaml_round_trip(push_body), args.yaml_repeats)
        ),
    }
    yaml_ms = results["YAML round trip (before)"]["median_ms"]
    first_ms = results["first (nothing before)"]["median_ms"]
    push_ms = results["push (one flag killed)"]["median_ms"]

    size = len(push_body) / 1024
    print(f"Applying a snapshot of {args.flags:,} flags ({size:,.0f} KiB of JSON), ms per apply")
    print(f"  {'path':<28}{'median':>10}{'best':>10}{'worst':>10}{'runs':>6}{'× faster':>11}")
    for name, row in results.items():
        ratio = yaml_ms / row["median_ms"] if row["median_ms"] else float("inf")
        shown = "" if name.startswith(("YAML", "json")) else f"{ratio:,.0f}×"
        print(
            f"  {name:<28}{row['median_ms']:>10.1f}{row['best_ms']:>10.1f}"
            f"{row['worst_ms']:>10.1f}{row['runs']:>6}{shown:>11}"
        )
    met_push = push_ms < TARGET_MS
    met_first = first_ms < TARGET_MS
    print(
        f"Target < {TARGET_MS:g} ms for {args.flags:,} flags: push {push_ms:.1f} ms "
        f"({'met' if met_push else 'MISSED'}), first {first_ms:.1f} ms "
        f"({'met' if met_first else 'MISSED'})"
    )
    document = {
        "benchmark": "snapshot_apply",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "flags": args.flags,
        "snapshot_bytes": len(push_body),
        "results": results,
        "ratio_yaml_over_first": round(yaml_ms / first_ms, 1),
        "ratio_yaml_over_push": round(yaml_ms / push_ms, 1),
        "targets": {
            "push_ms": {"target": TARGET_MS, "measured": push_ms},
            "first_ms": {"target": TARGET_MS, "measured": first_ms},
        },
        "targets_met": met_push and met_first,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
