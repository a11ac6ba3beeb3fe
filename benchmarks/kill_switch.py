#!/usr/bin/env python3
"""Kill-switch latency: from ``POST /api/v1/flags/F/kill`` to every connected SDK serving the
safe default (target: p99 < 500 ms with 1,000 SDK connections over loopback).

Starts a real server process (uvicorn, SQLite) on loopback, opens N SDK streams
(``GET /sdk/v1/stream``) from one asyncio process, each doing what the SDK does on an event: fetch
the snapshot with If-None-Match, and check the flag. Then kills the flag and records, per client,
the time until its snapshot says ``killed``. Repeats a few rounds (kill / unkill). Prints a table
and writes benchmarks/results/kill_switch.json.

    python benchmarks/kill_switch.py [--clients 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path

import httpx

from _local_server import local_server, sdk_key
from _stats import percentile

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "rw_admin_benchmark-kill-switch"
FLAG = "new-checkout"


async def _client(
    url: str,
    secret: str,
    ready: asyncio.Event,
    seen: dict[int, float],
    index: int,
    target: list[bool],
) -> None:
    """One SDK's stream: on each snapshot event, refetch and record when the flag matches."""
    headers = {"Authorization": f"Bearer {secret}"}
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=None) as client,
        client.stream("GET", "/sdk/v1/stream") as stream,
    ):
        ready.set()
        async for line in stream.aiter_lines():
            if not line.startswith("data:"):
                continue
            snapshot = json.loads(line[5:])
            if "flags" not in snapshot:  # a server that only announces versions
                snapshot = (await client.get("/sdk/v1/snapshot")).json()
            killed = snapshot["flags"]["flags"][FLAG]["killed"]
            if killed == target[0] and index not in seen:
                seen[index] = time.perf_counter()


async def run(url: str, secret: str, clients: int, rounds: int) -> list[list[float]]:
    seen: dict[int, float] = {}
    target = [False]
    readies = [asyncio.Event() for _ in range(clients)]
    tasks = [
        asyncio.create_task(_client(url, secret, readies[i], seen, i, target))
        for i in range(clients)
    ]
    await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readies)), timeout=120)
    await asyncio.sleep(1.0)
    latencies: list[list[float]] = []
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}
    ) as admin:
        for round_index in range(rounds):
            seen.clear()
            target[0] = round_index % 2 == 0  # kill, then unkill, …
            action = "kill" if target[0] else "unkill"
            started = time.perf_counter()
            (await admin.post(f"/api/v1/flags/{FLAG}/{action}")).raise_for_status()
            deadline = started + 30
            while len(seen) < clients and time.perf_counter() < deadline:
                await asyncio.sleep(0.005)
            latencies.append(sorted((t - started) * 1000 for t in seen.values()))
            await asyncio.sleep(1.0)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.clients + 256)), hard))
    with local_server(ADMIN, controller=False) as url:
        secret = sdk_key(url, ADMIN)
        latencies = asyncio.run(run(url, secret, args.clients, args.rounds))
    rows = []
    print(
        f"Kill switch: POST to every one of {args.clients:,} SDK streams serving the new state (ms)"
    )
    print(f"  {'round':<8}{'reached':>9}{'p50':>9}{'p99':>9}{'max':>9}")
    for index, values in enumerate(latencies):
        row = {
            "round": index,
            "reached": len(values),
            "p50_ms": percentile(values, 0.5),
            "p99_ms": percentile(values, 0.99),
            "max_ms": values[-1] if values else None,
        }
        rows.append(row)
        maximum = row["max_ms"] or 0
        print(
            f"  {index:<8}{len(values):>9}{row['p50_ms']:>9.0f}{row['p99_ms']:>9.0f}{maximum:>9.0f}"
        )
    worst = max((r["p99_ms"] for r in rows), default=float("inf"))
    complete = all(r["reached"] == args.clients for r in rows)
    verdict = (
        "met"
        if complete and worst < 500
        else f"MISSED (worst p99 {worst:.0f} ms, all reached: {complete})"
    )
    print(f"  target p99 < 500 ms with every client reached: {verdict}")
    output = Path(__file__).resolve().parent / "results" / "kill_switch.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {"clients": args.clients, "rounds": rows, "target_met": complete and worst < 500},
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
