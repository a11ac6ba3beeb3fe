"""Attribution of outcomes and exposures to live rollouts, in memory, within bounds."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollwise import Client, Context, Reason, evaluate
from rollwise.core import InputError, context_values, ledger_unit, load_flags, unit_text
from rollwise.core._flagdump import flags_document
from rollwise.core.judgement import (
    LATENCY_BOUNDARIES_MS,
    LATENCY_BUCKETS,
    latency_bucket,
    replicate_of,
    replicate_segment,
)
from rollwise.sdk import Reply
from rollwise.sdk._aggregation import Aggregates
from rollwise.sdk._cut import segment_value
from rollwise.sdk._exposures import UNATTRIBUTABLE
from rollwise.sdk._outbox import Outbox, encode_batches
from rollwise.sdk._snapshot import LiveRollout, Snapshot, parse_snapshot
from rollwise.sdk._throttle import Throttle

FLAGS = Path(__file__).resolve().parents[2] / "examples" / "checkout" / "flags.yaml"
NOW = 1_795_000_000.0  # 2026-11-18T11:06:40Z
WINDOW = int(NOW // 3600) * 60
#: The replicate segment of the tenant "acme" (tests/sdk/test_replicates.py covers replicates).
ACME = replicate_segment(replicate_of("acme"))
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


def snapshot_document(rollouts: list[dict[str, Any]], *, killed: bool = False) -> dict[str, Any]:
    flags = flags_document(load_flags(FLAGS.read_text(encoding="utf-8"), str(FLAGS)))
    flags["flags"]["new-checkout"]["killed"] = killed
    return {"version": 12, "flags": flags, "rollouts": rollouts}


def snapshot(*, killed: bool = False, **changes: object) -> Snapshot:
    return parse_snapshot(json.dumps(snapshot_document([{**ROLLOUT, **changes}], killed=killed)))


def aggregates(max_keys: int = 50_000, max_exposures: int = 100_000) -> Aggregates:
    # Replicates cut at every cut (their own cadence is tested in test_replicates.py).
    return Aggregates(
        max_keys=max_keys, max_exposures=max_exposures, clock=lambda: NOW, replicate_interval=0.0
    )


def context(index: int, **attributes: object) -> dict[str, object]:
    return {
        "key": f"u-{index}",
        "tenant": f"tenant-{index % 97}",
        "app_version": "2.5.0",
        **attributes,
    }


def test_exposed_and_baseline_sides_match_core_evaluate() -> None:
    """Each outcome lands on the side core.evaluate serves the context, and nowhere else."""
    live = snapshot()
    rollout = live.rollouts[0]
    sums = aggregates()
    expected = {True: [0, 0], False: [0, 0]}
    for index in range(2000):
        ctx = context(index)
        failed = index % 7 == 0
        sums.add(live.rollouts, Context.of(ctx).values, (("checkout.error", None, failed),))
        served = evaluate(rollout.flag, ctx)
        assert served.reason not in UNATTRIBUTABLE
        side = expected[served.variant == "on"]
        side[0] += 1
        side[1] += failed
    tallies = sums.cut().tallies
    for exposed, (requests, events) in expected.items():
        tally = tallies[(3, 1, WINDOW, exposed, "", "checkout.error")]
        assert (tally.requests, tally.events, tally.histogram) == (requests, events, None)
    assert expected[True][0] > 0 and expected[False][0] > 0


def test_outcomes_are_also_counted_per_segment_and_samples_per_attribute() -> None:
    """Keys for the whole traffic, each `segments` attribute and `samples_per`, when present,
    and the unit's replicate."""
    sums = aggregates()
    live = snapshot(segments=["tenant", "region"], samples_per="tenant")
    ctx = {"key": "u", "tenant": "acme", "app_version": "2.5.0", "region": "", "tier": 3}
    sums.add(live.rollouts, Context.of(ctx).values, (("checkout.error", None, True),))
    assert sorted(key[4] for key in sums.cut().tallies) == ["", "tenant=acme", ACME]
    assert [segment_value(v) for v in ("eu", 3, True, 1.5, "", None, ("a",))] == [
        "eu",
        "3",
        "true",
        "1.5",
        None,
        None,
        None,
    ]


