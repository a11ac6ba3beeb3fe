#!/usr/bin/env python3
"""Does the server take the batches of 1,000 SDKs without locking errors, 5xx or slow
acknowledgements — and does a batch it acknowledged survive a ``kill -9``?

For each database (SQLite: one server with ``--workers 2``; PostgreSQL: two replicas, one with
``--no-controller``: as many processes as the machine's cores either way), starts real
``rollwise server`` processes on loopback with a running ``by: [tenant]`` rollout, then 1,000
simulated SDK clients (``_sdk_load.py``: asyncio over real HTTP, each with its own connection,
flushing every ``--flush`` s ± 20 % like the SDK, retrying what was not taken under the same
id). A batch is what such an SDK sends: 84 aggregates (error counts and latency
histograms of 432 buckets, sent sparse as the SDK sends them; both sides, the whole and 20
tenants), 20 exposures, a gauge reading.

After ``--seconds`` of steady load the first replica gets ``kill -9`` and is started again; the
clients go on for ``--after`` seconds, then send what they still hold. Then the store is read:
every acknowledged batch id must be there, and the stored request counts must equal the sum of
the batches applied (nothing lost, nothing doubled). Meanwhile a kill switch is flipped every
2 s through the management API (its latency shows whether control-plane writes are starved).
Server logs are searched for ``database is locked`` and deadlocks; PostgreSQL's own deadlock
counter is read before and after. Prints a table, writes benchmarks/results/server_ingestion.json.

    python benchmarks/server_ingestion.py [--db sqlite,postgresql] [--clients 1000] [--flush 5]
        [--seconds 60] [--after 30] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from _local_server import FLAGS, free_port
from _sdk_load import EXPOSURES_PER_BATCH, Shape, SimulatedSdk, Tally
from _server_process import ServerProcess
from _stats import percentile
from rollwise.store import EventBatch, ExposureRow, Store
from rollwise.store import _schema as t

ADMIN = "rw_admin_benchmark-ingestion"
PG_BASE = os.environ.get("ROLLWISE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
PG_NAME = "rollwise_bench"
PLAN = """
flag: new-checkout
unit: tenant
max_stage_duration: 3d
guards:
  - {metric: checkout.error, kind: rate, tolerance: 50%, by: [tenant]}
  - {metric: checkout.latency, kind: latency, quantile: 0.95, tolerance: 50ms, by: [tenant]}
stages:
  - {name: five-percent, audience: {percent: 5}, bake: 1d, min_samples: 100000000}
  - {name: all, audience: {percent: 100}, holdback: 2%}
"""


def _postgres_url() -> str:
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {PG_NAME} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {PG_NAME}")
    return PG_BASE.rsplit("/", 1)[0] + f"/{PG_NAME}"


def _pg_deadlocks() -> int:
    import psycopg

    with psycopg.connect(PG_BASE, autocommit=True) as connection:
        row = connection.execute(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = %s", (PG_NAME,)
        ).fetchone()
    return int(row[0]) if row else 0


def _set_up(url: str) -> tuple[int, str]:
    """Flags, the plan, a running rollout and an SDK key; returns (rollout id, key)."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        admin.put("/api/v1/flags", content=FLAGS.read_bytes()).raise_for_status()
        plan = admin.post("/api/v1/plans", content=PLAN.encode())
        plan.raise_for_status()
        rollout = admin.post("/api/v1/rollouts", json={"plan_id": plan.json()["id"]})
        rollout.raise_for_status()
        key = admin.post("/api/v1/tokens", json={"name": "bench", "role": "sdk"})
        key.raise_for_status()
    return int(rollout.json()["id"]), str(key.json()["secret"])


async def _flip_kill_switch(url: str, until: float, outage: list[float]) -> list[float]:
    """Kill and revive ``search-v2`` every 2 s; the milliseconds each change took."""
    took: list[float] = []
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30
    ) as admin:
        killed = False
        while time.monotonic() < until:
            await asyncio.sleep(2.0)
            if outage and outage[0] <= time.monotonic() <= (outage[1:] or [1e18])[0] + 5:
                continue  # the server is being restarted
            path = f"/api/v1/flags/search-v2/{'unkill' if killed else 'kill'}"
            began = time.monotonic()
            try:
                response = await admin.post(path)
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                took.append((time.monotonic() - began) * 1000)
                killed = not killed
    return took


