"""The one writer of SDK batches: requests queue their checked batch and wait for its commit.

Many request handlers writing to SQLite at once fight over its single write lock (``database is
locked``, seconds of waiting). Instead, every batch goes through one thread that takes whatever
is queued (up to ``max_group_rows`` rows), writes it in one transaction with the store's set
operations (``Store.ingest_many``), commits, and only then answers each waiting request: a batch
acknowledged is a batch committed, so a ``kill -9`` loses nothing that was acknowledged (the SDK
retries what was not, under the same id, and the store counts it once).

- **Bounded**: at most ``max_queued_rows`` rows wait (or one batch, however large, when nothing
  else does), and at most ``max_in_flight`` batches (256) are being received, checked or
  written at once (``admitted``, taken before the body is read: 256 places let a thousand
  SDKs' backlog after a restart in at once, their batches being some 15 KB each, where 64 sent
  a few hundred of them back with 503); past either a request is answered 503
  with ``Retry-After`` at once, so memory stays bounded, an overloaded server spends nothing on
  batches it cannot take (rather than parsing them for clients that time out), and the SDK keeps
  the batch for its next flush.
- **Isolated**: batches are checked against the store before they are queued, so a group rarely
  fails; when one does, its batches are written again one by one, and only the bad one fails.
- **Paced**: after each transaction the writer rests for half as long as the transaction took,
  and at least ``min_rest``, before the next. Other writers of the database — a kill switch, the
  controller's decisions — get SQLite's lock within a few of its busy-handler polls however much
  is queued, and batches gather meanwhile, so that each transaction merges more of them (the
  cost of a transaction is per key, not per batch: 40 SDKs reporting the same tenants cost
  little more than one). On PostgreSQL (row locks) only the gathering matters.

The same writer serves both databases: on PostgreSQL it still saves a commit (and an fsync) per
batch, and replicas' writers never deadlock (see ``rollwise.store._ingest``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Protocol

import sqlalchemy.exc
from fastapi import Depends, HTTPException, Request

from rollwise.store import EventBatch

logger = logging.getLogger("rollwise.server")

#: Seconds between two lines of the writer's counters in the server's log.
REPORT_EVERY = 30.0

__all__ = ["Admitted", "BatchSink", "BatchWriter", "Busy"]


class BatchSink(Protocol):
    """What the writer writes to: ``Store.ingest_many``."""

    def ingest_many(self, batches: Sequence[EventBatch]) -> list[bool]: ...


class Busy(HTTPException):
    """503: the batch was not queued (the queue is full, the writer is stopping, or the
    database could not be written); nothing of it was stored. Send it again after
    ``Retry-After`` seconds, under the same id."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(
            503,
            {
                "error": "unavailable",
                "message": message,
                "details": {"retry_after_s": retry_after},
            },
            headers={"Retry-After": str(retry_after)},
        )


@dataclass(slots=True)
class _Pending:
    batch: EventBatch
    done: concurrent.futures.Future[bool] = field(default_factory=concurrent.futures.Future)


@dataclass(slots=True)
class WriterStats:
    """Counters, for tests, benchmarks and metrics."""

    transactions: int = 0
    batches: int = 0
    duplicates: int = 0
    failed: int = 0
    refused_busy: int = 0
    retried_groups: int = 0
    largest_group: int = 0
    #: Seconds spent in transactions (on SQLite: holding the write lock), and the longest.
    busy_s: float = 0.0
    longest_s: float = 0.0

    def summary(self) -> str:
        mean = 1000 * self.busy_s / max(self.transactions, 1)
        return (
            f"{self.batches} batches ({self.duplicates} duplicates) in {self.transactions} "
            f"transactions (up to {self.largest_group} batches each; {mean:.1f} ms on average, "
            f"longest {1000 * self.longest_s:.1f} ms); {self.failed} failed, "
            f"{self.refused_busy} refused as busy, {self.retried_groups} groups retried"
        )


