"""The live half of a client: its aggregates, its outbox and the threads that serve them.

Imported only when a client is given a server URL, so that an offline client (and the CLI,
which imports ``rollwise``) loads neither httpx nor the histogram edges.

Three daemon threads, each with one job. ``rollwise-sync`` follows the event stream (a blocking
read: it waits for the server, so a kill switch is applied the moment it is announced) and polls
while the stream is down; ``rollwise-flush`` cuts and sends a batch every ``flush_interval``
(± 20 %: clients started together do not flush in lockstep). A single thread could not do both
without either reconnecting the stream at every flush or delaying flushes (and, behind a slow
POST, kill switches) by up to a keep-alive interval. ``rollwise-attribute`` attributes the
outcomes the application hands over, off its request path (``_deferred.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from rollwise.sdk._aggregation import Aggregates
from rollwise.sdk._deferred import Deferred
from rollwise.sdk._http import HttpTransport
from rollwise.sdk._outbox import FlushSchedule, Outbox
from rollwise.sdk._snapshot import Snapshot
from rollwise.sdk._stats import ClientStats
from rollwise.sdk._sync import SnapshotFollower
from rollwise.sdk._throttle import Throttle
from rollwise.sdk._transport import Transport

#: Exposures remembered so that each is shipped once. The oldest the server has acknowledged
#: are forgotten to make room; only when this many are all waiting for it is a new one dropped.
MAX_EXPOSURES = 100_000


def _sdk_name() -> str:
    try:
        return f"rollwise-python/{metadata.version('rollwise')}"
    except metadata.PackageNotFoundError:
        return "rollwise-python/unknown"


SDK = _sdk_name()


class Live:
    """Owns the transport and the threads of one live client."""

    def __init__(
        self,
        url: str | Sequence[str],
        sdk_key: str,
        *,
        on_snapshot: Callable[[Snapshot], None],
        log: Throttle,
        transport: Transport | None = None,
        cache_path: Path | None = None,
        flush_interval: float = 5.0,
        poll_interval: float = 30.0,
        max_pending_batches: int = 200,
        max_keys: int = 50_000,
        hashed: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._transport: Transport = (
            transport if transport is not None else HttpTransport(url, sdk_key, user_agent=SDK)
        )
        self._flushes = FlushSchedule(flush_interval)
        self._log = log
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.aggregates = Aggregates(
            max_keys=max_keys, max_exposures=MAX_EXPOSURES, clock=clock, log=log
        )
        self.deferred = Deferred(self.aggregates, log)
        self.outbox = Outbox(
            self._transport,
            self.aggregates,
            sdk=SDK,
            hashed=hashed,
            max_pending=max_pending_batches,
            log=log,
        )
        self.follower = SnapshotFollower(
            self._transport,
            on_snapshot=on_snapshot,
            stop=self._stop,
            log=log,
            cache_path=cache_path,
            poll_interval=poll_interval,
        )
        self._sync = threading.Thread(
            target=self.follower.follow, args=(self._ready,), name="rollwise-sync", daemon=True
        )
        self._flush = threading.Thread(target=self._flush_loop, name="rollwise-flush", daemon=True)
        self._closed = False

    def start(self, startup_timeout: float) -> None:
        """Serve the cached snapshot, start the threads, and wait up to ``startup_timeout`` for
        the first fetch (the application starts either way)."""
        self.follower.load_cache()
        self.deferred.start()
        self._sync.start()
        self._flush.start()
        self._ready.wait(startup_timeout)

    def _flush_loop(self) -> None:
        outbox = self.outbox
        while not self._stop.wait(self._flushes.next_wait(outbox.failures, outbox.retry_after)):
            outbox.ship()
        self.outbox.ship(everything=True)  # the last batch, on close()

    def close(self, timeout: float) -> None:
        """Stop the threads after a last flush; wait at most ``timeout`` seconds in all.

        With nothing pending this takes milliseconds: the flush thread wakes at once, finds
        nothing to send, and closing the transport ends the stream read of the sync thread
        (``HttpTransport.close`` shuts its socket down) instead of waiting for a keep-alive."""
        if self._closed:
            return
        self._closed = True
        deadline = time.monotonic() + timeout
        self._stop.set()
        # What is still waiting is attributed by the last flush's cut.
        self.deferred.stop(timeout)
        if self._flush.is_alive():
            self._flush.join(max(deadline - time.monotonic(), 0.0))
        else:  # never started: flush here
            self.outbox.ship(everything=True)
        # Only now, after the last flush had the connections: closing the transport ends the
        # stream read that would otherwise wait for the server's next keep-alive.
        try:
            self._transport.close()
        except Exception:
            self._log.warning("close", "rollwise: closing the transport failed", exc_info=True)
        if self._sync.is_alive():
            self._sync.join(max(deadline - time.monotonic(), 0.0))

    def stats(self) -> ClientStats:
        outbox, aggregates = self.outbox, self.aggregates
        return ClientStats(
            snapshot_version=self.follower.version or 0,
            stream_connected=self.follower.connected,
            pending_batches=outbox.pending,
            batches_sent=outbox.sent,
            batches_dropped=outbox.dropped,
            batches_rejected=outbox.rejected,
            outcomes_dropped=aggregates.outcomes_dropped,
            exposures_dropped=aggregates.exposures_dropped,
        )
