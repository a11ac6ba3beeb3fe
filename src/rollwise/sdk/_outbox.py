"""Batches: cut from the aggregates, queued, and sent in order until the server takes them.

A batch gets its id (a uuid4) and its JSON body when it is cut, and keeps both until the server
answers: a retry after a failure sends the same bytes under the same id, so the server applies
it once (``{"applied": false, "duplicate": true}`` for a batch it already has). At most
``max_pending`` batches wait; past that the oldest is dropped and counted. The aggregates hear
what became of each batch's exposures: taken (they may be forgotten), or lost (counted).

Flushes are not evenly spaced: each wait is the flush interval ± ``FLUSH_JITTER`` (drawn afresh
every time, ``FlushSchedule``), so that a thousand clients started together — a deploy, or a
server they all waited for — drift apart instead of posting in lockstep forever. After a
shipment that failed (no connection, a 5xx, 408 or 429) the wait doubles with each failure in a
row, up to ``MAX_BACKOFF`` seconds (or the interval, if longer), still jittered, and it is never
shorter than the ``Retry-After`` the server asked for: a fleet that finds its server overloaded
or restarting backs off instead of piling onto it. One success brings the interval back.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from rollwise.core import ledger_unit
from rollwise.sdk._aggregation import Aggregates
from rollwise.sdk._cut import Cut
from rollwise.sdk._exposures import ExposureKey
from rollwise.sdk._throttle import Throttle
from rollwise.sdk._transport import Transport

#: Larger cuts are sent as several batches, so that no body nears the server's limits (8 MiB,
#: 50,000 rows): a thousand full latency histograms stay under 5 MiB.
MAX_AGGREGATES_PER_BATCH = 1_000
MAX_EXPOSURES_PER_BATCH = 10_000
#: Client errors worth retrying: the server timed out waiting, or asks to slow down.
RETRYABLE_CLIENT_ERRORS = frozenset({408, 429})
#: Each wait between flushes is the interval times a factor drawn uniformly from 1 ± this.
FLUSH_JITTER = 0.2
#: The longest wait, in seconds, that failures in a row stretch the flush interval to.
MAX_BACKOFF = 60.0

_Item = TypeVar("_Item")


@dataclass(frozen=True, slots=True)
class Batch:
    """One ``POST /sdk/v1/events`` body and its id, and the exposures it carries (which the
    aggregates may forget once the server has taken it)."""

    id: str
    body: bytes
    exposures: tuple[ExposureKey, ...] = ()


class FlushSchedule:
    """The waits between flushes: ``interval`` × U(1 - ``jitter``, 1 + ``jitter``), each drawn
    afresh (``rng`` for a reproducible sequence), so their mean is ``interval``."""

    def __init__(
        self, interval: float, jitter: float = FLUSH_JITTER, rng: random.Random | None = None
    ) -> None:
        if interval <= 0 or not 0 <= jitter < 1:
            raise ValueError("the interval must be positive and the jitter in [0, 1)")
        self.interval = interval
        self.jitter = jitter
        self._rng = rng if rng is not None else random.Random()

    def next_wait(self, failures: int = 0, retry_after: float | None = None) -> float:
        """Seconds until the next flush: the interval, doubled for each of ``failures``
        shipments that failed in a row (up to ``MAX_BACKOFF``, or the interval if longer),
        jittered; at least ``retry_after`` (the server's ``Retry-After``), jittered upwards."""
        base = self.interval
        if failures > 0:
            base = min(self.interval * 2.0 ** min(failures, 32), max(MAX_BACKOFF, self.interval))
        wait = base * self._rng.uniform(1 - self.jitter, 1 + self.jitter)
        if retry_after is not None and retry_after > 0:
            wait = max(wait, retry_after * self._rng.uniform(1, 1 + self.jitter))
        return wait


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _chunks(items: list[_Item], size: int) -> Iterator[list[_Item]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def encode_batches(
    cut: Cut, *, sdk: str, hashed: bool, new_id: Callable[[], str] = lambda: str(uuid.uuid4())
) -> list[Batch]:
    """The batches that carry a cut (none for an empty cut)."""
    aggregates: list[dict[str, object]] = []
    for (rollout, stage, window, exposed, segment, metric), tally in cut.tallies.items():
        aggregate: dict[str, object] = {
            "rollout": rollout,
            "stage": stage,
            "window": window,
            "exposed": exposed,
            "segment": segment,
            "metric": metric,
            "requests": tally.requests,
            "events": tally.events,
        }
        if tally.histogram is not None:
            # Sparse, flat (index, count, …): a latency fills a few dozen of the 432 buckets,
            # and the server parses and adds about a fifth of the numbers.
            aggregate["buckets"] = [x for i, n in enumerate(tally.histogram) if n for x in (i, n)]
        aggregates.append(aggregate)
    exposures = [
        {
            "rollout": rollout,
            "unit": ledger_unit(rollout, unit, hashed=hashed),
            "stage": stage,
            "exposed": exposed,
            "at": _timestamp(at),
        }
        for (rollout, unit, stage, exposed), at in cut.exposures
    ]
    gauges = [
        {"metric": metric, "value": value, "at": _timestamp(at)} for metric, value, at in cut.gauges
    ]
    parts = list(_chunks(aggregates, MAX_AGGREGATES_PER_BATCH))
    exposure_parts = list(_chunks(exposures, MAX_EXPOSURES_PER_BATCH))
    exposure_keys = list(_chunks([key for key, _ in cut.exposures], MAX_EXPOSURES_PER_BATCH))
    count = max(len(parts), len(exposure_parts), 1 if gauges else 0)
    batches = []
    for index in range(count):
        batch_id = new_id()
        document = {
            "batch": batch_id,
            "sdk": sdk,
            "aggregates": parts[index] if index < len(parts) else [],
            "exposures": exposure_parts[index] if index < len(exposure_parts) else [],
            # Gauge readings are few: they ride with the first batch of the cut.
            "gauges": gauges if index == 0 else [],
        }
        body = json.dumps(document, separators=(",", ":")).encode()
        keys = tuple(exposure_keys[index]) if index < len(exposure_keys) else ()
        batches.append(Batch(batch_id, body, keys))
    return batches


class Outbox:
    """The batches not yet taken by the server, oldest first, and the one way to send them."""

    def __init__(
        self,
        transport: Transport,
        aggregates: Aggregates,
        *,
        sdk: str,
        hashed: bool,
        max_pending: int,
        log: Throttle,
    ) -> None:
        self._transport = transport
        self._aggregates = aggregates
        self._sdk = sdk
        self._hashed = hashed
        self._max_pending = max_pending
        self._log = log
        self._pending: deque[Batch] = deque()
        # One shipment at a time (the flush thread, flush(), close()), so batches stay in order.
        self._shipping = threading.Lock()
        self.sent = 0
        self.dropped = 0
        self.rejected = 0
        #: Shipments that failed in a row (0 after one that sent everything), and the seconds
        #: the server last asked to wait (``Retry-After``): what the next flush waits for.
        self.failures = 0
        self.retry_after: float | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def ship(self, everything: bool = False) -> bool:
        """Cut the aggregates into batches and send every pending batch, in order, until one
        fails. Returns whether nothing is left pending. Never raises. ``everything``: the
        replicates' counts too, whenever they were last cut (``Aggregates.cut``)."""
        with self._shipping:
            try:
                cut = self._aggregates.cut(everything)
                if cut:
                    self._queue(encode_batches(cut, sdk=self._sdk, hashed=self._hashed))
                self.retry_after = None
                done = self._send()
            except Exception:  # the outer loop of the shell: log, keep the batches, carry on
                self._log.warning("ship", "rollwise: sending outcomes failed", exc_info=True)
                done = False
            self.failures = 0 if done else self.failures + 1
            return done

    def _queue(self, batches: list[Batch]) -> None:
        self._pending.extend(batches)
        over = len(self._pending) - self._max_pending
        for _ in range(max(over, 0)):
            dropped = self._pending.popleft()
            self.dropped += 1
            self._aggregates.lost(dropped.exposures, refused=False)
        if over > 0:
            self._log.warning(
                "overflow",
                "rollwise: %d batches waiting for the server; dropped the oldest (%d so far)",
                self._max_pending,
                self.dropped,
            )

    def _send(self) -> bool:
        while self._pending:
            batch = self._pending[0]
            try:
                reply = self._transport.post_events(batch.body)
            except Exception as exc:
                self._log.warning(
                    "post",
                    "rollwise: cannot send outcomes (%s); %d batches kept for a retry",
                    exc,
                    len(self._pending),
                )
                return False
            status = reply.status
            if 200 <= status < 300:
                self.sent += 1
                self._aggregates.acknowledged(batch.exposures)
            elif status >= 500 or status in RETRYABLE_CLIENT_ERRORS:
                self.retry_after = _retry_after(reply.body)
                self._log.warning(
                    "post",
                    "rollwise: the server answered %d to a batch; %d batches kept for a retry",
                    status,
                    len(self._pending),
                )
                return False
            else:
                self.rejected += 1
                self._log.warning(
                    "rejected",
                    "rollwise: the server rejected batch %s with %d (%s); dropped it",
                    batch.id,
                    status,
                    _detail(reply.body),
                )
                self._aggregates.lost(batch.exposures, refused=True)
            # Taken, a duplicate, or rejected for good: either way it leaves the queue (which
            # only a shipment, holding the lock, changes: the head is still this batch).
            self._pending.popleft()
        return True


def _retry_after(body: bytes) -> float | None:
    """The seconds a refusal asks to wait (``details.retry_after_s``, as the server's 503 and
    429 carry it next to the ``Retry-After`` header), within [0, 1 hour]; None without one."""
    try:
        value = json.loads(body)["details"]["retry_after_s"]
    except (ValueError, TypeError, KeyError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return min(max(float(value), 0.0), 3600.0)


def _detail(body: bytes) -> str:
    """The server's message: ``{"error", "message", "details"}`` (older servers: ``detail``)."""
    try:
        document = json.loads(body)
        detail = document["message"] if "message" in document else document["detail"]
    except (ValueError, TypeError, KeyError):
        return body[:200].decode("utf-8", "replace")
    return str(detail)[:500]
