#!/usr/bin/env python3
"""Controller tick time with many running rollouts, each with days of data (issue 11: 10,000
rollouts with 3 days of hourly data in 20 segments; a tick under 1 s on SQLite and PostgreSQL
when 1 % of them receive new data).

Setup: N flags, each with a running rollout whose plan splits its error rate by tenant (20
tenants) and judges latency too; ``--days`` of aggregates per rollout in windows of the plan's
``stratum`` (the whole traffic and 20 tenants, both sides, plus latency histograms), and 100
units in its ledger — bulk-inserted into the store's tables (the ingestion path is measured by
benchmarks/ingestion.py), versioned as already read. The plans bake for a week: enough evidence
to judge, nothing to move. Then:

1. the ticks of a fresh controller (a restart) until every rollout's aggregates are read whole:
   each tick reads for about ``READ_SECONDS`` (2 s) and judges what it holds, a hold kept for
   each; the first tick, the number of ticks and their total time are reported;
2. ticks one second apart, before each of which ``--changed`` of the rollouts (a different set
   each time) receive a batch for the current window through the real ingestion path;
3. ``--all-ticks`` ticks with every rollout receiving a batch.

The holds kept every ten minutes are spread over that period (``Controller``), so each of the
one-second ticks keeps its share of them (about N/600), with their bounds.

Prints a table and writes benchmarks/results/controller.json (one entry per database and
stratum, merged into what is there).

    python benchmarks/controller.py [--db sqlite|postgresql|both] [--rollouts 10000]
        [--days 3] [--stratum 60] [--changed 0.01] [--ticks 5] [--all-ticks 1]
        [--read-seconds 2|all]
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from _databases import fresh_database
from rollwise.control import Controller
from rollwise.control._tracking import READ_SECONDS
from rollwise.core.simulation._simulator import _lognormal_bucket_probabilities
from rollwise.store import AggregateRow, ExposureRow, Store
from rollwise.store import _schema as t
from rollwise.store._merging import sparse_histogram

START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
TENANTS = [f"t{n:02d}" for n in range(20)]
PLAN = """
flag: {flag}
unit: user
stratum: {stratum}m
max_stage_duration: 30d
guards:
  - {{metric: errors, kind: rate, tolerance: 10%, by: [tenant], max_segments: 20}}
  - {{metric: latency, kind: latency, tolerance: 10%}}
stages:
  - {{name: canary, audience: {{percent: 5}}, bake: 7d, min_samples: 1000}}
  - {{name: all, audience: {{percent: 100}}, holdback: 2%}}
