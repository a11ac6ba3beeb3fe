"""The seam between the SDK and the network: three calls, and what they answer.

The live client speaks to the server only through a ``Transport``, so that the HTTP client is
one small class (``rollwise.sdk._http.HttpTransport``, on httpx) and tests pass a fake object
that answers from memory. A transport reports what the server said (status, body, ETag); the
SDK decides what it means. It raises only for a failed exchange (no connection, a timeout).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from rollwise.core import RollwiseError


@dataclass(frozen=True, slots=True)
class Reply:
    """What the server answered: its status, body and (for a snapshot) its ETag."""

    status: int
    body: bytes = b""
    etag: str | None = None


class StreamRefused(RollwiseError):
    """The server answered the stream request with something other than 200, or with something
    other than an event stream (a proxy's or a login page's HTML)."""

    def __init__(self, status: int, content_type: str | None = None) -> None:
        self.status = status
        self.content_type = content_type
        what = f" {content_type}, not an event stream" if content_type else ""
        super().__init__(f"the event stream answered {status}{what}")


def refuse_unless_stream(status: int, content_type: str) -> None:
    """Raise ``StreamRefused`` unless the answer to the stream request is an event stream: 200,
    and ``text/event-stream`` or no ``Content-Type`` at all. A page in its place (a proxy's, a
    captive portal's) would read as a stream without events; an answer that does not say what
    it is is taken at its word."""
    if status != 200:
        raise StreamRefused(status)
    if content_type and not content_type.startswith("text/event-stream"):
        raise StreamRefused(status, content_type)


class Transport(Protocol):
    """How the live client reaches the server (``GET /sdk/v1/snapshot``, ``GET /sdk/v1/stream``,
    ``POST /sdk/v1/events``), with the SDK key already attached."""

    def get_snapshot(self, etag: str | None) -> Reply:
        """The current snapshot; ``etag`` is sent as ``If-None-Match`` (a 304 when unchanged).

        Raises:
            Exception: the exchange failed (connection, timeout); the caller retries later.
        """
        ...

    def stream(self) -> Iterator[str]:
        """The lines of the server-sent event stream, as they arrive, without line endings.

        Ends when the server closes the stream or the transport is closed.

        Raises:
            StreamRefused: the server answered with a status other than 200, or not with an
                event stream.
            Exception: the stream could not be opened, or broke.
        """
        ...

    def post_events(self, body: bytes) -> Reply:
        """Send one batch (JSON text).

        Raises:
            Exception: the exchange failed (connection, timeout); the batch is sent again later.
        """
        ...

    def close(self) -> None:
        """Release connections; a stream being read ends (or fails) soon after."""
        ...
