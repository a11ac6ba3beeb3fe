"""The live client against an in-memory server: snapshots, the stream, the cache, batches."""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollwise import Client, Reason
from rollwise.core import load_flags
from rollwise.core._flagdump import flags_document
from rollwise.sdk import Reply, StreamRefused
from rollwise.sdk._http import HttpTransport
from rollwise.sdk._stream import Announcement, Event, read_announcement, read_events
from rollwise.sdk._sync import SnapshotFollower
from rollwise.sdk._throttle import Throttle

FLAGS = Path(__file__).resolve().parents[2] / "examples" / "checkout" / "flags.yaml"
ROLLOUT = {
    "id": 3,
    "flag": "new-checkout",
    "stage": 1,
    "variant": "on",
    "unit": "tenant",
    "metrics": {"checkout.error": "rate", "checkout.latency": "latency"},
    "segments": ["tenant"],
    "samples_per": None,
}
ACME = {"key": "u-1", "tenant": "acme", "app_version": "2.5.0"}
URL = "http://rollwise.test"


def document(version: int = 12, *, killed: bool = False) -> dict[str, Any]:
    flags = flags_document(load_flags(FLAGS.read_text(encoding="utf-8"), str(FLAGS)))
    flags["flags"]["new-checkout"]["killed"] = killed
    return {"version": version, "flags": flags, "rollouts": [ROLLOUT]}


def snapshot_event(version: int) -> list[str]:
    return ["event: snapshot", f'data: {{"version": {version}}}', ""]


class FakeServer:
    """An in-memory rollwise server behind the SDK's Transport interface: no sockets, no mocks.

    ``up`` switches it off (every call fails as a refused connection would, the stream breaks);
    ``lost_replies`` applies that many batches but loses the answer, as a timeout would."""

    def __init__(
        self, snapshot: dict[str, Any] | None = None, *, up: bool = True, carry: bool = False
    ) -> None:
        self.document = snapshot or document()
        self.up = up
        self.carry = carry  # events carry the whole snapshot, as the server does, or a version
        self.snapshot_reply: Reply | None = None  # answer this instead of the snapshot
        self.events_status = 202
        self.lost_replies = 0
        self.applied: dict[str, dict[str, Any]] = {}
        self.attempts: list[str] = []
        self.etags: list[str | None] = []
        self.closed = threading.Event()
        self._announcements: queue.Queue[str] = queue.Queue()
        self._lock = threading.Lock()

    def publish(self, snapshot: dict[str, Any]) -> None:
        self.document = snapshot
        for line in self._event():
            self._announcements.put(line)

    def _event(self) -> list[str]:
        if self.carry:
            return ["event: snapshot", f"data: {json.dumps(self.document)}", ""]
        return snapshot_event(self.document["version"])

    def announce(self, *lines: str) -> None:
        for line in lines:
            self._announcements.put(line)

    def get_snapshot(self, etag: str | None) -> Reply:
        self._connect()
        self.etags.append(etag)
        if self.snapshot_reply is not None:
            return self.snapshot_reply
        tag = f'"{self.document["version"]}"'
        if etag == tag:
            return Reply(304, etag=tag)
        return Reply(200, json.dumps(self.document).encode(), tag)

    def stream(self) -> Iterator[str]:
        self._connect()
        yield from self._event()
        while not self.closed.is_set():
            if not self.up:
                raise ConnectionResetError("the stream broke")
            try:
                yield self._announcements.get(timeout=0.01)
            except queue.Empty:
                yield ": ping"

    def post_events(self, body: bytes) -> Reply:
        self._connect()
        batch = json.loads(body)
        with self._lock:
            self.attempts.append(batch["batch"])
            if self.events_status >= 400:
                return Reply(self.events_status, b'{"detail": "the batch names unknown rollouts"}')
            duplicate = batch["batch"] in self.applied
            self.applied.setdefault(batch["batch"], batch)
            if self.lost_replies:
                self.lost_replies -= 1
                raise TimeoutError("the reply was lost")
        if duplicate:
            return Reply(200, b'{"applied": false, "duplicate": true}')
        return Reply(202, b'{"applied": true}')

    def close(self) -> None:
        self.closed.set()

    def _connect(self) -> None:
        if not self.up:
            raise ConnectionRefusedError("the server is down")

    def aggregates(self) -> list[dict[str, Any]]:
        return [row for batch in self.applied.values() for row in batch["aggregates"]]

    def exposures(self) -> list[dict[str, Any]]:
        return [row for batch in self.applied.values() for row in batch["exposures"]]