"""
HERE = Path(__file__).resolve().parent


def _histograms(requests: int) -> tuple[str, list[int]]:
    """A latency histogram of ``requests`` (p95 120 ms), as JSON text in the form the store
    writes (``sparse_histogram``) and as counts."""
    counts = np.floor(_lognormal_bucket_probabilities(120.0, 0.5, 1.0, 0.0) * requests)
    counts[200] += requests - counts.sum()
    values = [int(v) for v in counts]
    stored = sparse_histogram(len(values), {i: count for i, count in enumerate(values) if count})
    return json.dumps(stored), values


def build(store: Store, rollouts: int, days: int, stratum: int) -> dict[str, float]:
    """N flags with a running rollout each and ``days`` of aggregates, bulk-inserted."""
    started = time.perf_counter()
    flags = "flags:\n" + "".join(f"  f{i}:\n    variants: [off, on]\n" for i in range(rollouts))
    store.apply_flags(flags, "bench", "bench", START)
    with store.engine.begin() as connection:
        plan_ids = (
            connection.execute(
                t.plans.insert().returning(t.plans.c.id),
                [
                    {
                        "flag": f"f{i}",
                        "version": 1,
                        "text": PLAN.format(flag=f"f{i}", stratum=stratum),
                        "created_at": START,
                        "created_by": "bench",
                    }
                    for i in range(rollouts)
                ],
            )
            .scalars()
            .all()
        )
        rollout_ids = (
            connection.execute(
                t.rollouts.insert().returning(t.rollouts.c.id),
                [
                    {
                        "flag": f"f{i}",
                        "plan_id": plan_id,
                        "status": "running",
                        "stage": 0,
                        "stage_entered_at": START,
                        "started_at": START,
                        "version": 1,
                        "approvals": [],
                    }
                    for i, plan_id in enumerate(plan_ids)
                ],
            )
            .scalars()
            .all()
        )
    windows = range(days * 24 * 60 // stratum)
    window0 = int(START.timestamp() // 60)
    per_window = 20_000 * stratum // 60  # requests per window in all, 5 % exposed
    shares = [(True, 0.05), (False, 0.95)]
    hist = {side: _histograms(int(per_window * share))[0] for side, share in shares}
    template = []
    for index in windows:
        window = window0 + stratum * index
        for side, share in shares:
            requests = int(per_window * share)
            template.append((window, side, "", "errors", requests, requests // 100, None))
            template.append((window, side, "", "latency", requests, 0, hist[side]))
            for tenant in TENANTS:
                part = requests // len(TENANTS)
                template.append(
                    (window, side, f"tenant={tenant}", "errors", part, part // 100, None)
                )
    units = [(f"u{n}", n % 20 == 0) for n in range(100)]
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        postgres = store.engine.dialect.name == "postgresql"
        # SQLite keeps times as SQLAlchemy writes them: text without a zone.
        at = START if postgres else START.strftime("%Y-%m-%d %H:%M:%S.%f")
        for rollout_id in rollout_ids:
            rows = [(rollout_id, 0, *row, 0) for row in template]
            ledger = [
                (rollout_id, unit, 0, exposed, at, exposed, 0 if exposed else None,
                 at if exposed else None, 0)
                for unit, exposed in units
            ]  # fmt: skip
            if postgres:
                _copy(cursor, "aggregates", rows)
                _copy(cursor, "ledger", ledger)
            else:
                cursor.executemany(
                    'INSERT INTO aggregates (rollout_id, stage, "window", exposed, segment, '
                    "metric, requests, events, histogram, seq) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    rows,
                )
                cursor.executemany(
                    "INSERT INTO ledger (rollout_id, unit, stage, exposed, first_seen, "
                    "first_exposed, exposed_stage, exposed_at, seq) VALUES (?,?,?,?,?,?,?,?,?)",
                    ledger,
                )
        raw.commit()
    finally:
        raw.close()
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as connection:
            connection.execute(sa.text("ANALYZE aggregates"))
            connection.execute(sa.text("ANALYZE ledger"))
    return {"setup_s": time.perf_counter() - started, "rows": len(template) * rollouts}


def _copy(cursor: Any, table: str, rows: list[tuple[Any, ...]]) -> None:
    columns = {
        "aggregates": '(rollout_id, stage, "window", exposed, segment, metric, requests, events, '
        "histogram, seq)",
        "ledger": "(rollout_id, unit, stage, exposed, first_seen, first_exposed, exposed_stage, "
        "exposed_at, seq)",
    }[table]
    with cursor.copy(f"COPY {table} {columns} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def batch(
    rollout_ids: list[int], window: int, stratum: int, tick: int, rng: np.random.Generator
) -> tuple[list[AggregateRow], list[ExposureRow]]:
    """A few seconds of traffic of these rollouts, for the current window, as an SDK sends it."""
    rows: list[AggregateRow] = []
    units: list[ExposureRow] = []
    for rollout_id in rollout_ids:
        for side, requests in ((True, 50), (False, 950)):
            rows.append(AggregateRow(rollout_id, 0, window, side, "", "errors", requests, 1))
            _, histogram = _histograms(requests)
            rows.append(
                AggregateRow(
                    rollout_id, 0, window, side, "", "latency", requests, 0, tuple(histogram)
                )
            )
            for tenant in TENANTS:
                part = requests // len(TENANTS)
                rows.append(
                    AggregateRow(
                        rollout_id,
                        0,
                        window,
                        side,
                        f"tenant={tenant}",
                        "errors",
                        part,
                        int(rng.random() < 0.01 * part),
                    )
                )
        units.append(ExposureRow(rollout_id, f"new-{tick}-{rollout_id}", 0, False, START))
    return rows, units


def _rss_mb() -> float:
    """Resident memory now (not the peak): what the controller keeps between ticks."""
    gc.collect()
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    store = Store.open(url)
    built = build(store, args.rollouts, args.days, args.stratum)
    rollout_ids = [r.id for r in store.rollouts(live=True)]
    memory_before = _rss_mb()
    controller = Controller(store, read_seconds=args.read_seconds)
    now = START + timedelta(days=args.days)
    window = int(now.timestamp() // 60) // args.stratum * args.stratum
    rng = np.random.default_rng(11)
    ticks: list[dict[str, Any]] = []

    def tick(label: str, changed: int, at: datetime, *, show: bool = True) -> int:
        begin = time.perf_counter()
        outcomes = controller.tick(at)
        seconds = time.perf_counter() - begin
        assert len(outcomes) + controller.waiting == len(rollout_ids)
        ticks.append({"tick": label, "changed": changed, "seconds": seconds})
        if show:
            print(f"  {label:<46}{changed:>9,}{seconds:>10.3f}", flush=True)
        return len(outcomes)

    print(f"  {'tick':<46}{'changed':>9}{'seconds':>10}")
    read = tick("restart: first tick", len(rollout_ids), now)
    restart = [ticks[-1]["seconds"]]
    while controller.waiting:
        now += timedelta(seconds=1)
        read = tick("restart: reading", len(rollout_ids) - read, now, show=False)
        restart.append(ticks[-1]["seconds"])
    label = f"restart: all read after {len(restart)} ticks (total)"
    print(f"  {label:<46}{len(rollout_ids):>9,}{sum(restart):>10.3f}", flush=True)
    memory_after = _rss_mb()
    changed = max(1, int(len(rollout_ids) * args.changed))
    for index in range(args.ticks):
        now += timedelta(seconds=1)
        chosen = [int(i) for i in rng.choice(rollout_ids, changed, replace=False)]
        rows, units = batch(chosen, window, args.stratum, index, rng)
        store.ingest(f"tick-{index}-{uuid.uuid4().hex}", "bench", rows, units, now)
        tick(f"{args.changed:.0%} received new data", changed, now)
    for index in range(args.all_ticks):
        now += timedelta(seconds=1)
        for start in range(0, len(rollout_ids), 500):
            rows, units = batch(
                rollout_ids[start : start + 500], window, args.stratum, 10_000 + index, rng
            )
            store.ingest(f"all-{index}-{start}-{uuid.uuid4().hex}", "bench", rows, units, now)
        tick("every rollout received new data", len(rollout_ids), now)
    store.close()
    steady = [entry["seconds"] for entry in ticks[len(restart) : len(restart) + args.ticks]]
    return {
        "database": url.split(":")[0],
        "rollouts": args.rollouts,
        "days": args.days,
        "stratum_minutes": args.stratum,
        "segments": len(TENANTS),
        "aggregate_rows": built["rows"],
        "setup_s": round(built["setup_s"], 1),
        "ticks": ticks,
        "restart_ticks": len(restart),
        "restart_total_s": round(sum(restart), 3),
        "restart_worst_tick_s": round(max(restart), 3),
        "steady_worst_s": max(steady) if steady else None,
        "target_met": bool(steady) and max(steady) < 1.0,
        "controller_memory_mb": round(memory_after - memory_before, 1),
        "rebuilds": controller.rebuilds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rollouts", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--stratum", type=int, default=60, help="window minutes (plan stratum)")
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--ticks", type=int, default=5)
    parser.add_argument("--all-ticks", type=int, default=1)
    parser.add_argument(
        "--read-seconds",
        type=lambda text: None if text == "all" else float(text),
        default=READ_SECONDS,
        help="seconds a tick reads rollouts whole after the restart ('all': no bound)",
    )
    args = parser.parse_args()
    results = []
    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    for database in databases:
        print(
            f"\n{database}: {args.rollouts:,} running rollouts, {args.days} days of "
            f"{args.stratum}-minute windows, whole traffic + {len(TENANTS)} tenants"
        )
        with fresh_database(database) as url:
            result = measure(url, args)
        results.append(result)
        verdict = (
            "met" if result["target_met"] else f"MISSED by {result['steady_worst_s'] - 1.0:.2f}s"
        )
        print(
            f"  setup {result['setup_s']}s for {result['aggregate_rows']:,} aggregate rows; "
            f"controller memory +{result['controller_memory_mb']} MB (peak RSS); "
            f"ticks with {args.changed:.0%} changed under 1 s: {verdict}"
        )
    output = HERE / "results" / "controller.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    known = json.loads(output.read_text()) if output.exists() else {}
    runs = known.get("runs", []) if isinstance(known, dict) else []
    keys = {(r["database"], r["rollouts"], r["stratum_minutes"]) for r in results}
    runs = [
        r
        for r in runs
        if (r.get("database"), r.get("rollouts"), r.get("stratum_minutes")) not in keys
    ]
    output.write_text(json.dumps({"runs": runs + results}, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