def test_latencies_land_in_the_judges_buckets() -> None:
    """Durations on, just above and beyond the edges fill the buckets latency_bucket names."""
    sums = aggregates()
    live = snapshot(segments=[], samples_per=None)
    durations = [0.0, 0.25, 0.2501, LATENCY_BOUNDARIES_MS[100], 12.5, 1e9, -1.0]
    for milliseconds in durations:
        sums.add(
            live.rollouts,
            {"tenant": "acme", "app_version": "2.5.0"},
            (("checkout.latency", milliseconds, None),),
        )
    (key, tally), *rest = sums.cut().tallies.items()
    assert not rest and key == (3, 1, WINDOW, True, "", "checkout.latency")
    assert tally.histogram is not None and len(tally.histogram) == LATENCY_BUCKETS
    expected = [0] * LATENCY_BUCKETS
    for milliseconds in durations:
        expected[latency_bucket(milliseconds)] += 1
    assert tally.histogram == expected
    assert (tally.requests, tally.events) == (len(durations), 0)
    assert tally.histogram[0] == 3 and tally.histogram[1] == 1 and tally.histogram[-1] == 1


def _windows_at(live: Snapshot, times: list[float]) -> list[int]:
    """The window labels of one outcome recorded at each clock time, in order."""
    clock = iter(times)
    sums = Aggregates(clock=lambda: next(clock), replicate_interval=0.0)
    values = Context.of({"tenant": "acme", "app_version": "2.5.0"}).values
    windows = []
    for _ in times:
        sums.add(live.rollouts, values, (("checkout.error", None, False),))
        (key,) = [key for key in sums.cut().tallies if key[4] == ""]
        windows.append(key[2])
    return windows


def test_windows_last_the_snapshots_window_minutes() -> None:
    """With window_minutes 15, outcomes 20 minutes apart (11:06:40, 11:26:40) land in two
    windows starting on quarter hours (11:00, 11:15), each holding its outcome's time."""
    later = NOW + 20 * 60
    live = snapshot(window_minutes=15)
    assert live.rollouts[0].window_minutes == 15
    first, second = _windows_at(live, [NOW, later])
    assert first != second
    assert first % 15 == 0 and second % 15 == 0
    assert (first, second) == (WINDOW, WINDOW + 15)
    for window, at in ((first, NOW), (second, later)):
        assert window * 60 <= at < (window + 15) * 60


def test_a_snapshot_without_window_minutes_aggregates_hourly() -> None:
    """A snapshot from an older server (no window_minutes) keeps hourly windows: the same two
    times, 20 minutes apart within one hour, land in the one window of that hour."""
    live = snapshot()
    assert live.rollouts[0].window_minutes == 60
    assert _windows_at(live, [NOW, NOW + 20 * 60]) == [WINDOW, WINDOW]


@pytest.mark.parametrize("value", [7, "15", 0, 120, -15, True, 15.0])
def test_window_minutes_must_divide_an_hour(value: object) -> None:
    """A window_minutes that is not an integer dividing 60 refuses the snapshot, naming the
    field's path."""
    with pytest.raises(InputError) as refused:
        snapshot(window_minutes=value)
    assert refused.value.path == "rollouts[0].window_minutes"
    assert "rollouts[0].window_minutes" in str(refused.value)


