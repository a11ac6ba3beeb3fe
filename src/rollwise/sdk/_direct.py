"""The event stream read with the standard library's ``http.client`` instead of httpx.

A kill switch reaches each connected SDK as one event of about 80 bytes, and what reading it
costs is paid in every application at once. httpx reads a stream through httpcore and h11,
both in Python, for every chunk: about 65–110 µs of CPU per event on the 2-core machine's
loopback (and ``iter_lines``' decoders on top), against about 25 µs for ``http.client``, whose
buffered reads and chunk-size lines are read in C (measured in the commit that added this).
With a thousand clients on a machine's cores, that difference is most of the kill switch's
latency (docs/sdk.md).

Used only where httpx would have done nothing more than this: the transport's own httpx client
(not one the caller configured with proxies, certificates or a mock), ``http`` or ``https``,
and no proxy for the server in the environment (``HTTP_PROXY``, ``HTTPS_PROXY``,
``ALL_PROXY`` unless ``NO_PROXY`` names it: httpx's own rule). TLS is set up as httpx sets up
its own (``httpx.create_ssl_context``: certifi's bundle, or ``SSL_CERT_FILE`` /
``SSL_CERT_DIR``), so a server the rest of the SDK trusts is trusted here and no other.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import ssl
import struct
import sys
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from urllib.parse import urlsplit

from rollwise.sdk._hub import READ_BYTES, Chunked, Handover, Sized, attach
from rollwise.sdk._stream import Event, read_events, read_lines
from rollwise.sdk._transport import refuse_unless_stream


def direct_possible(base: str) -> bool:
    """Whether a stream from ``base`` may be read here: http(s), no credentials in the URL
    (httpx would send them), and no proxy for it in the environment (in doubt, httpx reads
    it)."""
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    if parts.username is not None or parts.password is not None:
        return False
    try:
        proxies = urllib.request.getproxies_environment()
        if not (proxies.get(parts.scheme) or proxies.get("all")):
            return True
        # NO_PROXY's rule, as the standard library reads it (not in typeshed's stubs).
        bypass = getattr(urllib.request, "proxy_bypass_environment", None)
        return callable(bypass) and bool(bypass(parts.hostname, proxies))
    except Exception:  # a malformed variable: httpx's reading of it decides
        return False


def shut_down(sock: socket.socket) -> None:
    """End a read another thread is blocked in. Closing a socket does not wake such a thread
    (on Linux the read waits for data or its timeout); shutting it down does: the read returns
    the end of the stream, and the reading thread unwinds and closes what it opened.
    socket.socket's own shutdown, also for a TLS socket: no close_notify to exchange."""
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _hold(sock: socket.socket) -> io.RawIOBase:
    """A file on ``sock`` that keeps it open until the file is closed, as ``socket.makefile``
    does for ``http.client``'s own reads: an answer that will close the connection (``Connection:
    close``, or a body that ends with it) has ``getresponse`` close the socket, handing it to
    the response, whose reads must go on."""
    return sock.makefile("rb", buffering=0)


class _SocketFile(io.RawIOBase):
    """Reads of a socket, which it keeps open until closed (``_hold``)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._hold = _hold(sock)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._hold.close()
        super().close()


class _Reads(_SocketFile):
    """A socket's bytes for ``http.client``, each read one blocking ``recv`` that the kernel
    ends after the read timeout (``SO_RCVTIMEO``, set by ``bound_reads``).

    Python's own socket timeout polls before every read, and each of the two calls gives up
    the GIL: when a kill reaches a hundred clients in a process at once, every one waits its
    turn for the GIL twice per event instead of once. One ``recv`` per event took a sixth
    off a client's CPU per kill (100 clients in a process, a 1,000-flag snapshot: 161 against
    193 µs, the mean of five alternating runs on the 2-core machine; docs/sdk.md).
    """

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            return self._sock.recv_into(buffer)
        except BlockingIOError:
            raise TimeoutError("the event stream said nothing for its read timeout") from None


class _Socket:
    """What ``http.client.HTTPResponse`` asks of its socket: a file to read, ``_Reads``."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_Reads(self._sock))


class _Response(http.client.HTTPResponse):
    """The answer read through ``_Reads``."""

    def __init__(self, sock: socket.socket, *args: object, **kwargs: object) -> None:
        super().__init__(_Socket(sock), *args, **kwargs)  # type: ignore[arg-type]


class _Head(_SocketFile):
    """A socket's response head, line by line, and not a byte more: each line is looked at
    (``MSG_PEEK``) before it is taken, so the body stays in the socket for the shared reading
    thread (``_hub.py``). A head is a dozen lines, read once per connection."""

    def readline(self, limit: int | None = -1) -> bytes:
        limit = READ_BYTES if limit is None or limit < 0 else limit
        line = b""
        while len(line) < limit:
            try:
                ahead = self._sock.recv(min(limit - len(line), 8192), socket.MSG_PEEK)
            except BlockingIOError:
                raise TimeoutError("the event stream said nothing for its read timeout") from None
            if not ahead:
                break
            end = ahead.find(b"\n")
            line += self._sock.recv(len(ahead) if end < 0 else end + 1)
            if end >= 0:
                break
        return line