class BatchWriter:
    """Owns the writer thread. ``start`` it, ``await write(batch)`` from request handlers, and
    ``close`` it at shutdown (what is queued is written first)."""

    def __init__(
        self,
        sink: BatchSink,
        *,
        max_queued_rows: int = 100_000,
        max_group_rows: int = 20_000,
        max_in_flight: int = 256,
        rest_ratio: float = 0.5,
        min_rest: float = 0.05,
    ) -> None:
        if min(max_queued_rows, max_group_rows, max_in_flight) < 1 or min(rest_ratio, min_rest) < 0:
            raise ValueError("bounds must be at least 1 and rests not negative")
        self._sink = sink
        self._max_queued_rows = max_queued_rows
        self._max_group_rows = max_group_rows
        self._max_in_flight = max_in_flight
        self._in_flight = 0
        self._rest_ratio = rest_ratio
        self._min_rest = min_rest
        self._queue: deque[_Pending] = deque()
        #: Rows queued or being written (released when their transaction ends).
        self._rows = 0
        self._condition = threading.Condition()
        self._closing = False
        self._rows_per_second = 10_000.0
        self._next_report = time.monotonic() + REPORT_EVERY
        self._thread = threading.Thread(target=self._run, name="rollwise-writer", daemon=True)
        self._started = False
        self.stats = WriterStats()

    @property
    def queued_rows(self) -> int:
        return self._rows

    def start(self) -> None:
        """Start the thread (the first ``submit`` does, if this was not called)."""
        with self._condition:
            self._start()

    def _start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """Hold one of the ``max_in_flight`` places while a batch is received and written
        (used from the event loop's thread only).

        Raises:
            Busy: every place is taken; nothing was read.
        """
        if self._in_flight >= self._max_in_flight:
            self.stats.refused_busy += 1
            raise Busy(
                f"{self._in_flight} batches are being written: send the batch again in 1 s", 1
            )
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    async def write(self, batch: EventBatch) -> bool:
        """Queue ``batch`` and wait until its transaction committed. Returns whether it was
        applied (False: its id was applied before).

        Raises:
            Busy: it was not queued, or the database could not be written (503).
            StoreError: the store refused it (the others of its group were written).
        """
        return await asyncio.wrap_future(self.submit(batch))

    def submit(self, batch: EventBatch) -> concurrent.futures.Future[bool]:
        """Queue ``batch``; the future is resolved once its transaction ended.

        Raises:
            Busy: the queue is full or the writer is stopping; nothing was queued.
        """
        rows = max(batch.rows, 1)
        with self._condition:
            if self._closing:
                raise Busy("the server is stopping: send the batch again shortly", 1)
            self._start()
            if self._rows and self._rows + rows > self._max_queued_rows:
                self.stats.refused_busy += 1
                wait = max(1, min(30, math.ceil(self._rows / self._rows_per_second)))
                raise Busy(
                    f"{self._rows} rows are waiting to be written: send the batch again in "
                    f"{wait} s",
                    wait,
                )
            pending = _Pending(batch)
            self._queue.append(pending)
            self._rows += rows
            self._condition.notify()
        return pending.done

    def close(self, timeout: float = 30.0) -> None:
        """Take no more batches, write what is queued, and stop the thread."""
        with self._condition:
            self._closing = True
            self._condition.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self.stats.transactions:
            logger.info("batch writer: %s", self.stats.summary())

    # --- the thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._queue and not self._closing:
                    self._condition.wait()
                if not self._queue:
                    return
                group = self._take()
            if not group:
                continue
            began = time.perf_counter()
            outcomes = self._write(group)
            took = time.perf_counter() - began
            self.stats.busy_s += took
            self.stats.longest_s = max(self.stats.longest_s, took)
            if time.monotonic() >= self._next_report:
                self._next_report = time.monotonic() + REPORT_EVERY
                logger.info("batch writer: %s", self.stats.summary())
            rows = sum(max(p.batch.rows, 1) for p in group)
            with self._condition:  # room in the queue before anyone hears back
                self._rows -= rows
            for pending, outcome in zip(group, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    pending.done.set_exception(outcome)
                else:
                    pending.done.set_result(outcome)
            if took > 0:
                self._rows_per_second = 0.8 * self._rows_per_second + 0.2 * (rows / took)
            rest = max(self._min_rest, self._rest_ratio * took)
            if rest > 0 and self._queue and not self._closing:
                time.sleep(rest)

    def _take(self) -> list[_Pending]:
        """The oldest batches, up to ``max_group_rows`` rows (at least one batch). A batch
        whose request was cancelled meanwhile is left out (its SDK sends it again); the others
        can no longer be cancelled."""
        group: list[_Pending] = []
        rows = 0
        while self._queue and (
            not group or rows + self._queue[0].batch.rows <= self._max_group_rows
        ):
            pending = self._queue.popleft()
            if pending.done.set_running_or_notify_cancel():
                rows += pending.batch.rows
                group.append(pending)
            else:
                self._rows -= max(pending.batch.rows, 1)
        return group

    def _write(self, group: list[_Pending]) -> list[bool | Exception]:
        """Per batch: whether it was applied, or why it was not."""
        try:
            applied = self._sink.ingest_many([p.batch for p in group])
        except Exception as exc:
            if len(group) == 1:
                return [self._failure(group[0], exc)]
            # One batch spoilt the group (it changed since it was checked, or the database
            # hiccuped): each is written alone, so only a bad one fails.
            self.stats.retried_groups += 1
            logger.warning(
                "a group of %d batches failed (%s); writing them one by one", len(group), exc
            )
            return [self._write([pending])[0] for pending in group]
        self.stats.transactions += 1
        self.stats.largest_group = max(self.stats.largest_group, len(group))
        self.stats.batches += len(group)
        self.stats.duplicates += applied.count(False)
        return list(applied)

    def _failure(self, pending: _Pending, exc: Exception) -> Exception:
        self.stats.failed += 1
        if isinstance(exc, sqlalchemy.exc.OperationalError):
            # The database is unreachable or locked: nothing was stored, the SDK retries.
            logger.error("batch %s not written: %s", pending.batch.id, exc)
            return Busy("the database could not be written: send the batch again shortly", 1)
        return exc


async def _admit(request: Request) -> AsyncIterator[None]:
    with request.app.state.writer.admitted():
        yield


#: A dependency that holds one of the app's writer places for the request, taken before its
#: body is read (503 when none is free).
Admitted = Annotated[None, Depends(_admit)]
