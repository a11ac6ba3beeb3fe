"""Keeping the snapshot current: follow the event stream, poll while it is down, cache to disk.

The stream announces each new snapshot (and the current one on connecting). An event that
carries the snapshot is served as it is, with no second round trip (a kill switch reaches the
application as fast as the event does); one that carries only a version other than the one held
makes the follower fetch it with ``If-None-Match``, so a repeat costs a 304. A kill switch
flipped through the server the SDK is connected to comes as ``event: kill`` (asked for with
``?kills=true``): the switch is set on the snapshot served, with nothing to read. When the
stream breaks, it is reopened after an exponential backoff with jitter (0.5 s doubling to 30 s),
and meanwhile the snapshot is polled every ``poll_interval``. Every good snapshot is written to
``cache_path`` atomically, and read back at startup, so that a restart while the server is
unreachable serves the last flags it knew.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Generic, TypeVar, cast

from rollwise.core import InputError
from rollwise.sdk._snapshot import Snapshot, parse_snapshot, snapshot_of, with_kill
from rollwise.sdk._stream import (
    Announcement,
    Event,
    Kill,
    announces,
    read_announcement,
    read_events,
    read_kill,
)
from rollwise.sdk._throttle import Throttle
from rollwise.sdk._transport import StreamRefused, Transport

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
_REFUSED = frozenset({401, 403})
_T = TypeVar("_T")


class _Lines(Generic[_T]):
    """A stream's lines (or events), closed (its connection released) as soon as the follower
    stops reading, rather than whenever the garbage collector gets to it."""

    def __init__(self, lines: Iterator[_T]) -> None:
        self._lines = lines

    def __iter__(self) -> Iterator[_T]:
        return self._lines

    def close(self) -> None:
        close = getattr(self._lines, "close", None)
        if callable(close):
            close()


def _read_events(lines: _Lines[str]) -> Iterator[Event]:
    with contextlib.closing(lines):
        yield from read_events(lines)


class SnapshotFollower:
    """Fetches snapshots and hands each good one to ``on_snapshot``; ``follow`` is the body of
    the thread that keeps it current until ``stop`` is set."""

    def __init__(
        self,
        transport: Transport,
        *,
        on_snapshot: Callable[[Snapshot], None],
        stop: threading.Event,
        log: Throttle,
        cache_path: Path | None = None,
        poll_interval: float = 30.0,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self._transport = transport
        self._on_snapshot = on_snapshot
        self._stop = stop
        self._log = log
        self._cache_path = cache_path
        self._poll_interval = poll_interval
        self._backoff_first = backoff_first
        self._backoff_max = backoff_max
        self._random = random.Random()
        self._etag: str | None = None
        self._last_fetch = -math.inf
        #: The snapshot being served: a new one is read against it (None until one arrives).
        self._snapshot: Snapshot | None = None
        #: The version being served (None until a snapshot arrives).
        self.version: int | None = None
        self.connected = False

    def load_cache(self) -> bool:
        """Serve the snapshot saved by an earlier run, if there is a readable one."""
        if self._cache_path is None:
            return False
        try:
            body = self._cache_path.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as exc:
            self._log.warning("cache", "rollwise: cannot read the snapshot cache: %s", exc)
            return False
        try:
            snapshot = parse_snapshot(body, str(self._cache_path))
        except InputError as exc:
            self._log.warning("cache", "rollwise: ignoring the snapshot cache: %s", exc)
            return False
        self._use(snapshot, None)
        return True

    def refresh(self) -> None:
        """Fetch the snapshot and serve it if it changed. Never raises."""
        self._last_fetch = time.monotonic()
        try:
            reply = self._transport.get_snapshot(self._etag)
        except Exception as exc:
            self._warn("fetch", "rollwise: cannot fetch the snapshot (%s); serving version %s", exc)
            return
        if reply.status == 304:
            return
        if reply.status != 200:
            what = "refused the SDK key" if reply.status in _REFUSED else "failed"
            self._warn(
                "fetch",
                f"rollwise: the snapshot request {what} ({reply.status}); serving version %s",
            )
            return
        try:
            snapshot = parse_snapshot(reply.body, previous=self._snapshot)
        except InputError as exc:
            self._warn("fetch", "rollwise: ignoring a bad snapshot (%s); serving version %s", exc)
            return
        self._use(snapshot, reply.etag)
        self._save(reply.body)

    def follow(self, ready: threading.Event) -> None:
        """The thread body: fetch once (then set ``ready``), then follow the stream until
        ``stop``, polling while it is down."""
        try:
            self.refresh()
        finally:
            ready.set()
        delay = self._backoff_first
        while not self._stop.is_set():
            try:
                with contextlib.closing(_Lines(self._events())) as events:
                    for event in events:
                        if self._stop.is_set():
                            break
                        if event.type == "snapshot":
                            self._follow(read_announcement(event, self.version), event.data)
                        elif event.type == "kill":
                            self._kill(event)
                        # Once served: connected means serving what the stream said so far.
                        self.connected = True
                        # Not kept while the next event is awaited (``read_lines``).
                        del event
            except StreamRefused as exc:
                self._warn("stream", f"rollwise: {exc}; polling the snapshot (version %s)")
            except Exception as exc:
                if self._stop.is_set():  # close() ended the stream: nothing broke
                    break
                self._warn("stream", "rollwise: the event stream broke (%s); version %s", exc)
            if self.connected:  # an event came: the server answered, start the backoff over
                delay = self._backoff_first
            self.connected = False
            self._wait_polling(delay * self._random.uniform(0.5, 1.0))
            delay = min(delay * 2.0, self._backoff_max)
        self.connected = False

    def _events(self) -> Iterator[Event]:
        """The stream's events: through the transport's ``events`` where it has one (the
        process's shared reading thread serves what it can at once, ``_at_once``), else read
        from its lines here."""
        events = getattr(self._transport, "events", None)
        if callable(events):
            return cast(Iterator[Event], events(self._at_once))
        return _read_events(_Lines(self._transport.stream()))

    def _at_once(self, event: Event) -> bool:
        """On the shared reading thread, while this follower's thread has no event in hand:
        serve ``event`` there if nothing in it can block — a kill switch set on the snapshot
        served (with no cache file to rewrite), an announcement of the version held, an event
        of a type the protocol does not use. Whether it did; the follower's thread takes any
        other."""
        if event.type == "kill":
            served = self._cache_path is None and self._kill_in_place(read_kill(event))
        elif event.type == "snapshot":
            served = self.version is not None and announces(event, self.version)
        else:
            served = True
        if served:  # else the follower's thread says so once it has served it
            self.connected = True
        return served

    def _follow(self, announced: Announcement, data: str) -> None:
        """Serve what an event announces: the snapshot it carries, or else a fetch."""
        if announced.version is not None and announced.version == self.version:
            return
        if announced.document is None:
            self.refresh()
            return
        try:
            snapshot = snapshot_of(announced.document, "snapshot event", self._snapshot)
        except InputError as exc:
            self._warn("fetch", "rollwise: ignoring a bad snapshot event (%s); version %s", exc)
            self.refresh()
            return
        self._use(snapshot, None)
        self._save(data.encode())

    def _kill(self, event: Event) -> None:
        """Apply a kill switch change to the snapshot served when it is the next version (no
        snapshot to read: a kill reaches the application in microseconds); otherwise, or when
        a cache file is kept (it must hold the whole snapshot), fetch the snapshot."""
        if not self._kill_in_place(read_kill(event)):
            self.refresh()
        elif self._cache_path is not None:
            self._etag = None  # the whole snapshot of this version, not a 304
            self.refresh()

    def _kill_in_place(self, kill: Kill | None) -> bool:
        """Serve the snapshot served with ``kill`` set, if it says what the next version is."""
        current = self._snapshot
        if (
            kill is None
            or current is None
            or self.version is None
            or kill.version != self.version + 1
            or current.flag(kill.flag) is None
        ):
            return False
        self._use(with_kill(current, kill.flag, kill.killed, kill.version), None)
        return True

    def _wait_polling(self, seconds: float) -> None:
        """Wait before reconnecting, fetching the snapshot whenever a poll is due."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            now = time.monotonic()
            if now - self._last_fetch >= self._poll_interval:
                self.refresh()
                now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                return
            self._stop.wait(min(remaining, self._poll_interval - (now - self._last_fetch)))

    def _use(self, snapshot: Snapshot, etag: str | None) -> None:
        self._on_snapshot(snapshot)
        self._snapshot = snapshot
        self.version = snapshot.version
        self._etag = etag or f'"{snapshot.version}"'

    def _save(self, body: bytes) -> None:
        """Write the snapshot where the next start will find it: a temporary file in the same
        directory, then a rename, so a reader never sees half a file."""
        path = self._cache_path
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(body)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as exc:
            self._log.warning("cache", "rollwise: cannot write the snapshot cache: %s", exc)

    def _warn(self, topic: str, message: str, *args: object) -> None:
        # Closing the transport on shutdown breaks requests in flight: that is not news.
        if not self._stop.is_set():
            self._log.warning(topic, message, *args, self.version)