class _HeadSocket:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def makefile(self, mode: str) -> _Head:
        return _Head(self._sock)


class _HeadResponse(http.client.HTTPResponse):
    """The answer's head read through ``_Head``; its body is left to the shared thread."""

    def __init__(self, sock: socket.socket, *args: object, **kwargs: object) -> None:
        super().__init__(_HeadSocket(sock), *args, **kwargs)  # type: ignore[arg-type]


def bound_reads(sock: socket.socket, seconds: float) -> bool:
    """Make ``sock`` blocking, with reads the kernel ends after ``seconds`` of silence, where
    the platform takes a ``timeval`` for ``SO_RCVTIMEO`` (Linux, macOS) and the socket is not
    TLS (``ssl`` retries a read the kernel ended, so its reads would never time out);
    elsewhere give it Python's timeout. Whether reads are now bounded by the kernel."""
    if seconds > 0 and sys.platform in ("linux", "darwin") and not isinstance(sock, ssl.SSLSocket):
        # At least a microsecond: a zero timeval would mean no bound at all.
        whole, micro = divmod(max(1, round(seconds * 1_000_000)), 1_000_000)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", whole, micro))
        except OSError:
            pass
        else:
            sock.settimeout(None)
            return True
    sock.settimeout(seconds)
    return False


def _body_lines(response: http.client.HTTPResponse) -> Iterator[str]:
    """The lines of an answer's body, read on this thread."""
    return read_lines(iter(lambda: response.read1(READ_BYTES), b""))


class DirectStream:
    """One stream request: ``lines()`` yields its lines. ``cancel()``, from another thread,
    ends it: it shuts the socket down, or, while the socket is being connected, has ``lines``
    end once it is (each side writes before it reads, so one of them sees the other)."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        timeout: float,
        read_timeout: float,
        context: ssl.SSLContext | None,
    ) -> None:
        self._url = url
        self._headers = dict(headers)
        self._timeout = timeout
        self._read_timeout = read_timeout
        self._context = context
        self._socket: socket.socket | None = None
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True
        sock = self._socket
        if sock is not None:
            shut_down(sock)

    def lines(self) -> Iterator[str]:
        """Connect, check the answer, and yield the stream's lines until it ends.

        Raises:
            StreamRefused: a status other than 200, or not an event stream
                (``refuse_unless_stream``).
            OSError, http.client.HTTPException: the connection failed, timed out or broke.
        """
        with self._answer(shared=False) as (response, _):
            if response is not None:
                yield from _body_lines(response)

    def events(self, at_once: Callable[[Event], bool]) -> Iterator[Event]:
        """Connect, check the answer, and yield the stream's events until it ends; raises as
        ``lines`` does. Where the socket's reads can be left to the process's shared reading
        thread (a plain connection on Linux or macOS), they are: each event is first offered
        to ``at_once`` on that thread, and only those it does not serve there are yielded
        (``Handover``)."""
        with self._answer(shared=True) as (response, sock):
            if response is None:
                return
            if sock is None:  # TLS, or no kernel-bounded reads: read here
                yield from read_events(_body_lines(response))
                return
            handover = Handover(at_once)
            body = Chunked() if response.chunked else Sized(response.length)
            reader = attach(sock, body, handover, self._read_timeout)
            try:
                yield from handover
            finally:
                if not handover.ended:
                    shut_down(sock)  # the shared thread sees the end and lets the socket go
                    handover.wait_ended(5.0)
                reader.settle(1.0)

    @contextlib.contextmanager
    def _answer(
        self, *, shared: bool
    ) -> Iterator[tuple[http.client.HTTPResponse | None, socket.socket | None]]:
        """The checked answer to the stream request (None when cancelled while connecting),
        and, with ``shared``, its socket when the body may be read by the shared thread (its
        head read and nothing more)."""
        parts = urlsplit(self._url)
        host, port = parts.hostname or "", parts.port
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=self._timeout, context=self._context
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self._timeout)
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            connection.connect()
            self._socket = sock = connection.sock
            if self._cancelled or sock is None:
                yield None, None
                return
            connection.request("GET", path, headers=self._headers)
            # The answer may wait for the first event; then come keep-alives every 15 s.
            bounded = bound_reads(sock, self._read_timeout)
            if bounded:
                connection.response_class = _HeadResponse if shared else _Response
            response = connection.getresponse()
            try:
                refuse_unless_stream(response.status, response.getheader("Content-Type", ""))
                yield response, (sock if shared and bounded else None)
            finally:
                response.close()
        finally:
            self._socket = None
            with contextlib.suppress(OSError):
                connection.close()