class BrokenTransport:
    """A transport whose every call raises something unexpected (but the snapshot, if asked)."""

    def __init__(self, *, serves_snapshot: bool = False) -> None:
        self.serves_snapshot = serves_snapshot

    def get_snapshot(self, etag: str | None) -> Reply:
        if self.serves_snapshot:
            return Reply(200, json.dumps(document()).encode())
        raise RuntimeError("get_snapshot exploded")

    def stream(self) -> Iterator[str]:
        raise RuntimeError("stream exploded")

    def post_events(self, body: bytes) -> Reply:
        raise RuntimeError("post_events exploded")

    def close(self) -> None:
        raise RuntimeError("close exploded")


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


def live_client(server: Any, **options: Any) -> Client:
    options.setdefault("flush_interval", 60.0)  # flushes are explicit unless a test asks
    return Client(URL, "sdk-key", transport=server, **options)


def sdk_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rollwise-")]


def test_startup_serves_the_servers_snapshot() -> None:
    """The first snapshot is fetched before the constructor returns and evaluated locally."""
    server = FakeServer()
    with live_client(server) as client:
        assert client.stats().snapshot_version == 12
        assert client.flags.version == 12
        assert client.enabled("new-checkout", ACME)
        assert client.variant("nope", ACME, "fallback") == "fallback"
        assert client.resolve("nope", ACME).reason is Reason.FLAG_NOT_FOUND
        wait_until(lambda: client.stats().stream_connected)
    assert server.etags[0] is None
    assert not sdk_threads()


def test_a_cached_snapshot_is_revalidated_with_its_etag(tmp_path: Path) -> None:
    """A cached snapshot is served at once and revalidated with If-None-Match: a 304 keeps it."""
    cache = tmp_path / "cache" / "snapshot.json"
    with live_client(FakeServer(), cache_path=cache):
        pass
    assert json.loads(cache.read_bytes())["version"] == 12
    assert not list(cache.parent.glob(".snapshot.json.*")), "no temporary file is left behind"
    server = FakeServer()
    with live_client(server, cache_path=cache) as client:
        assert client.stats().snapshot_version == 12
        served = client.flags
        server.announce("event: snapshot", "data: not json", "")  # unreadable: refetch to be safe
        wait_until(lambda: len(server.etags) == 2)
        assert client.flags is served
    assert server.etags == ['"12"', '"12"']


def test_a_stream_announcement_triggers_a_refetch() -> None:
    """A newer version on the stream is fetched at once: here, a kill switch."""
    server = FakeServer()
    with live_client(server) as client:
        assert client.enabled("new-checkout", ACME)
        server.announce(*snapshot_event(12))  # the version held: nothing to fetch
        server.publish(document(13, killed=True))
        wait_until(lambda: client.stats().snapshot_version == 13)
        assert not client.enabled("new-checkout", ACME)
        assert client.resolve("new-checkout", ACME).reason is Reason.KILLED
    assert server.etags == [None, '"12"']