async def _load(
    replicas: list[ServerProcess], rollout: int, key: str, args: argparse.Namespace
) -> tuple[Tally, list[float], list[float], list[float]]:
    tally = Tally()
    window = int(time.time() // 60 // 15 * 15)
    shape = Shape(rollout, window)
    clients = [
        SimulatedSdk(
            i,
            "127.0.0.1",
            replicas[i % len(replicas)].port,
            key,
            shape,
            tally,
            flush=args.flush,
            seed=i,
        )
        for i in range(args.clients)
    ]
    began = time.monotonic()
    stop_cutting = began + args.seconds + args.after
    outage: list[float] = []
    steady_cpu: list[float] = []

    async def kill_and_restart() -> None:
        cpu = [r.cpu_seconds() for r in replicas]
        await asyncio.sleep(args.seconds)
        steady_cpu.extend(r.cpu_seconds() - c for r, c in zip(replicas, cpu, strict=True))
        outage.append(time.monotonic())
        replicas[0].kill9()
        await asyncio.to_thread(replicas[0].start)
        outage.append(time.monotonic())

    flips = asyncio.create_task(_flip_kill_switch(replicas[0].url, stop_cutting, outage))
    chaos = asyncio.create_task(kill_and_restart())
    await asyncio.gather(*(c.run(stop_cutting, stop_cutting + 60) for c in clients))
    await chaos
    return tally, outage, await flips, steady_cpu


def _stored(db: str) -> tuple[set[str], int]:
    engine = sa.create_engine(db.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        ids = set(connection.execute(sa.select(t.batches.c.id)).scalars())
        requests = connection.execute(sa.select(sa.func.sum(t.aggregates.c.requests))).scalar()
    engine.dispose()
    return ids, int(requests or 0)


def _exposure_batch_ms(db: str, rollout: int) -> float:
    """How long one batch of 10,000 exposures holds the write (the whole transaction)."""
    store = Store.open(db)
    now = datetime.now(UTC)
    units = tuple(ExposureRow(rollout, f"big-{i:06d}", 0, i % 20 == 0, now) for i in range(10_000))
    began = time.perf_counter()
    store.ingest_many([EventBatch("bench-big-exposures", "bench", now, (), units)])
    took = (time.perf_counter() - began) * 1000
    store.close()
    return took


def scenario(kind: str, args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    db = f"sqlite:///{directory}/bench.db" if kind == "sqlite" else _postgres_url()
    count = 1 if kind == "sqlite" else 2
    workers = args.workers or (2 if kind == "sqlite" else 1)
    replicas = [
        ServerProcess(
            db,
            free_port(),
            ADMIN,
            directory / f"{kind}-{i}.log",
            controller=i == 0,
            workers=workers,
        )
        for i in range(count)
    ]
    deadlocks_before = _pg_deadlocks() if kind == "postgresql" else 0
    try:
        replicas[0].start()
        rollout, key = _set_up(replicas[0].url)
        for replica in replicas[1:]:
            replica.start()
        tally, outage, flips, cpu = asyncio.run(_load(replicas, rollout, key, args))
        status = httpx.get(
            f"{replicas[0].url}/api/v1/rollouts/{rollout}",
            headers={"Authorization": f"Bearer {ADMIN}"},
        ).json()["status"]
    finally:
        for replica in replicas:
            replica.stop()
    deadlocks = _pg_deadlocks() - deadlocks_before if kind == "postgresql" else 0
    stored, requests = _stored(db)
    acked = tally.acked
    lost = sorted(acked - stored)
    # Batches committed whose answer was lost (in flight at the kill, or after a client's
    # timeout) are stored too, once: the sums are those of every stored batch.
    expected_requests = sum(n for batch, n in tally.cut.items() if batch in stored)
    steady = [ms for sent, ms in tally.latencies if sent < outage[0]]
    after = [ms for sent, ms in tally.latencies if sent > outage[1] + 10]
    statuses = dict(tally.statuses)
    server_errors = sum(n for s, n in statuses.items() if s.isdigit() and int(s) >= 500)
    result = {
        "database": kind,
        "replicas": count,
        "workers_per_replica": workers,
        "clients": args.clients,
        "flush_s": args.flush,
        "steady_s": args.seconds,
        "after_kill_s": args.after,
        "rows_per_batch": 84 + EXPOSURES_PER_BATCH + 1,
        "offered_per_s": args.clients / args.flush,
        "acked_per_s_steady": len(steady) / args.seconds,
        "batches_cut": len(tally.cut),
        "server_cpu_s_steady": cpu,
        "server_cpu_ms_per_batch": 1000 * sum(cpu) / max(len(steady), 1),
        "batches_acked": len(acked),
        "dropped_4xx": len(tally.dropped),
        "ack_ms_steady": {
            "p50": percentile(steady, 0.5),
            "p99": percentile(steady, 0.99),
            "max": max(steady, default=float("nan")),
        },
        "ack_ms_after_restart": {
            "p50": percentile(after, 0.5),
            "p99": percentile(after, 0.99),
        },
        "statuses": statuses,
        "http_5xx": server_errors,
        "http_503": statuses.get("503", 0),
        # Before the kill -9, and from the restart on (the clients' backlog arriving at once).
        "http_5xx_steady": sum(1 for sent, _ in tally.server_errors if sent < outage[0]),
        "http_5xx_after_restart": sum(1 for sent, _ in tally.server_errors if sent >= outage[0]),
        "restart_s": outage[1] - outage[0],
        "database_is_locked_in_logs": sum(r.count_in_log("database is locked") for r in replicas),
        "deadlocks_in_logs": sum(r.count_in_log("deadlock detected") for r in replicas),
        "deadlocks_postgresql": deadlocks,
        "acked_ids_missing_after_kill9": len(lost),
        "stored_requests": requests,
        "expected_requests": expected_requests,
        "kill_switch_ms": {
            "changes": len(flips),
            "p50": percentile(flips, 0.5),
            "max": max(flips, default=float("nan")),
        },
        "rollout_status_after": status,
    }
    result["writer_log"], result["longest_transaction_ms"] = _writer_lines(replicas)
    result["exposures_10k_batch_ms"] = _exposure_batch_ms(db, rollout)
    return result


def _writer_lines(replicas: list[ServerProcess]) -> tuple[list[str], float]:
    """The batch writers' counters from the server logs, and the longest transaction (ms)."""
    lines = [
        line.split("batch writer: ", 1)[1]
        for replica in replicas
        if replica.log.exists()
        for line in replica.log.read_text(errors="replace").splitlines()
        if "batch writer: " in line
    ]
    longest = [float(m) for line in lines for m in re.findall(r"longest ([\d.]+) ms", line)]
    return lines, max(longest, default=float("nan"))


def _print(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print(
        f"Server ingestion: {args.clients} simulated SDKs, a batch every {args.flush:g} s ± 20 % "
        f"each (84 aggregates of which 42 histograms, {EXPOSURES_PER_BATCH} exposures, a gauge); "
        f"{args.seconds:g} s steady, kill -9, {args.after:g} s more"
    )
    header = (
        f"{'database':<11}{'replicas':>9}{'workers':>8}{'offered/s':>10}{'acked/s':>9}{'p50 ms':>8}"
        f"{'p99 ms':>8}{'max ms':>8}{'5xx steady/restart':>19}{'locked':>7}{'deadlk':>7}"
        f"{'lost':>6}{'sums':>6}{'kill p50/max ms':>17}{'10k exp ms':>11}"
    )
    print(header)
    for r in results:
        ack = r["ack_ms_steady"]
        sums = "ok" if r["stored_requests"] == r["expected_requests"] else "WRONG"
        kill = r["kill_switch_ms"]
        print(
            f"{r['database']:<11}{r['replicas']:>9}{r['workers_per_replica']:>8}"
            f"{r['offered_per_s']:>10.1f}"
            f"{r['acked_per_s_steady']:>9.1f}{ack['p50']:>8.0f}{ack['p99']:>8.0f}{ack['max']:>8.0f}"
            f"{r['http_5xx_steady']:>11}/{r['http_5xx_after_restart']:<7}"
            f"{r['database_is_locked_in_logs']:>7}"
            f"{r['deadlocks_postgresql'] + r['deadlocks_in_logs']:>7}"
            f"{r['acked_ids_missing_after_kill9']:>6}{sums:>6}"
            f"{kill['p50']:>9.0f}/{kill['max']:<7.0f}{r['exposures_10k_batch_ms']:>11.0f}"
        )
    for r in results:
        acked, cut = r["batches_acked"], r["batches_cut"]
        cpu = r["server_cpu_ms_per_batch"]
        print(
            f"  {r['database']}: {acked:,} batches acknowledged of {cut:,} cut; server CPU "
            f"{cpu:.1f} ms per batch (one core takes {1000 / cpu:.0f}/s); "
            f"restart took {r['restart_s']:.1f} s; after it p50 "
            f"{r['ack_ms_after_restart']['p50']:.0f} ms, p99 {r['ack_ms_after_restart']['p99']:.0f}"
            f" ms; longest write transaction {r['longest_transaction_ms']:.0f}"
            f" ms; answers {r['statuses']}; rollout {r['rollout_status_after']}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--flush", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--after", type=float, default=30.0)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="rollwise server --workers of each replica (default: as many processes as this "
        "machine's 2 cores: 2 on SQLite's one server, 1 on each PostgreSQL replica)",
    )
    parser.add_argument("--logs", help="keep the database and the server logs here")
    parser.add_argument(
        "--output", default=str(Path(__file__).parent / "results/server_ingestion.json")
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as directory:
        logs = Path(args.logs or directory)
        logs.mkdir(parents=True, exist_ok=True)
        for kind in args.db.split(","):
            results.append(scenario(kind, args, logs))
    _print(results, args)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"scenarios": results}, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
