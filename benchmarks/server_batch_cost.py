#!/usr/bin/env python3
"""What one SDK batch costs the server, away from overload: server CPU per batch.

``server_ingestion.py`` asks whether the server keeps up with 1,000 SDKs; on two cores shared
with the load generator and the database its CPU per batch moves with how busy the machine is,
too much to compare two versions of the code. This one starts one ``rollwise server``
(``--no-controller``) with the same running ``by: [tenant]`` rollout, and posts ``--batches``
of the same batches (84 aggregates, 42 of them sparse latency histograms, 20 exposures, a
gauge) from ``--threads`` threads, each waiting for its answer: the server's CPU (user and
system, its /proc) over the posts, per batch. Everything must be answered 202.

To compare with earlier code, run it again with ``PYTHONPATH`` on a worktree of that commit
(the server process inherits it), alternating, in the same session. Prints a table, writes
benchmarks/results/server_batch_cost.json.

    python benchmarks/server_batch_cost.py [--db sqlite,postgresql] [--batches 1000]
        [--threads 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from _databases import fresh_database
from _local_server import free_port
from _sdk_load import Shape, SimulatedSdk, Tally
from _server_process import ServerProcess
from server_ingestion import ADMIN, _postgres_url, _set_up

WARM_UP = 100


def _bodies(rollout: int, count: int) -> Iterator[bytes]:
    window = int(time.time() // 60 // 15 * 15)
    sdk = SimulatedSdk(0, "127.0.0.1", 0, "", Shape(rollout, window), Tally(), flush=5, seed=1)
    for _ in range(count):
        sdk._cut()
        yield sdk.pending.popleft()[1]


def _post(url: str, key: str, bodies: list[bytes], threads: int) -> None:
    """Post every body, ``threads`` at a time, each thread waiting for its answer."""
    lock = threading.Lock()
    queue = iter(bodies)
    failed: list[str] = []

    def worker() -> None:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            while not failed:
                with lock:
                    body = next(queue, None)
                if body is None:
                    return
                answer = client.post("/sdk/v1/events", content=body)
                if answer.status_code != 202:
                    failed.append(f"{answer.status_code} {answer.text[:300]}")

    running = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    if failed:
        raise RuntimeError(f"a batch was not taken: {failed[0]}")


def measure(kind: str, batches: int, threads: int, directory: Path) -> dict[str, Any]:
    if kind == "sqlite":
        # A new file every round: a second round on the first's would find its rollout running
        # and be refused the start (409).
        with fresh_database(kind) as db:
            return _measure(db, kind, batches, threads, directory)
    return _measure(_postgres_url(), kind, batches, threads, directory)


def _measure(db: str, kind: str, batches: int, threads: int, directory: Path) -> dict[str, Any]:
    server = ServerProcess(db, free_port(), ADMIN, directory / f"{kind}.log", controller=False)
    server.start()
    try:
        rollout, key = _set_up(server.url)
        bodies = list(_bodies(rollout, WARM_UP + batches))
        _post(server.url, key, bodies[:WARM_UP], threads)
        cpu, started = server.cpu_seconds(), time.perf_counter()
        _post(server.url, key, bodies[WARM_UP:], threads)
        cpu, elapsed = server.cpu_seconds() - cpu, time.perf_counter() - started
    finally:
        server.stop()
    return {
        "database": kind,
        "batches": batches,
        "threads": threads,
        "server_cpu_ms_per_batch": 1e3 * cpu / batches,
        "batches_per_second": batches / elapsed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--batches", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--output", default=str(Path(__file__).parent / "results/server_batch_cost.json")
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as directory:
        for round_ in range(args.rounds):
            for kind in args.db.split(","):
                row = measure(kind, args.batches, args.threads, Path(directory))
                row["round"] = round_ + 1
                results.append(row)
    print(
        f"Server CPU per SDK batch: {args.batches} batches posted by {args.threads} threads, "
        "one server (--no-controller)"
    )
    print(f"{'database':<11}{'round':>6}{'CPU ms/batch':>14}{'batches/s':>11}")
    for row in results:
        print(
            f"{row['database']:<11}{row['round']:>6}{row['server_cpu_ms_per_batch']:>14.2f}"
            f"{row['batches_per_second']:>11.0f}"
        )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
