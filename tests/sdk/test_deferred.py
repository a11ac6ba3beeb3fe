"""Outcomes are handed over by the application's thread and attributed by the SDK's own
(``_deferred.py``): nothing handed over is lost or counted twice, a dict is read as it was
when recorded, the window is the one it was recorded in, and memory stays bounded whether or
not the attributing thread keeps up (or exists)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

import pytest

from rollwise import Client
from rollwise.sdk._aggregation import Aggregates
from rollwise.sdk._cut import AggregateKey, Tally
from rollwise.sdk._deferred import Deferred
from rollwise.sdk._throttle import Throttle
from tests.sdk.test_aggregation import NOW, StaticServer, snapshot


def _counted(
    server: StaticServer, metric: str = "checkout.error", since: int = 0
) -> dict[str, int]:
    """Requests per segment of ``metric`` in what the server received (from its batch
    ``since`` on)."""
    counts: dict[str, int] = {}
    for row in (row for batch in server.batches[since:] for row in batch["aggregates"]):
        if row["metric"] == metric and not row["segment"].startswith("~"):
            counts[row["segment"]] = counts.get(row["segment"], 0) + row["requests"]
    return counts


def _whole(tallies: dict[AggregateKey, Tally]) -> list[Tally]:
    """The whole traffic's tallies of ``checkout.error`` (key: rollout, stage, window,
    exposed, segment, metric)."""
    return [t for key, t in tallies.items() if key[4] == "" and key[5] == "checkout.error"]


def _live_client(server: StaticServer, clock: list[float]) -> Client:
    return Client(
        "http://rollwise",
        "key",
        transport=server,
        startup_timeout=1.0,
        flush_interval=3600.0,
        clock=lambda: clock[0],
    )


def test_the_attributing_thread_takes_what_is_handed_over() -> None:
    """Without a flush, the thread empties the queue; a flush then sends every outcome once."""
    server = StaticServer()
    with _live_client(server, [NOW]) as client:
        deferred = client._live.deferred  # type: ignore[union-attr]
        for index in range(3_000):
            context = {"tenant": f"t{index % 7}", "app_version": "2.5.0"}
            client.record("checkout.error", context, failed=index % 10 == 0)
        deadline = time.monotonic() + 30
        while deferred.waiting and time.monotonic() < deadline:
            time.sleep(0.01)
        assert deferred.waiting == 0
        assert client.flush()
    counted = _counted(server)
    assert counted[""] == 3_000
    assert sum(count for segment, count in counted.items() if segment) == 3_000


def test_a_dict_and_the_window_are_those_of_the_moment_recorded() -> None:
    """The application may change its dict once ``record`` returns, and the clock may move to
    the next window before the outcome is attributed: neither changes what is counted."""
    server = StaticServer()
    clock = [NOW]
    with _live_client(server, clock) as client:
        deferred = client._live.deferred  # type: ignore[union-attr]
        deferred.stop(5.0)  # nothing attributes until the flush's cut
        context: dict[str, object] = {"tenant": "acme", "app_version": "2.5.0"}
        client.record("checkout.error", context, failed=True)
        assert deferred.waiting == 1
        context["tenant"] = "globex"
        clock[0] = NOW + 7_200  # two hours later: another window
        assert client.flush()
    rows = [row for row in server.aggregates() if row["metric"] == "checkout.error"]
    assert {row["segment"] for row in rows if not row["segment"].startswith("~")} == {
        "",
        "tenant=acme",
    }
    assert {row["window"] for row in rows if not row["segment"].startswith("~")} == {
        int(NOW // 3600) * 60
    }


def _bounded(deferred: Deferred, sums: Aggregates, count: int, most: int) -> tuple[int, int]:
    """Hand ``count`` failed outcomes over, checking that at most ``most`` ever wait; then the
    whole traffic's (requests, events) a cut counts."""
    live = snapshot()
    values = {"tenant": "acme", "app_version": "2.5.0"}
    for _ in range(count):
        deferred.put(live.rollouts, values, (("checkout.error", None, True),))
        assert deferred.waiting <= most
    whole = _whole(sums.cut().tallies)
    assert deferred.waiting == 0
    return sum(t.requests for t in whole), sum(t.events for t in whole)


def test_memory_stays_bounded_without_the_thread() -> None:
    """Without an attributing thread (never started, or lost in a fork) at most ``wake_at``
    outcomes wait; the rest are attributed by the recording thread, and a cut counts them
    all, once."""
    sums = Aggregates(clock=lambda: NOW, replicate_interval=0.0)
    deferred = Deferred(sums, Throttle(logging.getLogger("test")), wake_at=4, limit=8)
    assert _bounded(deferred, sums, 100, 4) == (100, 100)


def test_memory_stays_bounded_when_the_thread_falls_behind() -> None:
    """A running thread that cannot keep up: past ``limit`` the recording thread attributes
    its own outcomes, so no more than ``limit`` ever wait."""
    sums = Aggregates(clock=lambda: NOW, replicate_interval=0.0)
    deferred = Deferred(
        sums, Throttle(logging.getLogger("test")), wake_at=2, limit=16, interval=3600.0
    )
    deferred.running = True  # as if started, but never scheduled: the worst case
    assert _bounded(deferred, sums, 500, 16) == (500, 500)


