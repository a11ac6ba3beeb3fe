"""Bad input on the way in: a snapshot that does not decode, a truncated stream, a server that
answers HTML, a disk cache that is corrupt or from another version. Each time the client keeps
serving its last good snapshot (or the safe defaults), logs the problem once however often it
repeats, and serves the server's snapshot as soon as the server gives a good one again."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rollwise import Client
from rollwise.sdk import Reply
from rollwise.sdk._http import HttpTransport
from tests.sdk.test_live_client import ACME, URL, FakeServer, document, live_client, wait_until

HTML = b"<!doctype html><html><head><title>Sign in</title></head><body>Proxy</body></html>"
#: A line that makes CuttingServer's stream break, as a dropped connection does.
CUT = "\x00cut"


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(
        text in record.getMessage()
        for record in caplog.records
        if record.name == "rollwise.sdk" and record.levelno == logging.WARNING
    )


class CuttingServer(FakeServer):
    """A FakeServer whose stream breaks mid-event when it reaches ``CUT``."""

    def stream(self) -> Iterator[str]:
        for line in super().stream():
            if line == CUT:
                raise ConnectionResetError("the connection was cut")
            yield line


GOOD = json.dumps(document()).encode()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xff\xfe\x00\x80 not UTF-8", id="undecodable"),
        pytest.param(GOOD[: len(GOOD) // 2], id="truncated"),
        pytest.param(HTML, id="html"),
        pytest.param(b"", id="empty"),
    ],
)
def test_a_snapshot_that_does_not_decode_keeps_the_last_good_one(
    body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Fetched again and again, a body that is not a snapshot is logged once; the last good
    snapshot stays in service; the next good one is served."""
    server = FakeServer()
    with caplog.at_level(logging.WARNING, logger="rollwise.sdk"), live_client(server) as client:
        assert client.stats().snapshot_version == 12
        server.snapshot_reply = Reply(200, body, '"13"')
        for _ in range(4):
            fetches = len(server.etags)
            server.announce("event: snapshot", 'data: {"version": 13}', "")
            wait_until(lambda fetches=fetches: len(server.etags) > fetches)  # type: ignore[misc]
            assert client.enabled("new-checkout", ACME)
            assert client.stats().snapshot_version == 12
        assert warnings(caplog, "ignoring a bad snapshot") == 1
        server.snapshot_reply = None
        server.publish(document(13, killed=True))
        wait_until(lambda: client.stats().snapshot_version == 13)
        assert not client.enabled("new-checkout", ACME)


