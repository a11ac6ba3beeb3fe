#!/usr/bin/env python3
"""What a poll of the rollout page costs the server once a rollout has days of data and many
exposed units: the reads behind ``GET /api/v1/rollouts/{id}`` (what the controller would decide
now) and ``GET …/series`` (what the page draws), each as it reads now and as it read before
2026-12-02, in the same run.

Setup: the example flags and plan (``by: [tenant]``, 15-minute windows), ``--hours`` of windows
written through the store's ingestion path (every window: errors of the whole traffic and of
``--tenants`` tenants, abandons and a latency histogram of the whole traffic, both sides), and
``--units`` exposed units in the ledger. Then, ``--repeat`` times each, a new window's batch is
written and the reads are timed:

- the rollout's observations read whole (``Store.observations``: what every poll did before),
  against followed (``Store.followed_observations``: the rows written since the last read);
- the ledger listed unit by unit (``Store.ledger``: what the series did before), against the
  exposed units counted by the database (``Store.exposed_units``), and one page of the ledger
  as ``GET …/ledger`` reads it (``Store.ledger_page``), the first and one from the middle;
- the work of each endpoint now (``Controller.current``, ``rollout_series``), without HTTP.

Prints a table (median seconds; before/now ratios) and writes
benchmarks/results/rollout_page.json.

    python benchmarks/rollout_page.py [--db sqlite,postgresql] [--hours 48] [--tenants 120]
        [--units 250000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from _databases import fresh_database
from rollwise.control import Controller
from rollwise.core.simulation._simulator import _lognormal_bucket_probabilities
from rollwise.server._history import DecisionHistory
from rollwise.server._series import rollout_series
from rollwise.store import AggregateRow, ExposureRow, RolloutRecord, Store
from rollwise.store import _schema as t

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent / "examples" / "checkout"
START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
WINDOW = 15
SHAPE = _lognormal_bucket_probabilities(110.0, 0.35, 1.0, 0.0)


def _window_rows(
    rollout: int, window: int, tenants: list[str], rng: np.random.Generator
) -> list[AggregateRow]:
    """One 15-minute window of the checkout: the internal team exposed, everyone else not."""
    rows = []
    for exposed in (True, False):
        requests = int(rng.poisson(300 if exposed else 30_000))
        rows += [
            AggregateRow(
                rollout, 0, window, exposed, "", "checkout.error", requests,
                int(rng.binomial(requests, 0.01)),
            ),
            AggregateRow(
                rollout, 0, window, exposed, "", "checkout.abandoned", requests,
                int(rng.binomial(requests, 0.05)),
            ),
            AggregateRow(
                rollout, 0, window, exposed, "", "checkout.latency", requests, 0,
                tuple(int(v) for v in rng.multinomial(requests, SHAPE)),
            ),
        ]  # fmt: skip
        for tenant in tenants if not exposed else ["rollwise"]:
            share = int(rng.poisson(requests / (1 if exposed else len(tenants))))
            failed = int(rng.binomial(share, 0.01))
            segment = f"tenant={tenant}"
            rows.append(
                AggregateRow(rollout, 0, window, exposed, segment, "checkout.error", share, failed)
            )
    return rows


def _build(store: Store, args: argparse.Namespace) -> tuple[RolloutRecord, dict[str, float]]:
    started = time.perf_counter()
    store.apply_flags((EXAMPLES / "flags.yaml").read_text(), "flags.yaml", "bench", START)
    record = store.start_rollout(None, "bench", START, text=(EXAMPLES / "plan.yaml").read_text())
    rng = np.random.default_rng(20261202)
    tenants = [f"tenant-{n:03d}" for n in range(args.tenants)]
    first = int(START.timestamp() // 60)
    windows = args.hours * 60 // WINDOW
    for index in range(windows):
        rows = _window_rows(record.id, first + WINDOW * index, tenants, rng)
        store.ingest(f"window-{index}", "bench", rows, [], START)
    aggregates = time.perf_counter() - started
    per_unit = timedelta(hours=args.hours) / max(1, args.units)
    for chunk in range(0, args.units, 10_000):
        units = [
            ExposureRow(record.id, f"unit-{n:07d}", 0, True, START + per_unit * n)
            for n in range(chunk, min(args.units, chunk + 10_000))
        ]
        store.ingest(f"units-{chunk}", "bench", [], units, START)
    return store.rollout(record.id), {
        "aggregates_s": round(aggregates, 1),
        "ledger_s": round(time.perf_counter() - started - aggregates, 1),
        "windows": windows,
    }


def _median(measure: Callable[[], object], before: Callable[[], None], repeat: int) -> float:
    spent = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        measure()
        spent.append(time.perf_counter() - started)
    return statistics.median(spent)


def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    store = Store.open(url)
    try:
        record, setup = _build(store, args)
        plan = store.parsed_plan(record.plan_id)
        rng = np.random.default_rng(7)
        tenants = [f"tenant-{n:03d}" for n in range(args.tenants)]
        following = itertools.count(setup["windows"])

        def new_window() -> None:
            """A batch for the next window, as the SDKs keep sending them."""
            index = next(following)
            window = int(START.timestamp() // 60) + WINDOW * index
            rows = _window_rows(record.id, window, tenants, rng)
            store.ingest(f"window-{index}", "bench", rows, [], START)

        def nothing() -> None:
            pass

        now = START + timedelta(hours=args.hours)
        controller = Controller(store)
        history = DecisionHistory()
        middle = f"unit-{args.units // 2:07d}"  # the units are unit-0000000 on (_build)
        first_followed = _median(lambda: store.followed_observations(record, plan), nothing, 1)
        rows = {
            "observations read whole (before: every poll, twice)": _median(
                lambda: store.observations(record, plan), new_window, args.repeat
            ),
            "observations followed, after a new window": _median(
                lambda: store.followed_observations(record, plan), new_window, args.repeat
            ),
            "observations followed, first read": first_followed,
            "ledger listed (before: the series, every poll)": _median(
                lambda: store.ledger(record.id), nothing, args.repeat
            ),
            "GET /ledger: the first page of 1,000 units": _median(
                lambda: store.ledger_page(record.id, after=None, limit=1000), nothing, args.repeat
            ),
            "GET /ledger: a page of 1,000 units from the middle": _median(
                lambda: store.ledger_page(record.id, after=middle, limit=1000), nothing, args.repeat
            ),
            "exposed units counted": _median(
                lambda: store.exposed_units(record.id, WINDOW), nothing, args.repeat
            ),
            "GET /rollouts/{id}: Controller.current": _median(
                lambda: controller.current(record, now), new_window, args.repeat
            ),
            "GET /series: rollout_series": _median(
                lambda: rollout_series(store, record, plan, now, history), new_window, args.repeat
            ),
        }
        with store.engine.connect() as connection:
            stored = connection.execute(
                sa.select(sa.func.count()).where(t.aggregates.c.rollout_id == record.id)
            ).scalar_one()
    finally:
        store.close()
    return {"setup": setup, "aggregate_rows": int(stored), "seconds": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--hours", type=int, default=48)
    parser.add_argument("--tenants", type=int, default=120)
    parser.add_argument("--units", type=int, default=250_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, Any] = {"arguments": vars(args), "databases": {}}
    for database in args.db.split(","):
        with fresh_database(database) as url:
            result = measure(url, args)
        results["databases"][database] = result
        seconds = result["seconds"]
        print(
            f"\n{database}: {args.hours} h of 15-minute windows ({result['aggregate_rows']:,} "
            f"aggregate rows, written in {result['setup']['aggregates_s']} s), "
            f"{args.units:,} exposed units; median of {args.repeat}"
        )
        print(f"  {'read':<56} {'seconds':>9}")
        for name, value in seconds.items():
            print(f"  {name:<56} {value:>9.4f}")
        whole = seconds["observations read whole (before: every poll, twice)"]
        followed = seconds["observations followed, after a new window"]
        listed = seconds["ledger listed (before: the series, every poll)"]
        counted = seconds["exposed units counted"]
        result["ratios"] = {
            "whole_over_followed": round(whole / followed, 1),
            "listed_over_counted": round(listed / counted, 1),
        }
        print(
            f"  observations: whole {whole / followed:.0f}x the followed read; "
            f"ledger: listed {listed / counted:.1f}x the count"
        )
    output = HERE / "results" / "rollout_page.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