@pytest.mark.parametrize(
    ("killed", "ctx", "reason"),
    [
        (True, {"tenant": "acme", "app_version": "2.5.0"}, Reason.KILLED),
        (False, {"key": "u", "app_version": "2.5.0"}, Reason.UNIT_MISSING),
        (False, {"tenant": "acme", "app_version": "2.3.0"}, Reason.VERSION_BELOW_MINIMUM),
    ],
)
def test_contexts_the_rollout_says_nothing_about_are_skipped(
    killed: bool, ctx: dict[str, object], reason: Reason
) -> None:
    """Killed, unit missing and version below minimum count for neither side, nor the ledger."""
    sums = aggregates()
    live = snapshot(killed=killed)
    rollout = live.rollouts[0]
    values = Context.of(ctx).values
    resolution = rollout.flag.program.run(values)
    assert resolution.reason is reason
    sums.add(live.rollouts, values, (("checkout.error", None, True),))
    sums.expose(rollout, resolution, values)
    assert not sums.cut()


def test_an_unreadable_context_is_logged_and_not_counted(caplog: pytest.LogCaptureFixture) -> None:
    """A context the SDK cannot read where the evaluation reads it (the tenant, once the app
    version passes the flag's minimum) is skipped with a warning; nothing raises."""
    with Client("http://rollwise", "key", transport=StaticServer(), startup_timeout=1.0) as client:
        context = {"tenant": {"not": "text"}, "app_version": "2.5.0"}
        client.record("checkout.error", context, failed=True)
        assert client.stats().pending_batches == 0
        assert client.flush()
    assert any("checkout.error" in record.getMessage() for record in caplog.records)


def test_observe_counts_a_failure_and_reraises_the_same_exception() -> None:
    """An exception inside observe() is counted as an error and re-raised as the same object."""
    server = StaticServer()
    problem = LookupError("payment provider down")
    ctx = {"key": "u", "tenant": "acme", "app_version": "2.5.0"}
    with Client("http://rollwise", "key", transport=server, startup_timeout=1.0) as client:
        with pytest.raises(LookupError) as raised, client.observe("checkout", ctx):
            raise problem
        with client.observe("checkout", ctx):
            pass
        client.flush()
    assert raised.value is problem
    rows = {(row["segment"], row["metric"]): row for row in server.aggregates()}
    assert (rows[("", "checkout.error")]["requests"], rows[("", "checkout.error")]["events"]) == (
        2,
        1,
    )
    assert rows[("", "checkout.latency")]["requests"] == 2
    assert sum(rows[("", "checkout.latency")]["buckets"][1::2]) == 2
    assert rows[("tenant=acme", "checkout.error")]["events"] == 1


def test_record_and_track_feed_histograms_and_rates() -> None:
    """record(value=…) fills a histogram, record(failed=…) and track() count a rate."""
    server = StaticServer({**ROLLOUT, "metrics": {"checkout.latency": "latency", "paid": "rate"}})
    ctx = Context("u", {"tenant": "acme", "app_version": "2.5.0"})
    with Client("http://rollwise", "key", transport=server, startup_timeout=1.0) as client:
        client.record("checkout.latency", ctx, value=12.5)
        client.record("checkout.latency", ctx)  # nothing to record
        client.track("paid", ctx)
        client.track("paid", ctx, happened=False)
        client.record("unguarded.metric", ctx, failed=True)
        client.flush()
    rows = {row["metric"]: row for row in server.aggregates() if row["segment"] == ""}
    assert set(rows) == {"checkout.latency", "paid"}
    assert rows["checkout.latency"]["buckets"] == [latency_bucket(12.5), 1]
    assert (rows["paid"]["requests"], rows["paid"]["events"]) == (2, 1)


