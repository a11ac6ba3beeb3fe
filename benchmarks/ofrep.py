#!/usr/bin/env python3
"""OFREP evaluation over HTTP: what a service in another language pays per flag, next to the
Python SDK's local evaluation of the same contexts.

A real ``rollwise server`` process (SQLite, no controller, no OFREP rate limit) with the example
flags; ``--processes`` load processes, each one keep-alive HTTP client sending evaluations one
after another for ``--seconds``: single-flag evaluations (``POST /ofrep/v1/evaluate/flags/{key}``)
and bulk ones (``POST /ofrep/v1/evaluate/flags``, every flag). The load shares the machine with
the server, so on a 2-core machine the figures are the machine's as much as the server's. The
local figure is ``Client.resolve`` on a plain dict, offline, in this process.

Prints a table and writes JSON to benchmarks/results/ofrep.json.

    python benchmarks/ofrep.py [--seconds 5] [--processes 4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _local_server import FLAGS, local_server, sdk_key
from rollwise import Client

HERE = Path(__file__).resolve().parent
ADMIN = "rw_admin_bench-ofrep"
CONTEXTS = [
    {
        "targetingKey": f"user-{index}",
        "tenant": f"t-{index % 200}",
        "region": "eu-west",
        "tier": "pro",
        "app_version": "2.5.0",
    }
    for index in range(2000)
]


def _load(url: str, key: str, path: str, seconds: float, queue: Any) -> None:
    """One load process: evaluations one after another; puts its latencies (seconds)."""
    latencies: list[float] = []
    failures = 0
    with httpx.Client(base_url=url, headers={"X-API-Key": key}) as client:
        ends = time.monotonic() + seconds
        index = 0
        while time.monotonic() < ends:
            started = time.perf_counter()
            answer = client.post(path, json={"context": CONTEXTS[index % len(CONTEXTS)]})
            latencies.append(time.perf_counter() - started)
            failures += answer.status_code != 200
            index += 1
    queue.put((latencies, failures))


def measure(url: str, key: str, path: str, seconds: float, processes: int) -> dict[str, float]:
    queue: Any = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=_load, args=(url, key, path, seconds, queue))
        for _ in range(processes)
    ]
    started = time.perf_counter()
    for worker in workers:
        worker.start()
    results = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    latencies = sorted(value for found, _ in results for value in found)
    return {
        "requests": len(latencies),
        "per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "failures": sum(failed for _, failed in results),
    }


def local_us() -> float:
    """µs per ``Client.resolve`` on a plain dict, offline, best of 5 runs."""
    client = Client.from_file(FLAGS)
    contexts = [
        {"key": c["targetingKey"], **{k: v for k, v in c.items() if k != "targetingKey"}}
        for c in CONTEXTS
    ]
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for context in contexts:
            client.resolve("new-checkout", context)
        best = min(best, (time.perf_counter() - started) / len(contexts))
    return best * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description="OFREP evaluation over HTTP")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--output", default=str(HERE / "results" / "ofrep.json"))
    args = parser.parse_args()
    with local_server(ADMIN, controller=False, options=["--ofrep-rate", "0"]) as url:
        key = sdk_key(url, ADMIN)
        single = measure(
            url, key, "/ofrep/v1/evaluate/flags/new-checkout", args.seconds, args.processes
        )
        bulk = measure(url, key, "/ofrep/v1/evaluate/flags", args.seconds, args.processes)
    local = local_us()
    print(f"OFREP over HTTP, {args.processes} load processes × {args.seconds:g} s, one server")
    print(f"  {'call':<34}{'per s':>10}{'p50':>10}{'p99':>10}{'failed':>8}")
    for name, row in (("evaluate one flag", single), ("evaluate every flag (bulk)", bulk)):
        print(
            f"  {name:<34}{row['per_s']:>10,.0f}{row['p50_ms']:>8.2f}ms{row['p99_ms']:>8.2f}ms"
            f"{row['failures']:>8.0f}"
        )
    ratio = single["p50_ms"] * 1000 / local
    print(
        f"  the Python SDK, locally (dict)  {local:>8.2f} µs a call: OFREP's p50 is {ratio:,.0f}×"
    )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "cpus": multiprocessing.cpu_count(),
                },
                "processes": args.processes,
                "seconds": args.seconds,
                "single": single,
                "bulk": bulk,
                "local_resolve_us": local,
                "p50_over_local": ratio,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