def test_an_event_cut_off_by_a_dropped_connection_is_never_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Half an event and then a broken connection: nothing of it is served; the client
    reconnects and serves the snapshot the server announces on connecting."""
    server = CuttingServer(carry=True)
    with caplog.at_level(logging.WARNING, logger="rollwise.sdk"), live_client(server) as client:
        wait_until(lambda: client.stats().stream_connected)
        server.document = document(13, killed=True)
        event = json.dumps(server.document)
        server.announce("event: snapshot", f"data: {event[: len(event) // 2]}", CUT)
        wait_until(lambda: not client.stats().stream_connected)
        assert client.stats().snapshot_version == 12
        assert client.enabled("new-checkout", ACME)
        wait_until(lambda: client.stats().snapshot_version == 13, timeout=5.0)
        assert not client.enabled("new-checkout", ACME)
    assert warnings(caplog, "the event stream broke") == 1


def test_a_truncated_event_that_is_dispatched_makes_the_client_fetch() -> None:
    """Half an event's data followed by a blank line (a proxy that gave up) is not a snapshot:
    the client fetches the snapshot instead, and serves it."""
    server = FakeServer(carry=True)
    with live_client(server) as client:
        server.document = document(13, killed=True)
        event = json.dumps(server.document)
        server.announce("event: snapshot", f"data: {event[: len(event) // 2]}", "")
        wait_until(lambda: client.stats().snapshot_version == 13)
        assert not client.enabled("new-checkout", ACME)
    assert server.etags == [None, '"12"']


class Proxy:
    """An HTTP front that answers every request with an HTML page until ``html`` is cleared,
    then passes the server's answers through (behind the SDK's real HTTP transport)."""

    def __init__(self) -> None:
        self.html = True
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.html:
            return httpx.Response(200, content=HTML, headers={"Content-Type": "text/html"})
        if request.url.path == "/sdk/v1/snapshot":
            return httpx.Response(200, content=GOOD, headers={"ETag": '"12"'})
        if request.url.path == "/sdk/v1/stream":
            event = b'event: snapshot\ndata: {"version": 12}\n\n'
            return httpx.Response(200, content=event, headers={"Content-Type": "text/event-stream"})
        return httpx.Response(202, json={"applied": True})


def test_a_server_answering_html_is_ridden_out(caplog: pytest.LogCaptureFixture) -> None:
    """Snapshot and stream both answered with a login page: safe defaults are served, each
    problem is logged once, and the flags arrive as soon as the real server answers."""
    proxy = Proxy()
    http = httpx.Client(transport=httpx.MockTransport(proxy))
    with caplog.at_level(logging.WARNING, logger="rollwise.sdk"):
        client = Client(
            URL,
            "sdk-key",
            transport=HttpTransport(URL, "sdk-key", http=http),
            poll_interval=0.05,
            flush_interval=60.0,
            startup_timeout=1.0,
        )
        try:
            wait_until(lambda: proxy.requests >= 6)
            assert client.stats().snapshot_version == 0
            assert client.enabled("new-checkout", ACME) is False
            assert client.enabled("new-checkout", ACME, default=True) is True
            assert warnings(caplog, "ignoring a bad snapshot") == 1
            assert warnings(caplog, "answered 200 text/html, not an event stream") == 1
            proxy.html = False
            wait_until(lambda: client.stats().snapshot_version == 12)
            assert client.enabled("new-checkout", ACME)
        finally:
            client.close()
            http.close()


def _unknown_field() -> bytes:
    newer = document()
    newer["flags"]["flags"]["new-checkout"]["exposure_budget"] = 0.05
    return json.dumps(newer).encode()


@pytest.mark.parametrize(
    "cached",
    [
        pytest.param(b"\x00\x01\x02 binary junk \xff", id="corrupt"),
        pytest.param(GOOD[:100], id="cut-short"),
        pytest.param(json.dumps({"format": 3, "snapshot": document()}).encode(), id="other-shape"),
        pytest.param(_unknown_field(), id="unknown-field"),
    ],
)
def test_a_cache_that_cannot_be_served_is_skipped_until_the_server_answers(
    cached: bytes, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache file that is corrupt, cut short or written by another version of the SDK (another
    shape, a field this version does not know): with the server down, the safe defaults are
    served and the cache is logged once; when the server is back its snapshot is served and
    cached in place of the bad file."""
    cache = tmp_path / "snapshot.json"
    cache.write_bytes(cached)
    server = FakeServer(up=False)
    with caplog.at_level(logging.WARNING, logger="rollwise.sdk"):
        with live_client(
            server, cache_path=cache, startup_timeout=0.2, poll_interval=0.05
        ) as client:
            assert client.stats().snapshot_version == 0
            assert client.enabled("new-checkout", ACME) is False
            time.sleep(0.3)  # several polls, all failing
            server.up = True
            wait_until(lambda: client.stats().snapshot_version == 12)
            assert client.enabled("new-checkout", ACME)
        assert warnings(caplog, "ignoring the snapshot cache") == 1
        assert warnings(caplog, "cannot fetch the snapshot") == 1
    assert json.loads(cache.read_bytes())["version"] == 12


def test_a_cache_from_a_server_that_started_over_gives_way_to_it(tmp_path: Path) -> None:
    """A cache of version 99 (from before the server's database was replaced) is served while
    the server is down; once the server answers with its version 12, that is served."""
    cache = tmp_path / "snapshot.json"
    cache.write_bytes(json.dumps(document(99, killed=True)).encode())
    server = FakeServer(up=False)
    with live_client(server, cache_path=cache, startup_timeout=0.2, poll_interval=0.05) as client:
        assert client.stats().snapshot_version == 99
        assert client.enabled("new-checkout", ACME) is False  # killed in the cached version
        server.up = True
        wait_until(lambda: client.stats().snapshot_version == 12)
        assert client.enabled("new-checkout", ACME)
