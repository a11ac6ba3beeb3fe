"""The event stream read with ``http.client`` (``rollwise.sdk._direct``): lines however the
bytes are cut, the checks on the answer, failover, a broken stream, and ``close``. The server
here is a socket that writes exactly the bytes a test wants."""

from __future__ import annotations

import contextlib
import http.client
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from rollwise.sdk._direct import bound_reads, direct_possible
from rollwise.sdk._http import HttpTransport
from rollwise.sdk._stream import read_lines
from rollwise.sdk._transport import StreamRefused

Script = Callable[[socket.socket], None]
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class RawServer:
    """Accepts connections on loopback; for each, reads the request head, keeps it, and hands
    the socket to ``script``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        break
                    head += data
                self.requests.append(head)
                with contextlib.suppress(OSError):  # the client went away
                    self.script(conn)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the accept() that closing would not
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(2.0)


def silent_after_an_event(release: threading.Event) -> Script:
    """A server that sends its first event, then nothing (no keep-alive) until ``release``."""

    def script(conn: socket.socket) -> None:
        conn.sendall(HEAD + chunk(b"event: snapshot\ndata: {}\n\n"))
        release.wait(30)

    return script


@pytest.fixture
def serve() -> Iterator[Callable[[Script], RawServer]]:
    started: list[RawServer] = []

    def start(script: Script) -> RawServer:
        started.append(RawServer(script))
        return started[-1]

    yield start
    for server in started:
        server.close()


def test_lines_are_the_same_wherever_the_bytes_are_cut() -> None:
    """LF, CR LF and a lone CR end lines (the server-sent events format), UTF-8 is decoded
    with replacement, and a chunk that ends inside a CR LF does not make an extra blank line
    (which would dispatch half an event); what follows the last line ending is dropped."""
    stream = 'event: kill\r\ndata: {"é": 1}\n\n: ping\r\rdata: x\r\n\r\nevent: tail'.encode()
    stream += b"\xff\n"
    expected = [
        "event: kill",
        'data: {"é": 1}',
        "",
        ": ping",
        "",
        "data: x",
        "",
        "event: tail\ufffd",
    ]
    for first in range(len(stream) + 1):
        for second in range(first, len(stream) + 1, 7):
            pieces = [stream[:first], stream[first:second], stream[second:]]
            assert list(read_lines(p for p in pieces if p)) == expected, (first, second)
    assert list(read_lines([b"data: no ending"])) == []
    assert list(read_lines([b"data: a\r"])) == [], "a CR at the very end may be half a CR LF"


def test_nothing_of_a_chunk_is_held_while_the_next_is_awaited() -> None:
    """The snapshot event a stream starts with is a few hundred KiB: the reader lets go of its
    bytes once its lines are taken, not when the next event arrives (then each client of a
    process would free them at once, on the kill switch's path)."""
    big = b"data: " + b"x" * 300_000 + b"\n\n"
    held: list[int] = []

    def chunks() -> Iterator[bytes]:
        yield big[:100_000]
        yield big[100_000:]
        # Asked for the next chunk: the reader's frame is the caller of this generator's.
        values = list(sys._getframe(1).f_locals.values())
        values += [item for value in values if isinstance(value, list) for item in value]
        held.append(sum(len(value) for value in values if isinstance(value, bytes | str)))
        yield b"event: kill\n\n"

    lines = read_lines(chunks())
    first = next(lines)
    assert len(first) == len(big) - 2
    del first
    assert next(lines) == ""
    assert next(lines) == "event: kill"
    assert held and held[0] < 1_000, f"the reader held {held[0]:,} bytes while waiting"


def test_the_stream_is_read_over_http_client(serve: Callable[[Script], RawServer]) -> None:
    """The path under the URL's own, the headers, and the events as the server cut them."""

    def script(conn: socket.socket) -> None:
        conn.sendall(HEAD + chunk(b'event: snapshot\ndata: {"version"'))
        conn.sendall(chunk(b": 12}\n\n: ping\n\n") + b"0\r\n\r\n")

    server = serve(script)
    transport = HttpTransport(server.url + "/prefix/", "sdk-key", user_agent="test-agent")
    lines = list(transport.stream())
    assert lines == ["event: snapshot", 'data: {"version": 12}', "", ": ping", ""]
    head = server.requests[0].decode()
    assert head.startswith("GET /prefix/sdk/v1/stream?kills=true HTTP/1.1\r\n")
    for header in ("Authorization: Bearer sdk-key", "User-Agent: test-agent"):
        assert header in head
    assert "Accept: text/event-stream" in head
    transport.close()


def test_refusals_and_pages_are_not_streams_and_move_to_the_next_server(
    serve: Callable[[Script], RawServer],
) -> None:
    def answer(status: str, kind: str) -> Script:
        def script(conn: socket.socket) -> None:
            body = b"<html>sign in</html>"
            conn.sendall(
                f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )

        return script

    busy = serve(answer("503 Service Unavailable", "text/plain"))
    page = serve(answer("200 OK", "text/html"))
    transport = HttpTransport([busy.url, page.url], "sdk-key")
    with pytest.raises(StreamRefused) as refused:
        list(transport.stream())
    assert refused.value.status == 503
    assert transport.url == page.url, "a 503 sends the next request to the next server"
    with pytest.raises(StreamRefused) as refused:
        list(transport.stream())
    assert refused.value.content_type == "text/html"
    assert transport.url == page.url, "a page is not the server being down"
    transport.close()


def test_a_stream_cut_off_mid_chunk_raises_and_fails_over(
    serve: Callable[[Script], RawServer],
) -> None:
    def script(conn: socket.socket) -> None:
        conn.sendall(HEAD + chunk(b"event: kill\n") + b'40\r\ndata: {"vers')

    first = serve(script)
    second = serve(script)
    transport = HttpTransport([first.url, second.url], "sdk-key")
    seen: list[str] = []
    with pytest.raises(http.client.IncompleteRead):
        seen.extend(transport.stream())
    assert seen == ["event: kill"], "only whole lines, and never the cut one"
    assert transport.url == second.url
    transport.close()


def test_close_ends_a_stream_another_thread_is_reading(
    serve: Callable[[Script], RawServer],
) -> None:
    """The server says nothing after its first event (its keep-alive is 15 s away, the read
    timeout 45 s): ``close`` ends the read now, and the reader sees the end of the stream."""
    release = threading.Event()
    script = silent_after_an_event(release)
    server = serve(script)
    transport = HttpTransport(server.url, "sdk-key")
    lines: list[str] = []
    ended: list[BaseException | None] = []

    def read() -> None:
        try:
            lines.extend(transport.stream())
            ended.append(None)
        except BaseException as exc:  # what ended it is the assertion
            ended.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 10
    while len(lines) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lines == ["event: snapshot", "data: {}", ""]
    transport.close()
    reader.join(10)
    release.set()
    assert not reader.is_alive(), "close() did not end the read"
    assert ended and (ended[0] is None or isinstance(ended[0], http.client.HTTPException))


def test_a_proxy_in_the_environment_leaves_the_stream_to_httpx(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        for variable in (name, name.lower()):
            monkeypatch.delenv(variable, raising=False)
    assert direct_possible("http://rollwise.internal:8000")
    assert direct_possible("https://rollwise.internal")
    assert not direct_possible("unix:///tmp/socket")
    assert not direct_possible("https://user:secret@rollwise.internal"), "httpx sends them"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert direct_possible("http://rollwise.internal:8000"), "a proxy for https only"
    assert not direct_possible("https://rollwise.internal")
    monkeypatch.setenv("ALL_PROXY", "http://proxy:3128")
    assert not direct_possible("http://rollwise.internal:8000")
    monkeypatch.setenv("NO_PROXY", "localhost,.internal")
    assert direct_possible("http://rollwise.internal:8000"), "NO_PROXY names it"
    assert not direct_possible("http://rollwise.example.com")


@pytest.mark.parametrize("bounded_by_kernel", [True, False])
def test_a_silent_stream_times_out_and_fails_over(
    serve: Callable[[Script], RawServer], monkeypatch: pytest.MonkeyPatch, bounded_by_kernel: bool
) -> None:
    """A server that stops talking (no event, no keep-alive) is given up after the read
    timeout, as a failed exchange: the next try goes to the next server. The same whether the
    kernel bounds each read (``SO_RCVTIMEO``, where the platform has it) or Python does."""
    release = threading.Event()
    script = silent_after_an_event(release)
    if not bounded_by_kernel:
        monkeypatch.setattr(sys, "platform", "win32")
    first, second = serve(script), serve(script)
    transport = HttpTransport([first.url, second.url], "sdk-key", stream_read_timeout=0.3)
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        lines.extend(transport.stream())
    waited = time.monotonic() - started
    release.set()
    assert lines == ["event: snapshot", "data: {}", ""]
    assert 0.3 <= waited < 20, f"gave up after {waited:.2f} s, not at the 0.3-s read timeout"
    assert transport.url == second.url
    transport.close()


def test_reads_are_bounded_by_the_kernel_where_they_can_be() -> None:
    """One blocking ``recv`` per read where the platform takes ``SO_RCVTIMEO`` (not a poll and
    then a ``recv``, each giving up the GIL); Python's timeout on a TLS socket or elsewhere."""
    with socket.socket() as sock:
        kernel = bound_reads(sock, 2.5)
        assert kernel == (sys.platform in ("linux", "darwin"))
        if kernel:
            assert sock.gettimeout() is None
            seconds, micro = struct.unpack(
                "ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16)
            )
            assert (seconds, micro) == (2, 500_000)
        else:
            assert sock.gettimeout() == 2.5
