"""Reading the server-sent event stream: which snapshot the server serves now.

Implements the parts of the WHATWG server-sent events format the protocol uses
(html.spec.whatwg.org, "Interpreting an event stream"): lines ended by CR LF, LF or CR, UTF-8
decoded with replacement, ``field: value`` lines, several ``data`` lines joined by newlines, a
blank line dispatching the event, ``:`` comment lines (the server's keep-alives) ignored.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """One dispatched event: its type (``message`` when the server named none) and data."""

    type: str
    data: str


class LineReader:
    """The lines in a stream of bytes, fed as it arrives (``feed``), without their endings. A
    line is given once its end has arrived: a CR at the end of a chunk waits for the next one,
    which may begin with the LF of the same CR LF. What follows the last line ending is not a
    line (the format drops it).

    Nothing of a chunk is held once its lines are taken, but the unfinished last line: the
    snapshot event a stream starts with is a few hundred KiB, and a reader that kept its bytes
    until the next event freed them then — on the kill switch's path, each of a process's
    clients giving back large blocks to the allocator at the same moment."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        #: The unfinished last line, in the pieces it came in: a snapshot event is one line of
        #: a few hundred KiB, and joining each piece to the ones before as it came would copy
        #: it again at every read.
        self._pending: list[bytes] = []

    def feed(self, chunk: bytes) -> list[str]:
        pending = self._pending
        if pending and b"\n" not in chunk and b"\r" not in chunk:  # the line goes on
            pending.append(chunk)
            return []
        if pending:
            pending.append(chunk)
            data = b"".join(pending)
            pending.clear()
        else:
            data = chunk
        lines = data.splitlines(keepends=True)  # on bytes: CR LF, LF and CR only
        if not lines:
            return []
        # The last piece waits when it has no ending yet, or a CR whose LF may come next.
        if not lines[-1].endswith(b"\n"):
            pending.append(lines.pop())
        return [
            line[: -2 if line.endswith(b"\r\n") else -1].decode("utf-8", "replace")
            for line in lines
        ]


def read_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """The lines in a stream of bytes as it arrives (``LineReader``); nothing of a chunk is held
    while the next one is awaited."""
    reader = LineReader()
    for chunk in chunks:
        lines = reader.feed(chunk)
        chunk = b""  # let go of this chunk's bytes before the next is read
        yield from lines
        lines.clear()


class EventReader:
    """The events in a stream of lines (without line endings), fed one line at a time."""

    __slots__ = ("_data", "_kind")

    def __init__(self) -> None:
        self._kind = ""
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        """The event ``line`` dispatches, if it does."""
        if not line:
            data, kind = self._data, self._kind
            self._kind, self._data = "", []
            return Event(kind or "message", "\n".join(data)) if data else None
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._kind = value
        elif field == "data":
            self._data.append(value)
        # ``id`` and ``retry`` are not used: the SDK reconnects with its own backoff and
        # catches up from the snapshot the server announces on connecting.
        return None


def read_events(lines: Iterable[str]) -> Iterator[Event]:
    """The events in a stream of lines (without line endings)."""
    reader = EventReader()
    for line in lines:
        event = reader.feed(line)
        if event is not None:
            yield event


@dataclass(frozen=True, slots=True)
class Announcement:
    """What a ``snapshot`` event says: the version the server now serves and, when the event
    carries it (``{"version": 13, "flags": …, "rollouts": …}``), the snapshot itself, decoded;
    ``{"version": 13}`` alone asks the SDK to fetch it."""

    version: int | None
    document: dict[str, object] | None = None


#: The start of a snapshot event as the server writes it (``{"version":13,"flags":…``): enough
#: to tell an announcement of the version held without decoding the rest.
_VERSION_FIRST = re.compile(r'\{\s*"version"\s*:\s*(\d{1,18})\s*[,}]')


def announces(event: Event, version: int) -> bool:
    """Whether a ``snapshot`` event's data begins with ``version`` (read without decoding the
    rest)."""
    start = _VERSION_FIRST.match(event.data)
    return start is not None and int(start.group(1)) == version


def read_announcement(event: Event, held: int | None = None) -> Announcement:
    """The announcement in a ``snapshot`` event; its version is None when the data cannot be
    read, and the caller then refetches to be safe (a 304 if nothing changed).

    An event whose data begins with the version ``held`` (the server sends one on every
    connection, carrying the whole snapshot) is ``Announcement(held)`` at once: a reconnecting
    SDK does not decode a thousand-flag snapshot (milliseconds of CPU, a thousand SDKs at once
    after a server restart) only to find the version it already serves."""
    if held is not None and announces(event, held):
        return Announcement(held)
    try:
        document = json.loads(event.data)
    except ValueError:
        return Announcement(None)
    if not isinstance(document, dict):
        return Announcement(None)
    version = document.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        return Announcement(None)
    return Announcement(version, document if "flags" in document else None)


@dataclass(frozen=True, slots=True)
class Kill:
    """What a ``kill`` event says (``{"version": 14, "flag": "new-checkout", "killed": true}``):
    the snapshot of ``version`` is the one before it with that flag's kill switch set."""

    version: int
    flag: str
    killed: bool


def read_kill(event: Event) -> Kill | None:
    """The kill switch change in a ``kill`` event, or None when it cannot be read."""
    try:
        document = json.loads(event.data)
    except ValueError:
        return None
    if not isinstance(document, dict):
        return None
    version, flag, killed = document.get("version"), document.get("flag"), document.get("killed")
    if isinstance(version, bool) or not isinstance(version, int):
        return None
    if not isinstance(flag, str) or not isinstance(killed, bool):
        return None
    return Kill(version, flag, killed)