def test_keys_are_bounded_per_flush_period_and_drops_are_counted() -> None:
    """Past max_keys, outcomes needing a new key are dropped and counted; a cut frees room."""
    sums = aggregates(max_keys=5)
    live = snapshot(segments=["region"], samples_per=None)

    def add(index: int) -> None:
        values = Context.of(
            {"tenant": "acme", "app_version": "2.5.0", "region": f"r-{index}"}
        ).values
        sums.add(live.rollouts, values, (("checkout.error", None, False),))

    for index in range(20):
        add(index)
    first = sums.cut().tallies
    assert len(first) == 5
    assert first[(3, 1, WINDOW, True, "", "checkout.error")].requests == 20
    assert first[(3, 1, 0, True, ACME, "checkout.error")].requests == 20
    assert sorted(key[4] for key in first)[1:] == [
        "region=r-0",
        "region=r-1",
        "region=r-2",
        ACME,
    ]
    assert sums.outcomes_dropped == 17
    add(50)
    assert len(sums.cut().tallies) == 3


def test_concurrent_recording_and_cuts_lose_and_double_nothing() -> None:
    """Threads recording while batches are cut: every outcome lands in exactly one cut; finished threads' shards are let go."""
    sums = aggregates()
    live = snapshot(segments=[], samples_per=None)
    values = Context.of({"tenant": "acme", "app_version": "2.5.0"}).values
    cuts = []

    def work() -> None:
        for index in range(3000):
            sums.add(
                live.rollouts, values, (("checkout.latency", float(index % 50), index % 3 == 0),)
            )

    workers = [threading.Thread(target=work) for _ in range(4)]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        cuts.append(sums.cut())
    for worker in workers:
        worker.join()
    cuts.append(sums.cut())
    tallies = [cut.tallies[(3, 1, WINDOW, True, "", "checkout.latency")] for cut in cuts if cut]
    assert sum(t.requests for t in tallies) == 12_000
    assert sum(t.events for t in tallies) == 4 * 1000
    assert sum(sum(t.histogram or []) for t in tallies) == 12_000
    assert sums._shards == []


def test_exposures_are_remembered_once_and_bounded() -> None:
    """The same (rollout, unit, stage, side) is shipped once; past the bound, new ones are counted."""
    sums = aggregates(max_exposures=3)
    rollout = snapshot().rollouts[0]
    for index in [1, 1, 2, 2, 3, 4, 5, 1]:
        values = Context.of(context(index)).values
        sums.expose(rollout, rollout.flag.program.run(values), values)
    cut = sums.cut()
    assert [key[1] for key, _ in cut.exposures] == ["tenant-1", "tenant-2", "tenant-3"]
    assert all(at == NOW for _, at in cut.exposures)
    assert sums.exposures_dropped == 2 and sums.remembered_exposures == 3


def test_ledger_units_are_hashed_unless_plain_is_asked_for() -> None:
    """Hashed: sha256("<rollout>:<unit>")[:32]; plain: the value, unless too long to store."""
    assert ledger_unit(3, "acme", hashed=True) == sha256(b"3:acme").hexdigest()[:32]
    assert ledger_unit(3, "acme", hashed=False) == "acme"
    assert (
        ledger_unit(3, "x" * 65, hashed=False)
        == sha256(("3:" + "x" * 65).encode()).hexdigest()[:32]
    )


def test_a_cut_encodes_to_the_protocols_batch() -> None:
    """A batch carries the window in minutes, segments, histograms only for latencies, and exposures with UTC times."""
    sums = aggregates()
    live = snapshot(segments=[], samples_per=None)
    rollout = live.rollouts[0]
    values = Context.of({"tenant": "acme", "app_version": "2.5.0"}).values
    sums.add(
        live.rollouts, values, (("checkout.latency", 3.0, None), ("checkout.error", None, True))
    )
    sums.expose(rollout, rollout.flag.program.run(values), values)
    (batch,) = encode_batches(
        sums.cut(), sdk="rollwise-python/test", hashed=False, new_id=lambda: "batch-0001"
    )
    document = json.loads(batch.body)
    assert batch.id == document["batch"] == "batch-0001"
    assert document["sdk"] == "rollwise-python/test"
    latency, error, replicate = document["aggregates"]
    assert error == {
        "rollout": 3,
        "stage": 1,
        "window": WINDOW,
        "exposed": True,
        "segment": "",
        "metric": "checkout.error",
        "requests": 1,
        "events": 1,
    }
    assert replicate == {**error, "window": 0, "segment": ACME}
    assert latency["buckets"] == [latency_bucket(3.0), 1]
    assert document["exposures"] == [
        {"rollout": 3, "unit": "acme", "stage": 1, "exposed": True, "at": "2026-11-18T11:06:40Z"}
    ]
    assert encode_batches(sums.cut(), sdk="x", hashed=True) == []


