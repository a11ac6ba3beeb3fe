#!/usr/bin/env python3
"""Controller tick time with many concurrent rollouts on SQLite (target: 1,000 in under 1 s).

Builds a store with N flags, each with a running rollout whose stage has a day of hourly
aggregates (24 strata, whole traffic and 5 tenants) — enough evidence to judge, not enough to
move — then times full controller ticks. Between ticks, like SDKs that flush every 5 s under a
1-s tick, a fifth of the rollouts receive new data (through the real ingestion path), so those
must be read and judged afresh. Prints a table and writes benchmarks/results/controller.json.

    python benchmarks/controller.py [--rollouts 1000] [--ticks 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rollwise.control import Controller
from rollwise.store import AggregateRow, Store
from rollwise.store._schema import aggregates

START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)
PLAN = """
flag: {flag}
unit: user
max_stage_duration: 30d
guards:
  - {{metric: errors, kind: rate, tolerance: 10%, by: [tenant], max_segments: 5}}
  - {{metric: latency, kind: latency, tolerance: 10%}}
stages:
  - {{name: canary, audience: {{percent: 5}}, bake: 2d, min_samples: 1000}}
  - {{name: all, audience: {{percent: 100}}, holdback: 2%}}
"""


def build(store: Store, rollouts: int) -> None:
    """N flags with a running rollout each; aggregates are bulk-inserted (the ingestion path is
    measured elsewhere)."""
    flags = "flags:\n" + "".join(f"  f{i}: {{variants: [off, on]}}\n" for i in range(rollouts))
    store.apply_flags(flags, "bench", "bench", START)
    window0 = int(START.timestamp() // 60)
    for i in range(rollouts):
        plan = store.save_plan(PLAN.format(flag=f"f{i}"), "bench", "bench", START).record
        rollout = store.start_rollout(plan.id, "bench", START)
        rows = []
        for hour in range(24):
            window = window0 + 60 * hour
            for segment, share in [("", 1.0)] + [(f"tenant=t{t}", 0.2) for t in range(5)]:
                for exposed, requests in ((True, 500), (False, 9500)):
                    rows.append(
                        {
                            "rollout_id": rollout.id,
                            "stage": 0,
                            "window": window,
                            "exposed": exposed,
                            "segment": segment,
                            "metric": "errors",
                            "requests": int(requests * share),
                            "events": int(requests * share / 100),
                            "histogram": None,
                        }
                    )
        with store.engine.begin() as connection:
            connection.execute(aggregates.insert(), rows)


def churn(store: Store, rollouts: int, tick: int, window: int) -> None:
    """New aggregates for a fifth of the rollouts (a different fifth each tick)."""
    rows = [
        AggregateRow(rollout_id, 0, window, exposed, segment, "errors", requests, requests // 100)
        for rollout_id in range(1 + tick % 5, rollouts + 1, 5)
        for segment in ["", *(f"tenant=t{t}" for t in range(5))]
        for exposed, requests in ((True, 100), (False, 1900))
    ]
    store.ingest(f"churn-{tick}", "bench", rows, [], START)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--ticks", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        store = Store.open(f"sqlite:///{Path(directory) / 'bench.db'}")
        started = time.perf_counter()
        build(store, args.rollouts)
        built = time.perf_counter() - started
        controller = Controller(store)
        durations = []
        window = int(START.timestamp() // 60) + 60 * 24
        for tick in range(args.ticks):
            if tick:
                churn(store, args.rollouts, tick, window)
            now = START + timedelta(hours=25, minutes=tick)
            begin = time.perf_counter()
            outcomes = controller.tick(now)
            durations.append(time.perf_counter() - begin)
            assert len(outcomes) == args.rollouts, len(outcomes)
        store.close()
    steady = durations[1:] or durations
    best, worst = min(steady), max(steady)
    print(
        f"Controller ticks over {args.rollouts:,} running rollouts on SQLite (setup {built:.1f}s)"
    )
    print(f"  {'tick':<6}{'seconds':>10}{'per rollout (ms)':>20}  data")
    for index, seconds in enumerate(durations):
        data = "first read, every hold kept" if index == 0 else "a fifth of the rollouts changed"
        print(f"  {index:<6}{seconds:>10.3f}{seconds / args.rollouts * 1000:>20.2f}  {data}")
    verdict = "met" if worst < 1.0 else f"MISSED by {worst - 1.0:.2f}s"
    print(f"  target: ticks after the first under 1 s for 1,000 rollouts: {verdict}")
    output = Path(__file__).resolve().parent / "results" / "controller.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "rollouts": args.rollouts,
                "ticks_s": durations,
                "best_s": best,
                "worst_s": worst,
                "target_met": worst < 1.0,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
