#!/usr/bin/env python3
"""What recording outcomes costs the application: µs per observe / record / track, outcomes/s.

A live client with one rollout guarding the metrics (split by tenant and by traffic type, as the
example plan does), fed by a no-op transport, so this measures the SDK and not the network:
attribution (re-evaluating the rollout's flag for the context), key building, the lock and the
in-memory aggregates. 10,000 contexts over 200 tenants, each call measured on pre-built
``Context`` objects and on the same contexts as plain dicts (what most applications pass); a
background flush every second cuts and encodes batches meanwhile, as in production. Also
measured: the same calls with no rollout guarding the metric (the cost of leaving the
instrumentation in), and outcomes/s from 4 threads recording at once (one process: the GIL
makes this the process's rate).

Prints a table and writes JSON to benchmarks/results/ingestion.json.

    python benchmarks/ingestion.py [--seconds 1.0] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rollwise import Client, Context
from rollwise.core import load_flags
from rollwise.core._flagdump import flags_document
from rollwise.sdk import Reply

HERE = Path(__file__).resolve().parent
FLAGS = HERE.parent / "examples" / "checkout" / "flags.yaml"

#: The issues' targets: outcomes per second, µs per observe/record on the application's thread
#: (issue 10), and µs per observe/record with a plain dict context (issue 12). The µs targets
#: are judged on the paced measurement (``paced``): the time a call adds to a request.
TARGET_OUTCOMES_PER_S = 50_000
TARGET_US_PER_CALL = 5.0
TARGET_US_PER_DICT_CALL = 2.0
#: Pacing of ``paced``: this many calls, then a sleep this long (about 30,000 calls a second).
PACE_CALLS = 10
PACE_SLEEP = 0.0002

ROLLOUT = {
    "id": 3,
    "flag": "new-checkout",
    "stage": 1,
    "variant": "on",
    "unit": "tenant",
    "metrics": {"checkout.error": "rate", "checkout.latency": "latency"},
    "segments": ["tenant"],
    "samples_per": "traffic_type",
}


class NoopTransport:
    """A server that answers instantly: the snapshot, an idle stream, 202 to every batch."""

    def __init__(self, rollouts: list[dict[str, Any]]) -> None:
        flags = flags_document(load_flags(FLAGS.read_text(encoding="utf-8"), str(FLAGS)))
        self._body = json.dumps({"version": 1, "flags": flags, "rollouts": rollouts}).encode()
        self._closed = threading.Event()
        self.batches = 0

    def get_snapshot(self, etag: str | None) -> Reply:
        return Reply(304) if etag == '"1"' else Reply(200, self._body, '"1"')

    def stream(self) -> Iterator[str]:
        yield from ("event: snapshot", 'data: {"version": 1}', "")
        while not self._closed.wait(0.5):
            yield ": ping"

    def post_events(self, body: bytes) -> Reply:
        self.batches += 1
        return Reply(202, b'{"applied": true}')

    def close(self) -> None:
        self._closed.set()


def contexts() -> list[Context]:
    traffic = ("web", "mobile", "api")
    return [
        Context(
            f"u-{index}",
            {
                "tenant": f"tenant-{index % 200}",
                "app_version": "2.5.0",
                "traffic_type": traffic[index % 3],
            },
        )
        for index in range(10_000)
    ]


def plain(pool: list[Context]) -> list[dict[str, object]]:
    """The same contexts as the dicts an application would pass."""
    return [{"key": context.key, **context.attributes} for context in pool]


def best_rate(call: Callable[[Any], None], pool: list[Any], seconds: float, repeats: int) -> float:
    """Calls per second, best of ``repeats`` runs of about ``seconds`` each."""
    best = 0.0
    for _ in range(repeats):
        done, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            for context in pool:
                call(context)
            done += len(pool)
        best = max(best, done / elapsed)
    return best


def paced(call: Callable[[Any], None], pool: list[Any], seconds: float) -> dict[str, float]:
    """The application thread's time inside each call when it does something else between
    calls, as a request handler waits on I/O (here: ``PACE_CALLS`` calls, then a sleep of
    ``PACE_SLEEP`` seconds, which lets the SDK's threads run): mean, p50 and p99 of the calls,
    µs; the calls' rate; and the process's CPU per call, µs (every thread: what the SDK's own
    threads spend attributing and flushing is counted here)."""
    spent: list[float] = []
    clock = time.perf_counter
    cpu, ends = time.process_time(), clock() + seconds
    index = 0
    started = clock()
    while clock() < ends:
        for _ in range(PACE_CALLS):
            context = pool[index % len(pool)]
            index += 1
            before = clock()
            call(context)
            spent.append(clock() - before)
        time.sleep(PACE_SLEEP)
    elapsed, cpu = clock() - started, time.process_time() - cpu
    spent.sort()
    return {
        "mean_us": 1e6 * sum(spent) / len(spent),
        "p50_us": 1e6 * spent[len(spent) // 2],
        "p99_us": 1e6 * spent[int(len(spent) * 0.99)],
        "calls_per_s": len(spent) / elapsed,
        "process_cpu_us_per_call": 1e6 * cpu / len(spent),
    }


def measure(rollouts: list[dict[str, Any]], seconds: float, repeats: int) -> dict[str, float]:
    transport = NoopTransport(rollouts)
    client = Client("http://noop", "sdk-key", transport=transport, flush_interval=1.0)
    pools: dict[str, list[Any]] = {"": contexts()}
    pools["_dict"] = plain(pools[""])

    def observe(context: Context | dict[str, object]) -> None:
        with client.observe("checkout", context):
            pass

    def record(context: Context | dict[str, object]) -> None:
        client.record("checkout.latency", context, value=12.5)

    def track(context: Context | dict[str, object]) -> None:
        client.track("checkout.error", context, happened=False)

    def enabled(context: Context | dict[str, object]) -> None:
        client.enabled("new-checkout", context)

    rates: dict[str, float] = {}
    for name, call in (
        ("observe", observe),
        ("record", record),
        ("track", track),
        ("enabled", enabled),
    ):
        # Pre-built and dict runs of one call alternate, so a change in load hits both.
        for suffix, pool in pools.items():
            rates[name + suffix] = best_rate(call, pool, seconds, repeats)
    threaded = threaded_rate(record, pools[""], seconds, threads=4)
    pacing = {
        f"{name}{suffix}": paced(call, pool, 2 * seconds)
        for name, call in (("observe", observe), ("record", record))
        for suffix, pool in pools.items()
    }
    client.close()
    stats = client.stats()
    return {
        **{f"{name}_us": 1e6 / rate for name, rate in rates.items()},
        "observes_per_s": rates["observe"],
        "records_per_s": rates["record"],
        "records_per_s_dict": rates["record_dict"],
        "records_per_s_4_threads": threaded,
        **{
            f"paced_{name}_{figure}": value
            for name, figures in pacing.items()
            for figure, value in figures.items()
        },
        "batches_sent": stats.batches_sent,
        "outcomes_dropped": stats.outcomes_dropped,
    }


def threaded_rate(
    call: Callable[[Any], None], pool: list[Any], seconds: float, threads: int
) -> float:
    """Calls per second of ``threads`` threads recording at once, in total."""
    counts = [0] * threads
    start = threading.Barrier(threads + 1)

    def work(slot: int) -> None:
        start.wait()
        ends = time.perf_counter() + seconds
        while time.perf_counter() < ends:
            for context in pool[:1000]:
                call(context)
            counts[slot] += 1000

    workers = [threading.Thread(target=work, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    start.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description="rollwise SDK: the cost of recording outcomes")
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=str(HERE / "results" / "ingestion.json"))
    args = parser.parse_args()
    guarded = measure([ROLLOUT], args.seconds, args.repeats)
    unguarded = measure([], args.seconds, args.repeats)

    rows = [
        (f"{label}{kind}", guarded[f"{name}{suffix}_us"], unguarded[f"{name}{suffix}_us"])
        for name, label in (
            ("observe", "observe (latency + error)"),
            ("record", "record (latency)"),
            ("track", "track (rate)"),
            ("enabled", "enabled (+ ledger)"),
        )
        for suffix, kind in (("", ", Context"), ("_dict", ", dict"))
    ]
    print(
        "Time per call, one thread calling in a loop that does nothing else (CPU-bound: the "
        "SDK's threads take the GIL from it), best of the repeats (lower is better)"
    )
    print(f"  {'call':<36}{'1 rollout guards':>18}{'no rollout':>13}")
    for name, ours, bare in rows:
        print(f"  {name:<36}{ours:>16.2f}µs{bare:>11.2f}µs")
    print(
        "Application-thread time per call at a paced rate (10 calls, then 0.2 ms asleep, as a "
        "handler waits on I/O), 1 rollout guards"
    )
    print(f"  {'call':<36}{'mean':>9}{'p50':>9}{'p99':>9}{'calls/s':>10}{'CPU/call':>11}")
    for name, label in (("observe", "observe (latency + error)"), ("record", "record (latency)")):
        for suffix, kind in (("", ", Context"), ("_dict", ", dict")):
            key = f"paced_{name}{suffix}_"
            print(
                f"  {label + kind:<36}{guarded[key + 'mean_us']:>7.2f}µs"
                f"{guarded[key + 'p50_us']:>7.2f}µs{guarded[key + 'p99_us']:>7.2f}µs"
                f"{guarded[key + 'calls_per_s']:>10,.0f}"
                f"{guarded[key + 'process_cpu_us_per_call']:>9.2f}µs"
            )
    print("  (CPU/call: the whole process's CPU, the SDK's threads included, per call)")
    per_s = guarded["records_per_s"]
    per_call = max(guarded["paced_observe_mean_us"], guarded["paced_record_mean_us"])
    per_dict_call = max(guarded["paced_observe_dict_mean_us"], guarded["paced_record_dict_mean_us"])
    targets = {
        "outcomes_per_s": {"target": TARGET_OUTCOMES_PER_S, "measured": round(per_s)},
        "us_per_observe_or_record": {"target": TARGET_US_PER_CALL, "measured": round(per_call, 2)},
        "us_per_observe_or_record_dict": {
            "target": TARGET_US_PER_DICT_CALL,
            "measured": round(per_dict_call, 2),
        },
    }
    met_rate = per_s >= TARGET_OUTCOMES_PER_S
    met_cost = per_call <= TARGET_US_PER_CALL
    met_dict = per_dict_call <= TARGET_US_PER_DICT_CALL
    print(
        f"Outcomes recorded per second: {per_s:,.0f} (one thread), "
        f"{guarded['records_per_s_4_threads']:,.0f} (4 threads) — target "
        f">= {TARGET_OUTCOMES_PER_S:,}: {'met' if met_rate else 'MISSED'}"
    )
    print(
        f"Worst of observe/record, paced mean: {per_call:.2f}µs — target <= "
        f"{TARGET_US_PER_CALL:g}µs: "
        f"{'met' if met_cost else 'MISSED'}"
    )
    print(
        f"Worst of observe/record with a plain dict, paced mean: {per_dict_call:.2f}µs — "
        f"target <= "
        f"{TARGET_US_PER_DICT_CALL:g}µs: {'met' if met_dict else 'MISSED'}"
    )
    document = {
        "benchmark": "ingestion",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "seconds": args.seconds,
        "repeats": args.repeats,
        "one_rollout_guards": {k: round(v, 3) for k, v in guarded.items()},
        "no_rollout": {k: round(v, 3) for k, v in unguarded.items()},
        "targets": targets,
        "targets_met": met_rate and met_cost and met_dict,
    }
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