def test_pending_batches_are_bounded_oldest_dropped_first() -> None:
    """With the server down, at most max_pending batches wait; the oldest go first, counted."""
    sums = aggregates()
    live = snapshot()
    down = StaticServer(up=False)
    outbox = Outbox(down, sums, sdk="test", hashed=True, max_pending=2, log=Throttle())
    for index in range(5):
        sums.add(
            live.rollouts, Context.of(context(index)).values, (("checkout.error", None, False),)
        )
        assert outbox.ship() is False
    assert (outbox.pending, outbox.dropped, outbox.sent) == (2, 3, 0)
    down.up = True
    assert outbox.ship() is True
    assert (outbox.pending, outbox.sent) == (0, 2)
    # The two newest batches survived: contexts 3 and 4.
    assert sorted(
        row["segment"] for row in down.aggregates() if row["segment"].startswith("tenant=")
    ) == ["tenant=tenant-3", "tenant=tenant-4"]


def test_snapshot_rollouts_must_name_known_flags_and_variants() -> None:
    """A snapshot whose rollout names a missing flag or variant is refused whole."""
    for change, message in [
        ({"flag": "nope"}, "lacks"),
        ({"variant": "maybe"}, "no variant"),
        ({"id": "3"}, "integer"),
    ]:
        with pytest.raises(Exception, match=message):
            parse_snapshot(json.dumps(snapshot_document([{**ROLLOUT, **change}])))
    shared = snapshot()
    assert shared.guarding["checkout.error"] is shared.guarding["checkout.latency"]
    assert isinstance(shared.exposing["new-checkout"][0], LiveRollout)


class StaticServer:
    """A server that always serves one snapshot and keeps the batches it is sent."""

    def __init__(self, rollout: dict[str, Any] | None = None, *, up: bool = True) -> None:
        self.body = json.dumps(snapshot_document([rollout or ROLLOUT])).encode()
        self.up = up
        self.batches: list[dict[str, Any]] = []

    def get_snapshot(self, etag: str | None) -> Reply:
        if not self.up:
            raise ConnectionError("the server is down")
        return Reply(200, self.body, '"12"')

    def stream(self) -> Iterator[str]:
        raise ConnectionError("no stream here")

    def post_events(self, body: bytes) -> Reply:
        if not self.up:
            raise ConnectionError("the server is down")
        self.batches.append(json.loads(body))
        return Reply(202, b'{"applied": true}')

    def close(self) -> None:
        pass

    def aggregates(self) -> list[dict[str, Any]]:
        return [row for batch in self.batches for row in batch["aggregates"]]


class _Text(str):
    """Text of a subclass of ``str``, as an application's own string type may be."""


def test_a_plain_dict_is_attributed_as_its_context() -> None:
    """Exposures and outcomes of a dict read in place (whose user is its key) are exactly
    those of the Context it would make, with a unit and a split on ``user``."""
    live = snapshot(flag="search-v2", variant="treatment", unit="user", segments=["user"])
    rollout = live.rollouts[0]
    by_dict, by_context = aggregates(), aggregates()
    for index in range(300):
        ctx: dict[str, object] = {"key": f"u-{index}", "region": "eu-west", "tier": "gold"}
        if index % 5 == 0:
            ctx["user"] = f"other-{index}"
        if index % 7 == 0:
            ctx["key"] = index
        elif index % 11 == 0:
            ctx["key"] = _Text(f"u-{index}")  # a str subclass: its text, as Context.of has it
        for sums, values in ((by_dict, ctx), (by_context, Context.of(ctx).values)):
            sums.expose(rollout, rollout.flag.program.run(values), values)
            sums.add(live.rollouts, values, (("checkout.latency", 12.5, None),))
    dict_cut, context_cut = by_dict.cut(), by_context.cut()
    assert dict_cut.exposures == context_cut.exposures
    assert len(dict_cut.exposures) == 300
    assert {key: (t.requests, t.events, t.histogram) for key, t in dict_cut.tallies.items()} == {
        key: (t.requests, t.events, t.histogram) for key, t in context_cut.tallies.items()
    }
    assert len(dict_cut.tallies) > 300


