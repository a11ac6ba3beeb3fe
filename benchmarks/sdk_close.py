#!/usr/bin/env python3
"""How long an application's shutdown waits for its SDK clients: ``Client.close()`` of live
clients whose event stream is connected (target: 200 clients closed in < 5 s in total, each in
< 100 ms when nothing is pending).

Starts a real server process (uvicorn, SQLite) on loopback with the example flags, opens N
``rollwise.Client``s in this process and waits until every one's stream is connected, then
closes them one after the other, as a shutdown hook would, with a generous ``timeout`` (30 s)
so that a close that waits for its stream's next keep-alive shows. Nothing is pending (no
rollout is running), so each close sends no batch. Prints a table and writes
benchmarks/results/sdk_close.json.

    python benchmarks/sdk_close.py [--clients 200] [--timeout 30]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

from _local_server import local_server, sdk_key
from _stats import percentile
from rollwise import Client

HERE = Path(__file__).resolve().parent
ADMIN = "rw_admin_benchmark-sdk-close"
TARGET_TOTAL_S = 5.0
TARGET_EACH_MS = 100.0


def main() -> int:
    parser = argparse.ArgumentParser(description="rollwise SDK: how long close() takes")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--output", default=str(HERE / "results" / "sdk_close.json"))
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.clients + 256)), hard))

    with local_server(ADMIN, controller=False) as url:
        secret = sdk_key(url, ADMIN)
        clients = [Client(url, secret, flush_interval=60.0) for _ in range(args.clients)]
        deadline = time.monotonic() + 60
        while not all(c.stats().stream_connected for c in clients):
            if time.monotonic() > deadline:
                raise SystemExit("not every client connected within 60 s: nothing measured")
            time.sleep(0.05)
        time.sleep(0.5)  # every stream past its first event, waiting for the next
        each: list[float] = []
        started = time.perf_counter()
        for client in clients:
            before = time.perf_counter()
            client.close(timeout=args.timeout)
            each.append((time.perf_counter() - before) * 1000.0)
        total = time.perf_counter() - started

    p50, p99, worst = percentile(each, 0.5), percentile(each, 0.99), max(each)
    print(f"Closing {args.clients} connected clients one by one (timeout {args.timeout:g} s)")
    print(f"  {'total':>10}{'p50':>10}{'p99':>10}{'max':>10}{'mean':>10}")
    print(
        f"  {total:>9.2f}s{p50:>8.1f}ms{p99:>8.1f}ms{worst:>8.1f}ms{statistics.fmean(each):>8.1f}ms"
    )
    met_total = total < TARGET_TOTAL_S
    met_each = p99 < TARGET_EACH_MS
    print(
        f"Target < {TARGET_TOTAL_S:g} s in total: {'met' if met_total else 'MISSED'}; "
        f"p99 < {TARGET_EACH_MS:g} ms each: {'met' if met_each else 'MISSED'}"
    )
    document = {
        "benchmark": "sdk_close",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "clients": args.clients,
        "timeout_s": args.timeout,
        "total_s": round(total, 3),
        "each_ms": {
            "p50": round(p50, 2),
            "p99": round(p99, 2),
            "max": round(worst, 2),
            "mean": round(statistics.fmean(each), 2),
        },
        "targets": {
            "total_s": {"target": TARGET_TOTAL_S, "measured": round(total, 3)},
            "p99_each_ms": {"target": TARGET_EACH_MS, "measured": round(p99, 2)},
        },
        "targets_met": met_total and met_each,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
