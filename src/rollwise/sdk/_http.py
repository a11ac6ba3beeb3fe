"""The transport the live client uses by default: HTTP on httpx."""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
from collections.abc import Callable, Iterator, Sequence
from functools import partial

import httpx

from rollwise.sdk._direct import DirectStream, direct_possible, shut_down
from rollwise.sdk._stream import Event, read_events
from rollwise.sdk._transport import Reply, StreamRefused, refuse_unless_stream

SNAPSHOT_PATH = "/sdk/v1/snapshot"
#: ``kills=true``: a kill switch comes as ``event: kill``, not as a whole snapshot to read.
STREAM_PATH = "/sdk/v1/stream?kills=true"
EVENTS_PATH = "/sdk/v1/events"
#: Answers that say this server cannot serve now (a gateway's, or an overloaded server's): with
#: several URLs, the next request goes to the next one.
_UNAVAILABLE = frozenset({502, 503, 504})


class HttpTransport:
    """Speaks the SDK protocol to ``url`` with ``Authorization: Bearer <sdk_key>``.

    ``url`` may be a list of servers (replicas behind no load balancer): requests go to one
    until it fails to answer (a connection error or timeout) or answers 502, 503 or 504, then
    to the next, round the list. The request that failed is not sent again here: the caller
    retries it as it would (the next flush, the stream's backoff), and that goes elsewhere.

    ``http`` lets the caller supply a configured ``httpx.Client`` (proxies, certificates, or an
    ``httpx.MockTransport`` in tests); the transport closes only a client it created itself.
    The stream's read timeout is longer than the server's 15-second keep-alive, so a silent,
    dead connection is noticed and replaced. ``close`` ends a stream another thread is reading
    at once, rather than at the server's next keep-alive.

    The stream itself is read with ``http.client`` (``_direct.py``: a fraction of httpx's CPU
    per event) wherever httpx would add nothing: the transport's own httpx client, no proxy.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        sdk_key: str,
        *,
        user_agent: str = "rollwise-python",
        timeout: float = 5.0,
        stream_read_timeout: float = 45.0,
        http: httpx.Client | None = None,
    ) -> None:
        urls = [url] if isinstance(url, str) else list(url)
        if not urls or not all(isinstance(u, str) and u for u in urls):
            raise TypeError("the server URL must be a non-empty string or list of them")
        self._bases = [u.rstrip("/") for u in urls]
        self._at = 0
        self._headers = {"Authorization": f"Bearer {sdk_key}", "User-Agent": user_agent}
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=timeout)
        self._stream_timeout = httpx.Timeout(timeout, read=stream_read_timeout)
        self._timeout = timeout
        self._stream_read_timeout = stream_read_timeout
        self._direct = {base: self._owns_http and direct_possible(base) for base in self._bases}
        self._ssl: ssl.SSLContext | None = None
        #: Ends the stream being read, from another thread (``close``); None while none is.
        #: A reader sets it before it reads ``_closed``, and ``close`` sets ``_closed`` before
        #: it reads this: whichever comes second sees the other.
        self._cancel: Callable[[], None] | None = None
        self._closed = False

    @property
    def url(self) -> str:
        """The server the next request goes to."""
        return self._bases[self._at]

    def _failed(self, base: str) -> None:
        """``base`` did not answer (or answered that it cannot): the next request goes to the
        next server of the list. Only once per failure when two threads see it together."""
        if len(self._bases) > 1 and self._bases[self._at] == base:
            self._at = (self._at + 1) % len(self._bases)

    def _judge(self, base: str, status: int) -> None:
        if status in _UNAVAILABLE:
            self._failed(base)

    def get_snapshot(self, etag: str | None) -> Reply:
        headers = self._headers if etag is None else {**self._headers, "If-None-Match": etag}
        base = self.url
        try:
            response = self._http.get(base + SNAPSHOT_PATH, headers=headers)
        except httpx.TransportError:
            self._failed(base)
            raise
        self._judge(base, response.status_code)
        return Reply(response.status_code, response.content, response.headers.get("ETag"))

    def stream(self) -> Iterator[str]:
        headers = {**self._headers, "Accept": "text/event-stream"}
        base = self.url
        read = self._stream_direct if self._direct[base] else self._stream
        with self._failing_over(base):
            yield from read(base, headers)

    def events(self, at_once: Callable[[Event], bool]) -> Iterator[Event]:
        """The stream's events, as ``stream()``'s lines would give them, failing over as it
        does; where the process's shared reading thread reads the stream (``_hub.py``), each
        event is first offered to ``at_once`` there, and only those it does not serve are
        yielded."""
        headers = {**self._headers, "Accept": "text/event-stream"}
        base = self.url
        with self._failing_over(base):
            if not self._direct[base]:
                yield from read_events(self._stream(base, headers))
                return
            direct = self._direct_stream(base, headers)
            if not self._closed:
                yield from direct.events(at_once)

    @contextlib.contextmanager
    def _failing_over(self, base: str) -> Iterator[None]:
        """A stream from ``base`` that fails sends the next try to the next server."""
        try:
            yield
        except StreamRefused as exc:
            self._judge(base, exc.status)
            raise
        except (httpx.TransportError, OSError, http.client.HTTPException):
            self._failed(base)  # refused, reset, timed out: the next try goes elsewhere
            raise
        finally:
            self._cancel = None

    def _direct_stream(self, base: str, headers: dict[str, str]) -> DirectStream:
        if base.startswith("https:") and self._ssl is None:
            self._ssl = httpx.create_ssl_context(verify=True, trust_env=True)
        direct = DirectStream(
            base + STREAM_PATH,
            headers,
            timeout=self._timeout,
            read_timeout=self._stream_read_timeout,
            context=self._ssl,
        )
        self._cancel = direct.cancel
        return direct

    def _stream_direct(self, base: str, headers: dict[str, str]) -> Iterator[str]:
        direct = self._direct_stream(base, headers)
        if not self._closed:
            yield from direct.lines()

    def _stream(self, base: str, headers: dict[str, str]) -> Iterator[str]:
        with self._http.stream(
            "GET", base + STREAM_PATH, headers=headers, timeout=self._stream_timeout
        ) as response:
            refuse_unless_stream(response.status_code, response.headers.get("Content-Type", ""))
            self._cancel = partial(_end, response)
            if self._closed:
                return
            yield from response.iter_lines()

    def post_events(self, body: bytes) -> Reply:
        headers = {**self._headers, "Content-Type": "application/json"}
        base = self.url
        try:
            response = self._http.post(base + EVENTS_PATH, content=body, headers=headers)
        except httpx.TransportError:
            self._failed(base)
            raise
        self._judge(base, response.status_code)
        return Reply(response.status_code, response.content)

    def close(self) -> None:
        """Release the connections; a stream being read in another thread ends now."""
        self._closed = True
        cancel = self._cancel
        if cancel is not None:
            cancel()
        if self._owns_http:
            self._http.close()


def _end(response: httpx.Response) -> None:
    """End the read of a streamed response another thread is blocked in: shut its socket
    down, or, with no socket to reach (a transport of the caller's own), close the response,
    best effort (the reading thread is a daemon, and its read times out in any case)."""
    sock = _socket_of(response)
    if sock is not None:
        shut_down(sock)
        return
    with contextlib.suppress(Exception):
        response.close()


def _socket_of(response: httpx.Response) -> socket.socket | None:
    """The socket a streamed response is read from, where httpx's transport says (httpcore
    publishes its network stream in the response's extensions)."""
    stream = response.extensions.get("network_stream")
    extra = getattr(stream, "get_extra_info", None)
    if not callable(extra):
        return None
    try:
        sock = extra("socket")
    except Exception:
        return None
    return sock if isinstance(sock, socket.socket) else None