def _reference_add(
    tallies: dict[Any, list[Any]],
    rollouts: tuple[LiveRollout, ...],
    values: dict[str, object],
    outcomes: tuple[tuple[str, float | None, bool | None], ...],
    max_keys: int,
) -> int:
    """Outcomes counted into every key one by one, as the SDK once did (a rate outcome's
    replicate last); returns the drops."""
    dropped = 0
    for rollout in rollouts:
        resolution = rollout.flag.program.run(Context.of(values).values)
        if resolution.reason in UNATTRIBUTABLE:
            continue
        segments = [""]
        for attribute in rollout.split_by:
            text = segment_value(Context.of(values).get(attribute))
            if text:
                segments.append(f"{attribute}={text}")
        exposed = resolution.variant == rollout.variant
        unit = unit_text(Context.of(values).get(rollout.unit))
        for metric, milliseconds, failed in outcomes:
            if metric not in rollout.metrics:
                continue
            keys = [(rollout.id, rollout.stage, WINDOW, exposed, s, metric) for s in segments]
            if failed is not None and unit is not None:
                replicate = replicate_segment(replicate_of(unit))
                keys.append((rollout.id, rollout.stage, 0, exposed, replicate, metric))
            for key in keys:
                if key not in tallies:
                    if len(tallies) >= max_keys:
                        dropped += 1
                        continue
                    tallies[key] = [0, 0, None]
                tally = tallies[key]
                tally[0] += 1
                tally[1] += bool(failed)
                if milliseconds is not None and key[2] != 0:
                    if tally[2] is None:
                        tally[2] = [0] * LATENCY_BUCKETS
                    tally[2][latency_bucket(milliseconds)] += 1
    return dropped


OUTCOMES = st.sampled_from(
    [
        (("checkout.latency", 12.5, None), ("checkout.error", None, True)),
        (("checkout.latency", 480.0, None), ("checkout.error", None, False)),
        (("checkout.error", None, True),),
        (("checkout.latency", 0.2, None),),
        (("checkout.abandoned", None, True),),
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 40),
            st.sampled_from(["web", "mobile", "", 3, None]),
            st.sampled_from(["eu-west", "us-1", True]),
            OUTCOMES,
        ),
        max_size=120,
    ),
    st.integers(1, 60),
)
def test_counting_by_rows_sums_to_counting_by_keys(
    calls: list[tuple[int, object, object, tuple[Any, ...]]], max_keys: int
) -> None:
    """Whatever is recorded, the cut holds the tallies, and drops, of counting each outcome
    into each of its keys, with at most max_keys keys."""
    live = snapshot(segments=["tenant", "region"], samples_per="traffic_type")
    sums = aggregates(max_keys=max_keys)
    expected: dict[Any, list[Any]] = {}
    dropped = 0
    for index, traffic, region, outcomes in calls:
        ctx = context(index, traffic_type=traffic, region=region)
        sums.add(live.rollouts, context_values(ctx), outcomes)
        dropped += _reference_add(expected, live.rollouts, ctx, outcomes, max_keys)
    cut = sums.cut()
    assert {k: [t.requests, t.events, t.histogram] for k, t in cut.tallies.items()} == expected
    assert sums.outcomes_dropped == dropped