def test_change_listeners_hear_each_new_version_once_it_is_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``on_change``: called with the version after the swap (an evaluation inside it sees the
    kill), once per new version; a listener that raises is logged and harms nothing."""
    server = FakeServer(carry=True)
    heard: list[tuple[int, Reason]] = []

    def broken(version: int) -> None:
        raise RuntimeError(f"listener broke at {version}")

    with live_client(server) as client:
        client.on_change(broken)
        client.on_change(
            lambda version: heard.append((version, client.resolve("new-checkout", ACME).reason))
        )
        server.publish(document(13, killed=True))
        wait_until(lambda: len(heard) == 1, timeout=10.0)
        server.publish(document(14, killed=False))
        wait_until(lambda: len(heard) == 2, timeout=10.0)
        assert client.enabled("new-checkout", ACME)
    assert heard == [(13, Reason.KILLED), (14, Reason.RULE_MATCH)]
    assert "a change listener failed" in caplog.text
    offline = Client(load_flags(FLAGS.read_text(encoding="utf-8")))
    offline.on_change(broken)  # never called: nothing raises
    assert offline.enabled("new-checkout", ACME)


def test_a_snapshot_carried_by_the_stream_is_served_without_a_fetch(tmp_path: Path) -> None:
    """An event carrying the snapshot is applied (and cached) with no round trip; a bad one makes the client fetch instead."""
    server = FakeServer(carry=True)
    cache = tmp_path / "snapshot.json"
    with live_client(server, cache_path=cache) as client:
        server.publish(document(13, killed=True))
        wait_until(lambda: client.stats().snapshot_version == 13)
        assert not client.enabled("new-checkout", ACME)
        # The cache is written just after the new snapshot is served: wait for it, not race it.
        wait_until(lambda: cache.exists() and json.loads(cache.read_text())["version"] == 13)
        assert server.etags == [None]
        server.announce(
            "event: snapshot", 'data: {"version": 14, "flags": {"flags": {"f": {}}}}', ""
        )
        wait_until(lambda: len(server.etags) == 2)
        assert client.stats().snapshot_version == 13
    assert server.etags == [None, '"13"']


def test_an_unreachable_server_leaves_the_cached_snapshot_in_service(tmp_path: Path) -> None:
    """Restarted while the server is down, a client serves the flags it cached before."""
    cache = tmp_path / "snapshot.json"
    with live_client(FakeServer(), cache_path=cache):
        pass
    with live_client(FakeServer(up=False), cache_path=cache, startup_timeout=0.5) as client:
        assert client.stats().snapshot_version == 12
        assert client.enabled("new-checkout", ACME)
    with live_client(FakeServer(up=False), startup_timeout=0.5) as client:
        assert client.enabled("new-checkout", ACME) is False  # nothing cached: caller's default
        assert client.enabled("new-checkout", ACME, default=True) is True


def test_a_bad_or_failed_snapshot_keeps_the_one_being_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bad JSON, an invalid document, 500 and 401 answers are logged; the last good one stays."""
    server = FakeServer()
    with live_client(server) as client:
        for reply in [
            Reply(200, b"{not json", '"13"'),
            Reply(200, json.dumps({"version": 13, "flags": {"flags": {"f": {}}}}).encode()),
            Reply(500, b"oops"),
            Reply(401, b'{"detail": "bad key"}'),
        ]:
            server.snapshot_reply = reply
            attempts = len(server.etags)
            server.announce(*snapshot_event(13))
            wait_until(lambda attempts=attempts: len(server.etags) > attempts)  # type: ignore[misc]
            assert client.enabled("new-checkout", ACME)
            assert client.stats().snapshot_version == 12
    assert any("bad snapshot" in r.getMessage() for r in caplog.records)


def test_outcomes_wait_for_the_server_and_are_sent_once_with_the_same_ids() -> None:
    """Batches queue while the server is down, go in order when it is back, and a lost reply is retried under the same id and applied once."""
    server = FakeServer()
    with live_client(server) as client:
        server.up = False
        client.record("checkout.error", ACME, failed=True)
        assert client.flush() is False
        client.record("checkout.error", ACME, failed=False)
        assert client.flush() is False
        assert client.stats().pending_batches == 2
        server.up = True
        server.lost_replies = 1
        assert client.flush() is False  # applied by the server, but the SDK never heard
        assert client.flush() is True
        stats = client.stats()
    first, second = server.attempts[0], server.attempts[2]
    assert server.attempts == [first, first, second]
    assert list(server.applied) == [first, second]
    assert (stats.pending_batches, stats.batches_sent, stats.batches_dropped) == (0, 2, 0)
    whole = [row for row in server.aggregates() if row["segment"] == ""]
    assert [(row["requests"], row["events"]) for row in whole] == [(1, 1), (1, 0)]


def test_the_background_thread_flushes_every_interval() -> None:
    """With a short flush interval, recorded outcomes reach the server without a flush call."""
    server = FakeServer()
    with live_client(server, flush_interval=0.02) as client:
        client.enabled("new-checkout", ACME)
        with client.observe("checkout", ACME):
            pass
        wait_until(lambda: bool(server.applied))
    assert {row["metric"] for row in server.aggregates()} == {"checkout.error", "checkout.latency"}
    hashed = hashlib.sha256(b"3:acme").hexdigest()[:32]
    assert [e["unit"] for e in server.exposures()] == [hashed]


def test_close_sends_the_last_batch_and_stops_the_threads() -> None:
    """close() flushes what is left, stops both threads and is idempotent."""
    server = FakeServer()
    client = live_client(server, ledger_units="plain")
    assert client.enabled("new-checkout", ACME)
    assert client.enabled("new-checkout", {**ACME, "key": "u-2"})  # same tenant: one exposure
    others = [{"key": "u", "tenant": f"tenant-{i}", "app_version": "2.5.0"} for i in range(8)]
    served = [client.variant("new-checkout", other, "off") for other in others]
    assert client.resolve("search-v2", {"key": "u", "region": "eu-west"}).reason  # no rollout
    client.record("checkout.latency", ACME, value=40.0)
    client.close()
    client.close()
    assert not sdk_threads()
    expected = [("acme", True, 1)] + [
        (other["tenant"], variant == "on", 1) for other, variant in zip(others, served, strict=True)
    ]
    assert [(e["unit"], e["exposed"], e["stage"]) for e in server.exposures()] == expected
    assert {True, False} <= {exposed for _, exposed, _ in expected}
    assert sum(row["requests"] for row in server.aggregates() if row["segment"] == "") == 1