def test_an_outcome_that_cannot_be_attributed_is_logged_and_the_rest_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    live = snapshot()
    sums = Aggregates(clock=lambda: NOW, replicate_interval=0.0)
    deferred = Deferred(sums, Throttle(logging.getLogger("rollwise.test")), wake_at=1_000)
    good = {"tenant": "acme", "app_version": "2.5.0"}
    bad = {"tenant": {"not": "text"}, "app_version": "2.5.0"}
    for values in (good, bad, good):
        deferred.put(live.rollouts, values, (("checkout.error", None, False),))
    with caplog.at_level(logging.WARNING):
        tallies = sums.cut().tallies
    whole = _whole(tallies)
    assert sum(t.requests for t in whole) == 2
    assert any("outcome not recorded" in record.getMessage() for record in caplog.records)


def test_a_flush_while_threads_record_does_not_wait_for_them() -> None:
    """Flushes go through while recording threads never pause, and once they stop every
    outcome is counted once."""
    server = StaticServer()
    recorded = [0, 0]
    stop = threading.Event()
    with _live_client(server, [NOW]) as client:

        def record(slot: int) -> None:
            context = {"tenant": "acme", "app_version": "2.5.0"}
            ends = time.monotonic() + 60  # a flush held back until then fails below
            while not stop.is_set() and time.monotonic() < ends:
                client.record("checkout.error", context, failed=False)
                recorded[slot] += 1

        threads = [threading.Thread(target=record, args=(slot,)) for slot in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        took = []
        for _ in range(5):
            started = time.monotonic()
            assert client.flush()
            took.append(time.monotonic() - started)
        stop.set()
        for thread in threads:
            thread.join()
        assert sum(took) < 30, f"flushes waited {took} s for the recording threads"
        assert client.flush()
    assert _counted(server)[""] == sum(recorded)


def test_a_cut_attributes_what_waited_when_it_began() -> None:
    """What recording threads hand over while a cut attributes is left for later: a cut's
    work is bounded by what waited when it began, however fast outcomes keep arriving."""
    live = snapshot()
    sums = Aggregates(clock=lambda: NOW, replicate_interval=0.0)
    deferred = Deferred(sums, Throttle(logging.getLogger("test")), wake_at=100_000)
    values = {"tenant": "acme", "app_version": "2.5.0"}
    outcome = (("checkout.error", None, False),)
    for _ in range(3_000):
        deferred.put(live.rollouts, values, outcome)
    adding, go_on = threading.Event(), threading.Event()
    add_all = sums.add_all

    def slow_add_all(*args: Any, **kwargs: Any) -> None:
        adding.set()
        go_on.wait(10)
        add_all(*args, **kwargs)

    sums.add_all = slow_add_all  # type: ignore[method-assign]
    cut = threading.Thread(target=deferred.attribute_waiting)
    cut.start()
    assert adding.wait(10)
    for _ in range(5_000):  # arriving while it attributes
        deferred.put(live.rollouts, values, outcome)
    go_on.set()
    cut.join(10)
    assert not cut.is_alive()
    assert deferred.waiting == 5_000
    sums.add_all = add_all  # type: ignore[method-assign]
    assert sum(t.requests for t in _whole(sums.cut().tallies)) == 8_000


def test_a_wake_up_is_not_missed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outcomes handed over while the thread attributes (here: while it waits for its turn,
    which the test holds) are attributed next, without waiting for its idle look (made a
    minute long here)."""
    monkeypatch.setattr("rollwise.sdk._deferred.IDLE", 60.0)
    server = StaticServer()
    context = {"tenant": "acme", "app_version": "2.5.0"}
    with _live_client(server, [NOW]) as client:
        deferred = client._live.deferred  # type: ignore[union-attr]
        for _ in range(3):
            with deferred._turn:
                client.record("checkout.error", context, failed=True)  # wakes the thread
                time.sleep(0.1)  # it gathers, then waits for the turn with one outcome seen
                for _ in range(1_000):
                    client.record("checkout.error", context, failed=True)
            deadline = time.monotonic() + 20
            while deferred.waiting and time.monotonic() < deadline:
                time.sleep(0.005)
            assert deferred.waiting == 0
        assert client.flush()
    assert _counted(server)[""] == 3 * 1_001


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_starts_empty_and_never_waits_on_the_parents_locks() -> None:
    """A child forked while the attributing thread held its lock and outcomes waited: its
    flush neither hangs nor sends the parent's outcomes, and outcomes it records past
    ``wake_at`` are attributed where they are recorded. The parent counts its own, once."""
    server = StaticServer()
    with _live_client(server, [NOW]) as client:
        deferred = client._live.deferred  # type: ignore[union-attr]
        holding, release = threading.Event(), threading.Event()

        def hold() -> None:  # as the attributing thread does, mid-slice
            with deferred._turn:
                holding.set()
                release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        assert holding.wait(10)
        for _ in range(50):
            client.record("checkout.error", {"tenant": "acme", "app_version": "2.5.0"}, failed=True)
        assert deferred.waiting == 50
        before = len(server.batches)
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            signal.alarm(20)  # a hang kills the child, and fails the test
            ok = not deferred.running and deferred.waiting == 0
            for _ in range(2_000):
                context = {"tenant": "globex", "app_version": "2.5.0"}
                client.record("checkout.error", context, failed=False)
            ok = ok and deferred.waiting < 1_000
            ok = ok and client.flush()
            ok = ok and _counted(server, since=before) == {"": 2_000, "tenant=globex": 2_000}
            os._exit(0 if ok else 1)
        release.set()
        holder.join()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert deferred.running
        assert client.flush()
    assert _counted(server) == {"": 50, "tenant=acme": 50}
