#!/usr/bin/env python3
"""Can the server absorb event batches from 200 SDK processes without falling behind?

Starts a real server (SQLite, loopback) with a running rollout, then 200 simulated SDKs — each
with its own batch ids, flushing every ``--flush`` seconds a batch shaped like a real one (the
aggregates of one flush period: 2 metrics x 2 sides x the whole and 20 tenants, one window) —
spread over ``--processes`` OS processes. For ``--seconds`` it measures the batches offered and
applied per second and the POST latency. "Not falling behind" means every offered batch is
applied within the run and the applied rate keeps up with the offered rate. Prints a table and
writes benchmarks/results/server_ingestion.json.

    python benchmarks/server_ingestion.py [--sdks 200] [--flush 5] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import time
import uuid
from pathlib import Path

import httpx

from _local_server import local_server, sdk_key

ROOT = Path(__file__).resolve().parents[1]
ADMIN = "rw_admin_benchmark-ingestion"
PLAN = """
flag: new-checkout
unit: user
guards:
  - {metric: checkout.error, kind: rate, tolerance: 10%, by: [tenant]}
  - {metric: checkout.abandoned, kind: rate, tolerance: 10%, by: [tenant]}
stages:
  - {name: canary, audience: {percent: 5}, bake: 1d, min_samples: 1000}
  - {name: all, audience: {percent: 100}, holdback: 2%}
"""


def _batch(rollout: int, window: int) -> dict[str, object]:
    aggregates = []
    for metric in ("checkout.error", "checkout.abandoned"):
        for segment in ["", *(f"tenant=t{i}" for i in range(20))]:
            for exposed in (True, False):
                aggregates.append(
                    {
                        "rollout": rollout,
                        "stage": 0,
                        "window": window,
                        "exposed": exposed,
                        "segment": segment,
                        "metric": metric,
                        "requests": 50,
                        "events": 1,
                    }
                )
    return {"batch": str(uuid.uuid4()), "sdk": "benchmark", "aggregates": aggregates}


def _producer(
    url: str,
    secret: str,
    rollout: int,
    sdks: int,
    flush: float,
    seconds: float,
    out: multiprocessing.Queue,
) -> None:  # type: ignore[type-arg]
    """``sdks`` SDKs in one process, each flushing every ``flush`` seconds, staggered."""
    latencies: list[float] = []
    offered = applied = failed = 0
    window = int(time.time() // 3600) * 60
    with httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=60
    ) as client:
        start = time.monotonic()
        due = [start + flush * i / sdks for i in range(sdks)]
        while time.monotonic() - start < seconds:
            index = min(range(sdks), key=due.__getitem__)
            wait = due[index] - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            offered += 1
            began = time.perf_counter()
            try:
                response = client.post("/sdk/v1/events", json=_batch(rollout, window))
                if response.status_code in (200, 202):
                    applied += 1
                else:
                    failed += 1
            except httpx.HTTPError:
                failed += 1
            latencies.append((time.perf_counter() - began) * 1000)
            due[index] += flush
    out.put({"offered": offered, "applied": applied, "failed": failed, "latencies": latencies})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sdks", type=int, default=200)
    parser.add_argument("--flush", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args()
    with local_server(ADMIN) as url:
        secret = sdk_key(url, ADMIN)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
            plan = admin.post("/api/v1/plans", content=PLAN.encode()).json()["id"]
            rollout = admin.post("/api/v1/rollouts", json={"plan_id": plan}).json()["id"]
        queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
        base, extra = divmod(args.sdks, args.processes)
        share = [base + (1 if i < extra else 0) for i in range(args.processes)]
        workers = [
            multiprocessing.Process(
                target=_producer, args=(url, secret, rollout, n, args.flush, args.seconds, queue)
            )
            for n in share
        ]
        for worker in workers:
            worker.start()
        results = [queue.get(timeout=args.seconds + 300) for _ in workers]
        for worker in workers:
            worker.join()
    offered = sum(r["offered"] for r in results)
    applied = sum(r["applied"] for r in results)
    failed = sum(r["failed"] for r in results)
    latencies = sorted(v for r in results for v in r["latencies"])
    expected = args.sdks * args.seconds / args.flush
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    rows_per_batch = 2 * 21 * 2
    rate = applied / args.seconds
    keeps_up = failed == 0 and offered >= 0.97 * expected and p99 < args.flush * 1000
    print(
        f"Server ingestion: {args.sdks} SDKs flushing every {args.flush:g}s for "
        f"{args.seconds:g}s ({rows_per_batch} aggregates per batch)"
    )
    print(
        f"  batches due {expected:,.0f}; sent {offered:,}; applied {applied:,}; failed {failed:,}"
    )
    print(
        f"  applied rate {rate:,.1f} batches/s ({rate * rows_per_batch:,.0f} aggregates/s); "
        f"POST latency p50 {p50:.0f} ms, p99 {p99:.0f} ms"
    )
    verdict = "yes" if keeps_up else "NO"
    print(f"  keeps up (every batch applied, none late by a flush period): {verdict}")
    output = Path(__file__).resolve().parent / "results" / "server_ingestion.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "sdks": args.sdks,
        "flush_s": args.flush,
        "seconds": args.seconds,
        "due": expected,
        "offered": offered,
        "applied": applied,
        "failed": failed,
        "p50_ms": p50,
        "p99_ms": p99,
        "keeps_up": keeps_up,
    }
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