def test_rejected_batches_are_dropped_and_throttled_ones_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 4xx batch is dropped and logged with the server's detail; 429 and 5xx are retried."""
    server = FakeServer()
    with live_client(server) as client:
        for status in (429, 503):
            server.events_status = status
            client.record("checkout.error", ACME, failed=True)
            assert client.flush() is False
            assert client.stats().pending_batches == 1
            server.events_status = 202
            assert client.flush() is True
        server.events_status = 422
        client.record("checkout.error", ACME, failed=True)
        assert client.flush() is True
        stats = client.stats()
    assert (stats.batches_sent, stats.batches_rejected, stats.pending_batches) == (2, 1, 0)
    assert len(server.attempts) == 5
    assert any("unknown rollouts" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("serves_snapshot", [False, True])
def test_the_application_never_sees_an_exception(
    serves_snapshot: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """A transport raising everywhere: construct, evaluate, record, flush and close carry on, logging a few warnings, not one per call."""
    with caplog.at_level(logging.WARNING, logger="rollwise.sdk"):
        client = live_client(BrokenTransport(serves_snapshot=serves_snapshot), startup_timeout=0.5)
        for _ in range(50):
            assert client.enabled("new-checkout", ACME) is serves_snapshot
            assert client.value("new-checkout", ACME, "x") == (True if serves_snapshot else "x")
            with client.observe("checkout", ACME):
                pass
            client.record("checkout.error", ACME, failed=True)
            client.record("checkout.latency", ACME, value="slow")  # type: ignore[arg-type]
            client.track("paid", ACME)
        # Without a snapshot nothing is guarded, so there is nothing to send.
        assert client.flush() is not serves_snapshot
        client.close()
    assert caplog.records
    assert len(caplog.records) < 10


def test_a_corrupt_cache_file_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A cache file that is not a snapshot is logged and skipped; the server's is used."""
    cache = tmp_path / "snapshot.json"
    cache.write_text("{half a snap")
    with live_client(FakeServer(), cache_path=cache) as client:
        assert client.stats().snapshot_version == 12
    assert json.loads(cache.read_text())["version"] == 12
    assert any("ignoring the snapshot cache" in r.getMessage() for r in caplog.records)


def test_the_stream_reconnects_with_backoff_and_polls_while_down() -> None:
    """A broken stream is reopened after a backoff; meanwhile the snapshot is polled."""
    server = FakeServer()
    served: list[int] = []
    stop = threading.Event()
    follower = SnapshotFollower(
        server,
        on_snapshot=lambda snapshot: served.append(snapshot.version),
        stop=stop,
        log=Throttle(),
        poll_interval=0.03,
        backoff_first=0.01,
        backoff_max=0.04,
    )
    ready = threading.Event()
    thread = threading.Thread(target=follower.follow, args=(ready,), daemon=True)
    thread.start()
    try:
        wait_until(lambda: follower.connected)
        server.up = False
        wait_until(lambda: not follower.connected)
        polls = len(server.etags)
        server.document = document(14)
        time.sleep(0.15)  # several backoffs and polls, all failing
        server.up = True
        wait_until(lambda: follower.connected and follower.version == 14)
        assert polls >= 1 and served == [12, 14]
    finally:
        stop.set()
        server.close()
        thread.join(1.0)
    assert not thread.is_alive()


def test_events_are_read_as_the_server_sent_event_format_says() -> None:
    """Comments are skipped, data lines joined, unnamed events are messages."""
    lines = [": ping", "event: snapshot", "data: {", 'data: "version": 13}', "", "data:x", "", ""]
    events = list(read_events(lines))
    assert events == [Event("snapshot", '{\n"version": 13}'), Event("message", "x")]
    assert read_announcement(events[0]).version == 13
    assert read_announcement(events[0]).document is None
    assert read_announcement(Event("snapshot", '{"version": 13, "flags": {}}')).document == {
        "version": 13,
        "flags": {},
    }
    for data in ['{"version": true}', "[13]", "not json"]:
        assert read_announcement(Event("snapshot", data)).version is None


def test_an_announcement_of_the_version_held_is_not_decoded() -> None:
    """The snapshot event sent on every connection, of the version the SDK already serves, is
    known by its start (the server writes the version first): the rest is not decoded — here
    it could not be. Any other version, or another order of fields, is decoded whole."""
    held = '{"version":13,"flags":' + "x" * 100_000
    assert read_announcement(Event("snapshot", held), 13) == Announcement(13)
    assert read_announcement(Event("snapshot", held), 12).version is None  # decoded: not JSON
    whole = json.dumps(document(14), separators=(",", ":"))
    assert whole.startswith('{"version":14,')
    assert read_announcement(Event("snapshot", whole), 13).document == document(14)
    assert read_announcement(Event("snapshot", whole), 14) == Announcement(14)
    other = '{"flags": {}, "version": 13}'
    assert read_announcement(Event("snapshot", other), 13).document == {"flags": {}, "version": 13}


def test_the_httpx_transport_speaks_the_protocol() -> None:
    """Paths, the bearer key, If-None-Match, the stream and the batch body, over httpx."""
    seen: list[httpx.Request] = []
    body = json.dumps(document()).encode()

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/sdk/v1/snapshot":
            if request.headers.get("If-None-Match") == '"12"':
                return httpx.Response(304)
            return httpx.Response(200, content=body, headers={"ETag": '"12"'})
        if request.url.path == "/sdk/v1/stream":
            if request.headers["Authorization"] != "Bearer sdk-key":
                return httpx.Response(401)
            return httpx.Response(
                200, content=b'event: snapshot\ndata: {"version": 12}\n\n: ping\n\n'
            )
        return httpx.Response(202, json={"applied": True})

    http = httpx.Client(transport=httpx.MockTransport(handle))
    transport = HttpTransport(URL + "/", "sdk-key", http=http)
    assert transport.get_snapshot(None) == Reply(200, body, '"12"')
    assert transport.get_snapshot('"12"').status == 304
    assert list(transport.stream()) == [*snapshot_event(12), ": ping", ""]
    assert transport.post_events(b'{"batch": "b"}').status == 202
    assert [r.url.path for r in seen] == ["/sdk/v1/snapshot"] * 2 + [
        "/sdk/v1/stream",
        "/sdk/v1/events",
    ]
    assert {r.headers["Authorization"] for r in seen} == {"Bearer sdk-key"}
    assert (
        seen[-1].headers["Content-Type"] == "application/json"
        and seen[-1].content == b'{"batch": "b"}'
    )
    with pytest.raises(StreamRefused):
        list(HttpTransport(URL, "wrong", http=http).stream())
    transport.close()
    assert not http.is_closed, "a client passed in belongs to the caller"


def test_constructor_arguments_are_checked() -> None:
    """Client(flags) stays offline; live options need a URL and a key."""
    flags = load_flags(FLAGS.read_text(encoding="utf-8"))
    offline = Client(flags)
    assert offline.flush() is True and offline.stats().batches_sent == 0
    offline.close()
    with pytest.raises(TypeError):
        Client(flags, "sdk-key")  # type: ignore[call-overload]
    with pytest.raises(TypeError):
        Client(URL, "")
    with pytest.raises(ValueError, match="ledger_units"):
        Client(URL, "k", ledger_units="secret")  # type: ignore[call-overload]


def test_a_gauge_that_cannot_be_recorded_is_logged_once_not_per_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A value that is not a number is dropped, never raised; a thousand of them make one
    warning (the throttle holds back the rest), not a thousand lines in the host's log."""
    server = FakeServer()
    with live_client(server) as client, caplog.at_level(logging.WARNING, logger="rollwise"):
        for _ in range(1000):
            client.gauge("payments.queue_depth", "deep")  # type: ignore[arg-type]
    said = [r for r in caplog.records if "could not record" in r.getMessage()]
    assert len(said) == 1 and "payments.queue_depth" in said[0].getMessage()


def test_gauge_readings_ride_with_the_next_batch() -> None:
    """client.gauge keeps readings until the next flush and sends them once, with their
    times; an offline client ignores them."""
    server = FakeServer()
    with live_client(server) as client:
        client.gauge("payments.queue_depth", 120)
        client.gauge("payments.queue_depth", 1500.5)
        assert client.flush() is True
        assert client.flush() in (True, False)  # nothing left to send is not an error
    readings = [g for batch in server.applied.values() for g in batch.get("gauges", [])]
    assert [(g["metric"], g["value"]) for g in readings] == [
        ("payments.queue_depth", 120.0),
        ("payments.queue_depth", 1500.5),
    ]
    assert all(g["at"].endswith("Z") for g in readings)
    offline = Client(load_flags(FLAGS.read_text(encoding="utf-8")))
    offline.gauge("payments.queue_depth", 1.0)  # no server: nothing to do, and no error
