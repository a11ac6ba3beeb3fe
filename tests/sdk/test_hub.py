"""The thread that reads every event stream of a process (``rollwise.sdk._hub``): chunked
bodies however the bytes are cut, events served on that thread or handed over in order, a broken
or silent stream ended as a client's own read would end it, ``close``, and one thread for many
clients that ends with the last of them."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable

import pytest

from rollwise import Client
from rollwise.sdk._http import HttpTransport
from rollwise.sdk._hub import Chunked, Sized
from rollwise.sdk._stream import Event
from rollwise.sdk._transport import StreamRefused
from tests.sdk.test_close import server  # noqa: F401 - the fixture
from tests.sdk.test_direct_stream import (  # noqa: F401 - serve is the fixture
    HEAD,
    RawServer,
    Script,
    chunk,
    serve,
    silent_after_an_event,
)
from tests.sdk.test_live_client import wait_until

SHARED = "rollwise-streams"


def readers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == SHARED]


def test_a_chunked_body_is_the_same_wherever_its_bytes_are_cut() -> None:
    payload = [b"event: kill\n", b'data: {"version": 3}\n\n', b"x" * 300]
    body = b"".join(chunk(p) for p in payload[:2])
    body += b"%x;name=value\r\n%s\r\n" % (len(payload[2]), payload[2])  # an extension
    body += b"0\r\nTrailer: yes\r\n\r\n"
    for first in range(len(body) + 1):
        for second in range(first, len(body) + 1, 11):
            decoder = Chunked()
            out = b"".join(decoder.feed(piece) for piece in (body[:first], body[first:second]))
            out += decoder.feed(body[second:])
            assert out == b"".join(payload), (first, second)
            assert decoder.done
            decoder.finish()
    cut = Chunked()
    assert cut.feed(body[:30]) == payload[0] + payload[1][: 30 - 21]  # its size line is 4 bytes
    with pytest.raises(http.client.IncompleteRead):
        cut.finish()


@pytest.mark.parametrize(
    "body",
    [b"zz\r\nabc\r\n", b"3\r\nabcX\r\n", b"1" * 5000, b"\r\n", b"11111111111111111\r\n"],
)
def test_a_body_not_chunked_as_http_says_is_refused(body: bytes) -> None:
    with pytest.raises(http.client.HTTPException):
        Chunked().feed(body)


def test_a_sized_body_ends_at_its_length() -> None:
    sized = Sized(5)
    assert sized.feed(b"abc") == b"abc" and not sized.done
    with pytest.raises(http.client.IncompleteRead):
        sized.finish()
    assert sized.feed(b"defgh") == b"de" and sized.done
    until_the_end = Sized(None)
    assert until_the_end.feed(b"abc") == b"abc" and not until_the_end.done
    until_the_end.finish()


def test_events_are_served_on_the_shared_thread_or_handed_over_in_order(
    serve: Callable[[Script], RawServer],  # noqa: F811
) -> None:
    """The head and the first event in one packet (nothing of the body is read with the head);
    ``at_once`` serves kills on the shared thread; a snapshot is handed over, and while the
    client's thread holds it, nothing is offered to ``at_once``: the kills that arrive then
    are handed over too, in order."""
    holding, release = threading.Event(), threading.Event()

    def script(conn: socket.socket) -> None:
        conn.sendall(HEAD + chunk(b"event: kill\ndata: 1\n\n"))
        conn.sendall(chunk(b"event: snapshot\ndata: 2\n\n"))
        holding.wait(10)
        conn.sendall(chunk(b"event: kill\ndata: 3\n\n: ping\n\n") + chunk(b"event: kill\n"))
        conn.sendall(chunk(b"data: 4\n\n") + b"0\r\n\r\n")
        release.wait(10)

    raw = serve(script)
    transport = HttpTransport(raw.url, "sdk-key")
    served: list[tuple[str, str]] = []
    offered_while_held: list[str] = []

    def at_once(event: Event) -> bool:
        if holding.is_set() and not release.is_set():
            offered_while_held.append(event.data)
        served.append((event.data, threading.current_thread().name))
        return event.type == "kill"

    handed: list[str] = []
    for event in transport.events(at_once):
        handed.append(event.data)
        if event.data == "2":
            holding.set()
            time.sleep(1.0)  # the kills arrive meanwhile, and wait behind it
            release.set()
    release.set()
    assert served[:2] == [("1", SHARED), ("2", SHARED)]
    assert not offered_while_held
    assert handed == ["2", "3", "4"]
    transport.close()


def test_a_stream_cut_off_mid_chunk_raises_and_fails_over(
    serve: Callable[[Script], RawServer],  # noqa: F811
) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(HEAD + chunk(b"event: kill\ndata: 1\n\n") + b'40\r\ndata: {"vers')

    first, second = serve(script), serve(script)
    transport = HttpTransport([first.url, second.url], "sdk-key")
    seen: list[str] = []

    def read() -> None:
        for event in transport.events(lambda event: False):
            seen.append(event.data)

    with pytest.raises(http.client.IncompleteRead):
        read()
    assert seen == ["1"], "only whole events, and never the cut one"
    assert transport.url == second.url
    transport.close()


def test_a_silent_stream_times_out_and_fails_over(
    serve: Callable[[Script], RawServer],  # noqa: F811
) -> None:
    release = threading.Event()
    script = silent_after_an_event(release)
    first, second = serve(script), serve(script)
    transport = HttpTransport([first.url, second.url], "sdk-key", stream_read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        list(transport.events(lambda event: True))
    waited = time.monotonic() - started
    release.set()
    assert 0.3 <= waited < 20, f"gave up after {waited:.2f} s, not at the 0.3-s read timeout"
    assert transport.url == second.url
    transport.close()


def test_close_ends_a_stream_another_thread_is_reading(
    serve: Callable[[Script], RawServer],  # noqa: F811
) -> None:
    release = threading.Event()
    script = silent_after_an_event(release)
    raw = serve(script)
    transport = HttpTransport(raw.url, "sdk-key")
    offered = threading.Event()
    ended: list[BaseException | None] = []

    def at_once(event: Event) -> bool:
        offered.set()
        return True

    def read() -> None:
        try:
            list(transport.events(at_once))
            ended.append(None)
        except BaseException as exc:  # what ended it is the assertion
            ended.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert offered.wait(10)
    started = time.monotonic()
    transport.close()
    reader.join(10)
    release.set()
    assert not reader.is_alive(), "close() did not end the read"
    assert time.monotonic() - started < 5
    assert ended and (ended[0] is None or isinstance(ended[0], http.client.HTTPException))
    wait_until(lambda: not readers(), timeout=5.0)


def test_many_clients_share_one_thread_that_ends_with_the_last(
    server: tuple[object, str],  # noqa: F811
) -> None:
    """Twenty clients of a real server: one reading thread among them; a kill reaches every one
    through it; closed, they leave no thread behind."""
    live, key = server
    url = live.url  # type: ignore[attr-defined]
    clients = [Client(url, key, flush_interval=60.0) for _ in range(20)]
    try:
        wait_until(lambda: all(c.stats().stream_connected for c in clients), timeout=20.0)
        assert len(readers()) == 1
        sync = [t for t in threading.enumerate() if t.name == "rollwise-sync"]
        assert len(sync) >= 20, "each client keeps its own thread for what may block"
        heard: list[tuple[int, str]] = []
        for index, client in enumerate(clients):
            client.on_change(
                lambda version, i=index: heard.append((i, threading.current_thread().name))
            )
        from tests._serving import server_client
        from tests.e2e.test_sdk_rollout import ADMIN

        with server_client(url, ADMIN) as admin:
            admin.post("/api/v1/flags/new-checkout/kill").raise_for_status()
        wait_until(lambda: len(heard) >= 20, timeout=20.0)
        assert {i for i, _ in heard} == set(range(20))
        assert {name for _, name in heard} == {SHARED}, "applied where it was read"
        for client in clients:
            assert (
                client.resolve("new-checkout", {"user": "u-1", "tenant": "acme"}).variant == "off"
            )
    finally:
        for client in clients:
            client.close(timeout=5.0)
    wait_until(lambda: not readers(), timeout=5.0)


def test_the_shared_thread_is_not_left_running_by_a_refused_stream(
    serve: Callable[[Script], RawServer],  # noqa: F811
) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")

    raw = serve(script)
    transport = HttpTransport(raw.url, "sdk-key")
    with pytest.raises(StreamRefused):
        list(transport.events(lambda event: True))
    transport.close()
    assert not readers()


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",
    ],
)
def test_an_answer_that_ends_with_its_connection_is_read_to_the_end(
    serve: Callable[[Script], RawServer],  # noqa: F811
    head: bytes,
) -> None:
    """No chunks and no length: the body is what comes until the server closes; http.client
    hands the socket to the answer (closing it on its side), and the reads go on."""
    body = b"event: kill\ndata: 1\n\nevent: snapshot\ndata: 2\n\n"

    def script(conn: socket.socket) -> None:
        conn.sendall(head + body[:20])
        time.sleep(0.1)
        conn.sendall(body[20:])

    raw = serve(script)
    transport = HttpTransport(raw.url, "sdk-key")
    served: list[str] = []

    def at_once(event: Event) -> bool:
        served.append(event.data)
        return event.type == "kill"

    assert [event.data for event in transport.events(at_once)] == ["2"]
    assert served == ["1", "2"]
    assert list(transport.stream()) == [
        "event: kill",
        "data: 1",
        "",
        "event: snapshot",
        "data: 2",
        "",
    ]
    transport.close()
