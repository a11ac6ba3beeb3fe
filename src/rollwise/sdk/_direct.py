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
import socket
import ssl
import urllib.request
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit

from rollwise.sdk._stream import read_lines
from rollwise.sdk._transport import refuse_unless_stream

#: The most read at once; an event is far smaller, a snapshot event far larger.
READ_BYTES = 65_536


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
                return
            connection.request("GET", path, headers=self._headers)
            # The answer may wait for the first event; then come keep-alives every 15 s.
            sock.settimeout(self._read_timeout)
            response = connection.getresponse()
            try:
                refuse_unless_stream(response.status, response.getheader("Content-Type", ""))
                yield from read_lines(iter(lambda: response.read1(READ_BYTES), b""))
            finally:
                response.close()
        finally:
            self._socket = None
            with contextlib.suppress(OSError):
                connection.close()
