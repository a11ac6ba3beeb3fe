"""What the OFREP routes (``_ofrep.py``) share: the snapshot decoded for evaluation, the
exposures remote evaluations served on their way to the ledger, and the rate limit per key."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rollwise.core import FlagSet, ledger_unit
from rollwise.core._decoded import DecodedFlags, read_flags_document
from rollwise.server._writer import Busy
from rollwise.store import EventBatch, ExposureRow, StoreError

logger = logging.getLogger("rollwise.server.ofrep")


# --- what is evaluated ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exposing:
    """A live rollout on a flag, as an evaluation feeds the ledger for it."""

    rollout: int
    stage: int
    variant: str
    unit: str


@dataclass(frozen=True, slots=True)
class Served:
    """One snapshot version, decoded for evaluation."""

    version: int
    flags: FlagSet
    decoded: DecodedFlags
    exposing: Mapping[str, tuple[Exposing, ...]] = field(default_factory=dict)


def served_of(document: Mapping[str, Any], previous: Served | None) -> Served:
    """A snapshot document (``snapshot_document``) decoded by core, as the SDK decodes it; the
    flags it did not change are taken from ``previous``."""
    decoded = read_flags_document(
        document["flags"], "snapshot", previous=previous.decoded if previous else None
    )
    exposing: dict[str, list[Exposing]] = {}
    for entry in document.get("rollouts", []):
        exposing.setdefault(entry["flag"], []).append(
            Exposing(entry["id"], entry["stage"], entry["variant"], entry["unit"])
        )
    return Served(
        document["version"],
        decoded.flags,
        decoded,
        {flag: tuple(rollouts) for flag, rollouts in exposing.items()},
    )


# --- the exposures of remote evaluations ---------------------------------------------------


class RemoteExposures:
    """The exposures OFREP evaluations served, written to the ledger about once a second.

    Each (rollout, unit, stage, side) is remembered so that it is queued once; at most
    ``max_remembered`` are (the oldest forgotten first: the ledger keeps a unit's first
    exposure, so one queued again changes nothing there). At most ``max_pending`` wait for
    the next write; beyond that new ones are dropped, counted in ``dropped`` and logged. Units
    are stored hashed (``ledger_unit``), as the SDKs send them by default. Used from the event
    loop's thread only, so it takes no lock.
    """

    def __init__(self, *, max_remembered: int = 200_000, max_pending: int = 100_000) -> None:
        self._max_remembered = max_remembered
        self._max_pending = max_pending
        self._seen: dict[tuple[int, str, int, bool], None] = {}
        self._pending: list[ExposureRow] = []
        self.dropped = 0
        self.written = 0
        self._dropped_logged = 0.0

    def add(self, exposing: Exposing, unit: str, exposed: bool, at: datetime) -> None:
        # Remembered by the ledger's hash of the unit: a long unit costs no more memory.
        hashed = ledger_unit(exposing.rollout, unit, hashed=True)
        key = (exposing.rollout, hashed, exposing.stage, exposed)
        if key in self._seen:
            return
        if len(self._pending) >= self._max_pending:
            self.dropped += 1
            if time.monotonic() - self._dropped_logged > 60:  # said once a minute at most
                self._dropped_logged = time.monotonic()
                logger.warning(
                    "OFREP exposures: %d dropped so far, the ledger is not keeping up",
                    self.dropped,
                )
            return
        while len(self._seen) >= self._max_remembered:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = None
        self._pending.append(ExposureRow(exposing.rollout, hashed, exposing.stage, exposed, at))

    @property
    def pending(self) -> int:
        return len(self._pending)

    def take(self) -> list[ExposureRow]:
        taken, self._pending = self._pending, []
        return taken

    def put_back(self, rows: list[ExposureRow]) -> None:
        """Rows that could not be written now: the next write tries them first."""
        self._pending[:0] = rows[: max(0, self._max_pending - len(self._pending))]

    async def write(self, app: Any) -> None:
        """Write what is pending as one batch, through the server's batch writer. Rows the
        store refuses (a rollout that ended, a stage left too long ago) are dropped, rollout
        by rollout, and logged; on a full writer they wait for the next write."""
        rows = self.take()
        if not rows:
            return
        store, now = app.state.store, app.state.clock.now()
        by_rollout: dict[int, list[ExposureRow]] = {}
        for row in rows:
            by_rollout.setdefault(row.rollout_id, []).append(row)
        kept: list[ExposureRow] = []
        refused: set[int] = set()
        for rollout, group in by_rollout.items():
            try:
                await asyncio.to_thread(store.check_batch, (), group, (), now)
            except StoreError as exc:
                self.dropped += len(group)
                refused.add(rollout)
                logger.warning("OFREP exposures of rollout %d dropped: %s", rollout, exc)
                continue
            except Exception:  # the database, not the rows: they wait for the next write
                logger.exception("OFREP exposures: cannot check them now; tried again later")
                self.put_back([row for row in rows if row.rollout_id not in refused])
                return
            kept.extend(group)
        if not kept:
            return
        batch = EventBatch(f"ofrep-{uuid.uuid4().hex}", "ofrep", now, exposures=tuple(kept))
        try:
            await app.state.writer.write(batch)
        except Busy:
            self.put_back(kept)
            return
        except Exception:
            logger.exception("OFREP exposures: %d not written; tried again next time", len(kept))
            self.put_back(kept)
            return
        self.written += len(kept)


async def write_exposures(app: Any, interval: float = 1.0) -> None:
    """The server's task: write the OFREP exposures every ``interval`` seconds, and once more
    when cancelled (at shutdown, before the batch writer closes)."""
    exposures: RemoteExposures = app.state.ofrep.exposures
    try:
        while True:
            await asyncio.sleep(interval)
            await exposures.write(app)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await exposures.write(app)
        raise


# --- rate limit ----------------------------------------------------------------------------


class RateLimit:
    """A token bucket per SDK key: ``rate`` requests a second on average, bursts of up to
    ``burst``. Used from the event loop's thread only."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else rate
        self._buckets: dict[str, tuple[float, float]] = {}

    def retry_after(self, key: str, now: float) -> int:
        """0 when the request may go ahead (and is counted), else whole seconds to wait."""
        level, last = self._buckets.get(key, (self.burst, now))
        level = min(self.burst, level + (now - last) * self.rate)
        if level >= 1.0:
            self._buckets[key] = (level - 1.0, now)
            return 0
        self._buckets[key] = (level, now)
        return max(1, math.ceil((1.0 - level) / self.rate))


# --- the state the routes share ------------------------------------------------------------


class OfrepState:
    """What the OFREP routes share: the decoded snapshot, the exposures, the rate limit."""

    def __init__(self, rate: float | None) -> None:
        self.exposures = RemoteExposures()
        self.limit = RateLimit(rate) if rate else None
        self._lock = threading.Lock()
        self._served: Served | None = None

    def served(self, app: Any) -> Served:
        """This replica's current snapshot, decoded once per version (in a worker thread the
        first time a version is asked for)."""
        version = app.state.versions.current
        served = self._served
        if served is not None and served.version >= version:
            return served
        from rollwise.server._sdk_api import snapshot_bytes

        with self._lock:
            served = self._served
            if served is None or served.version < version:
                _, body = snapshot_bytes(app, version)
                served = self._served = served_of(json.loads(body), served)
        return served
