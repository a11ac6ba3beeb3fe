"""One thread reads every event stream of a process: the kill switch's path without a thread
wake-up per client.

With a thread per client blocked in ``recv``, a kill reaching a process's clients wakes each
of their threads, and each then waits its turn for the GIL: on the 2-core machine that was
about 100 µs of CPU per client per event, for about 11 µs of Python work (docs/sdk.md). Here
one thread waits on all of the process's streams at once (``selectors``: epoll on Linux,
kqueue on macOS); when the kill arrives it reads each stream in turn and applies the event
right there. A process with one client (most applications) has one reading thread, as before;
a process with many shares it.

Only what cannot block is done on this thread: a kill switch set on the snapshot being served,
an announcement of the version held. Anything else (a snapshot to decode or fetch, a cache
file to write) is handed to the client's own thread, in order (``Handover``), and the shared
thread goes on with the other streams. The client's ``on_change`` listeners run where the
snapshot is swapped, so a listener that blocks delays the other clients of its process.

A stream comes here with its response head read and nothing more (``_direct.py``); the body is
decoded here: HTTP/1.1 chunks (RFC 9112 §7.1), a length, or bytes up to the end. The thread
ends a stream on a clean end of the body, a broken or malformed one, or silence longer than its
read timeout; the client's thread then sees that end as it would from its own read.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator

from rollwise.sdk._stream import Event, EventReader, LineReader

#: The most read from a stream at once.
READ_BYTES = 65_536
#: A chunk-size line longer than this is not HTTP/1.1 (RFC 9112 allows extensions; none is sent).
_SIZE_LINE_MAX = 4_096
#: How often silent streams are looked for (their read timeouts are far longer).
_SWEEP_SECONDS = 1.0


class Chunked:
    """The payload of a ``Transfer-Encoding: chunked`` body, decoded as its bytes arrive
    (RFC 9112 §7.1: a hexadecimal size line, that many bytes and a CR LF, up to a size of 0,
    then trailer lines up to an empty one)."""

    __slots__ = ("_left", "_line", "_state", "done")

    def __init__(self) -> None:
        self._state = "size"  # size, data, crlf, trailer
        self._left = 0
        self._line = b""
        self.done = False

    def feed(self, data: bytes) -> bytes:
        """The payload in ``data``.

        Raises:
            http.client.HTTPException: the body is not chunked as RFC 9112 says.
        """
        out: list[bytes] = []
        at, end = 0, len(data)
        while at < end and not self.done:
            if self._state == "data":
                take = min(self._left, end - at)
                out.append(data[at : at + take])
                at += take
                self._left -= take
                if not self._left:
                    self._state = "crlf"
                continue
            newline = data.find(b"\n", at)
            if newline < 0:
                self._line += data[at:]
                at = end
            else:
                line, self._line = self._line + data[at:newline], b""
                at = newline + 1
                self._line_ended(line.removesuffix(b"\r"))
            if len(self._line) > _SIZE_LINE_MAX:
                raise http.client.HTTPException("a chunk-size line too long")
        return b"".join(out)

    def _line_ended(self, line: bytes) -> None:
        if self._state == "crlf":
            if line:
                raise http.client.HTTPException("a chunk not ended by CR LF")
            self._state = "size"
        elif self._state == "trailer":
            self.done = not line
        else:
            size = line.partition(b";")[0].strip()
            try:
                if not size or len(size) > 16:
                    raise ValueError
                self._left = int(size, 16)
            except ValueError:
                raise http.client.HTTPException(f"a bad chunk size {size[:20]!r}") from None
            self._state = "data" if self._left else "trailer"

    def finish(self) -> None:
        """The connection ended. Raises ``http.client.IncompleteRead`` unless the body did."""
        if not self.done:
            raise http.client.IncompleteRead(b"")


class Sized:
    """A body of a known length (``Content-Length``), or, with None, up to the end."""

    __slots__ = ("_left", "done")

    def __init__(self, length: int | None) -> None:
        self._left = length
        self.done = length == 0

    def feed(self, data: bytes) -> bytes:
        if self._left is None:
            return data
        data = data[: self._left]
        self._left -= len(data)
        self.done = not self._left
        return data

    def finish(self) -> None:
        if self._left:
            raise http.client.IncompleteRead(b"", self._left)


Body = Chunked | Sized


class Handover:
    """Where the shared thread leaves a stream's events for the client's own thread, and the
    stream's end. ``at_once(event)`` is first offered each event on the shared thread, when
    nothing handed over is waiting or being handled (so events are served in order); it
    returns whether it served the event there.

    The client's thread iterates: it gets each event handed over, and the iteration ends with
    the stream (raising what ended it, if anything broke)."""

    def __init__(self, at_once: Callable[[Event], bool]) -> None:
        self._at_once = at_once
        #: Whether the thread reading this stream still runs (set by ``attach``).
        self.alive: Callable[[], bool] = lambda: True
        self._ready = threading.Condition(threading.Lock())
        self._queue: collections.deque[Event] = collections.deque()
        #: The client's thread holds an event it was given (until it asks for the next).
        self._busy = False
        self._end: list[BaseException | None] = []

    @property
    def ended(self) -> bool:
        return bool(self._end)

    def put(self, event: Event) -> None:
        """On the shared thread: serve ``event`` there, or hand it over."""
        with self._ready:
            waiting = self._busy or bool(self._queue)
            if waiting:
                self._queue.append(event)
                self._ready.notify()
                return
        # Nothing is handed over, and only this thread hands over: the client's thread is idle.
        try:
            if self._at_once(event):
                return
        except Exception:  # it is tried again on the client's thread, which logs
            pass
        with self._ready:
            self._queue.append(event)
            self._ready.notify()

    def end(self, error: BaseException | None) -> None:
        """On the shared thread: the stream ended (``error`` is what broke it, if anything)."""
        with self._ready:
            if not self._end:
                self._end.append(error)
            self._ready.notify()

    def wait_ended(self, seconds: float) -> bool:
        with self._ready:
            return self._ready.wait_for(lambda: bool(self._end), seconds)

    def __iter__(self) -> Iterator[Event]:
        while True:
            with self._ready:
                self._busy = False
                while not self._queue and not self._end:
                    if not self._ready.wait(_SWEEP_SECONDS) and not self.alive():
                        raise RuntimeError("the thread reading the event streams stopped")
                if not self._queue:
                    error = self._end[0]
                    if error is not None:
                        raise error
                    return
                event = self._queue.popleft()
                self._busy = True
            yield event


class _Read:
    """One stream as the shared thread reads it."""

    __slots__ = ("body", "events", "handover", "last", "lines", "sock", "timeout")

    def __init__(self, sock: socket.socket, body: Body, handover: Handover, timeout: float):
        self.sock = sock
        self.body = body
        self.handover = handover
        self.timeout = timeout
        self.lines = LineReader()
        self.events = EventReader()
        self.last = time.monotonic()

    def readable(self) -> bool:
        """Read what has arrived and pass its events on; whether the stream goes on."""
        try:
            data = self.sock.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return True
        self.last = time.monotonic()
        if not data:
            self.body.finish()
            return False
        payload = self.body.feed(data)
        del data
        if payload:
            lines = self.lines.feed(payload)
            del payload
            for line in lines:
                event = self.events.feed(line)
                if event is not None:
                    self.handover.put(event)
        return not self.body.done


class Hub:
    """The thread that reads a process's event streams (``attach`` gives a stream to the
    process's own). It starts with the first stream and ends with the last, so that a process
    whose clients are closed has no thread of rollwise left."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._selector = selectors.DefaultSelector()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._wake_write.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ, None)
        self._incoming: collections.deque[_Read] = collections.deque()
        self._reads: set[_Read] = set()
        #: Set (under ``_HUB_LOCK``) when the last stream ended and none is coming.
        self._retiring = False
        self._thread = threading.Thread(target=self._run, name="rollwise-streams", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self.pid == os.getpid() and not self._retiring and self._thread.is_alive()

    def settle(self, seconds: float) -> None:
        """Once a stream ended: wait for the thread's end if it is ending (it had no other)."""
        if self._retiring and threading.current_thread() is not self._thread:
            self._thread.join(seconds)

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._selector.close()
            self._wake_read.close()
            self._wake_write.close()

    def _loop(self) -> None:
        sweep = time.monotonic() + _SWEEP_SECONDS
        while not self._retiring:
            try:
                ready = self._selector.select(_SWEEP_SECONDS)
            except OSError as exc:  # a socket closed while watched (a bug): drop it
                for read in [r for r in self._reads if r.sock.fileno() < 0]:
                    self._detach(read, exc)
                time.sleep(0.01)
                continue
            for key, _ in ready:
                watched: _Read | None = key.data
                if watched is None:
                    with contextlib.suppress(OSError):
                        self._wake_read.recv(4096)
                elif watched in self._reads:
                    try:
                        going = watched.readable()
                    except Exception as exc:  # broken, malformed: that stream ends, not others
                        self._detach(watched, exc)
                    else:
                        if not going:
                            self._detach(watched, None)
            with _HUB_LOCK:
                incoming = list(self._incoming)
                self._incoming.clear()
            for read in incoming:
                try:
                    self._selector.register(read.sock, selectors.EVENT_READ, read)
                except (OSError, ValueError, KeyError) as exc:
                    read.handover.end(exc)
                else:
                    self._reads.add(read)
            now = time.monotonic()
            if now >= sweep:
                sweep = now + _SWEEP_SECONDS
                for read in [r for r in self._reads if now - r.last > r.timeout]:
                    silent = TimeoutError("the event stream said nothing for its read timeout")
                    self._detach(read, silent)
            self._retire_if_idle()

    def _detach(self, read: _Read, error: BaseException | None) -> None:
        """Stop watching ``read``'s socket, then tell its client's thread (which may close
        the socket from then on)."""
        self._reads.discard(read)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(read.sock)
        self._retire_if_idle()  # before the end is told: a close() then finds it ending
        read.handover.end(error)

    def _retire_if_idle(self) -> None:
        global _HUB
        if self._reads:
            return
        with _HUB_LOCK:
            if not self._incoming:
                self._retiring = True
                if _HUB is self:
                    _HUB = None


_HUB: Hub | None = None
_HUB_LOCK = threading.Lock()


def attach(sock: socket.socket, body: Body, handover: Handover, timeout: float) -> Hub:
    """Have this process's reading thread (started if none runs) read ``sock``'s body from now
    on, passing its events to ``handover``. The caller ends the stream by shutting the socket
    down (``shut_down``), closes it only once ``handover`` has ended (it is then no longer
    watched), and then lets the thread ``settle``."""
    global _HUB
    read = _Read(sock, body, handover, timeout)
    with _HUB_LOCK:
        if _HUB is None or not _HUB.alive():
            _HUB = Hub()
        reader = _HUB
        handover.alive = reader.alive
        if body.done:  # an empty body: nothing to read
            handover.end(None)
            return reader
        sock.setblocking(False)
        reader._incoming.append(read)
    with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
        reader._wake_write.send(b"\0")
    return reader
