"""Outcomes are handed over by the application's thread and attributed by the SDK's own
(``_deferred.py``): nothing handed over is lost or counted twice, a dict is read as it was
when recorded, the window is the one it was recorded in, and memory stays bounded whether or
not the attributing thread keeps up (or exists)."""

from __future__ import annotations

import logging
import os
import sys
import time

import pytest

from rollwise import Client
from rollwise.sdk._aggregation import Aggregates
from rollwise.sdk._cut import AggregateKey, Tally
from rollwise.sdk._deferred import Deferred
from rollwise.sdk._throttle import Throttle
from tests.sdk.test_aggregation import NOW, StaticServer, snapshot


def _counted(server: StaticServer, metric: str = "checkout.error") -> dict[str, int]:
    """Requests per segment of ``metric`` in what the server received."""
    counts: dict[str, int] = {}
    for row in server.aggregates():
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


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_forked_child_attributes_in_its_own_threads() -> None:
    """The attributing thread does not survive ``fork``: in the child the queue knows it, and
    outcomes past ``wake_at`` are attributed where they are recorded."""
    server = StaticServer()
    with _live_client(server, [NOW]) as client:
        deferred = client._live.deferred  # type: ignore[union-attr]
        assert deferred.running
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            ok = not deferred.running
            for _ in range(5_000):
                client.record("checkout.error", {"tenant": "acme", "app_version": "2.5.0"})
            ok = ok and deferred.waiting < 1_000
            sys.stdout.flush()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert deferred.running
