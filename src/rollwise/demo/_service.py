"""The simulated checkout service: instances embedding the real SDK, serving checkouts at a
simulated rate on the shared clock.

Each checkout asks the SDK which checkout to serve, runs it in the simulated world, and records
what happened (error, latency, abandonment) through the SDK, exactly as an application would.
The service also keeps its own count of what it served, the ground truth that the report's
blast radius is checked against.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from rollwise.demo._world import World, queue_depth
from rollwise.sdk import Client

FLAG = "new-checkout"
#: Largest share of a wall-clock second of traffic served in one go: when the service falls
#: behind the clock (a busy machine), what is older than that is skipped and counted.
_MAX_BACKLOG_WALL_SECONDS = 0.5


@dataclass(slots=True)
class Served:
    """What one tenant was served, by the service's own count."""

    requests: int = 0
    exposed: int = 0
    exposed_failed: int = 0
    baseline_failed: int = 0
    last_exposed_at: datetime | None = None


@dataclass(slots=True)
class Traffic:
    """The service's ground truth, per tenant."""

    tenants: dict[str, Served] = field(default_factory=dict)
    #: Checkouts the service could not serve in time (the machine was too busy).
    skipped: int = 0
    #: Checkouts during which the SDK's snapshot changed, between the flag's evaluation and
    #: the outcomes' recording: each may be stored on the other side than it was served.
    straddled: int = 0
    #: The SDKs' batch counters, summed over the instances, once they are closed: ``sent``,
    #: ``rejected`` (refused for good by the server), ``dropped`` (over the queue's bound),
    #: ``pending`` (still unsent at the end), ``outcomes_dropped``, ``exposures_dropped``.
    sdk: dict[str, int] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return sum(s.requests for s in self.tenants.values())

    @property
    def exposed(self) -> int:
        return sum(s.exposed for s in self.tenants.values())

    @property
    def exposed_failed(self) -> int:
        return sum(s.exposed_failed for s in self.tenants.values())


class CheckoutService:
    """Serves checkouts at ``rate`` per simulated second until stopped."""

    def __init__(
        self,
        url: str,
        sdk_key: str,
        now: Callable[[], datetime],
        speed: Callable[[], float],
        world: World,
        seed: int,
        rate: float,
        instances: int = 2,
    ) -> None:
        self._now = now
        self._speed = speed
        self.world = world
        self.rate = rate
        self._rng = random.Random(seed)
        self._population = world.population()
        self.clients = [
            Client(
                url,
                sdk_key,
                flush_interval=0.2,
                poll_interval=5.0,
                ledger_units="plain",  # the demo's report names the tenants exposed
                clock=lambda: self._now().timestamp(),
            )
            for _ in range(instances)
        ]
        self.traffic = Traffic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkout-service", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, drain_seconds: float = 30.0) -> None:
        """Stop serving and send what the SDKs still hold: each instance flushes until nothing
        is pending (a busy server may ask it to retry) or ``drain_seconds`` pass."""
        self._stop.set()
        self._thread.join(timeout=10)
        deadline = time.monotonic() + drain_seconds
        for client in self.clients:
            while not client.flush() and time.monotonic() < deadline:
                time.sleep(0.2)
        # Each client sends its last batch, then waits (at most the timeout) for its stream
        # thread, which notices the close only at its next read: close them side by side.
        closing = [
            threading.Thread(target=client.close, kwargs={"timeout": 2.0})
            for client in self.clients
        ]
        for thread in closing:
            thread.start()
        for thread in closing:
            thread.join()
        totals = dict.fromkeys(
            ("sent", "rejected", "dropped", "pending", "outcomes_dropped", "exposures_dropped"), 0
        )
        for client in self.clients:
            stats = client.stats()
            totals["sent"] += stats.batches_sent
            totals["rejected"] += stats.batches_rejected
            totals["dropped"] += stats.batches_dropped
            totals["pending"] += stats.pending_batches
            totals["outcomes_dropped"] += stats.outcomes_dropped
            totals["exposures_dropped"] += stats.exposures_dropped
        with self._lock:
            self.traffic.sdk = totals

    def snapshot(self) -> Traffic:
        """A copy of the ground truth so far."""
        with self._lock:
            return Traffic(
                {name: replace(s) for name, s in self.traffic.tenants.items()},
                self.traffic.skipped,
                self.traffic.straddled,
                dict(self.traffic.sdk),
            )

    def _run(self) -> None:
        last = self._now()
        last_gauge = last - timedelta(minutes=1)
        carry = 0.0
        while not self._stop.is_set():
            now = self._now()
            due = (now - last).total_seconds() * self.rate + carry
            count = int(due)
            carry = due - count
            last = now
            limit = max(1, int(self.rate * self._speed() * _MAX_BACKLOG_WALL_SECONDS))
            if count > limit:
                with self._lock:
                    self.traffic.skipped += count - limit
                count = limit
            if count:
                self._serve(count, now)
            if now - last_gauge >= timedelta(minutes=1):
                self.clients[0].gauge("payments.queue_depth", queue_depth(now, self._rng))
                last_gauge = now
            if count < 50:
                time.sleep(0.01)

    def _serve(self, count: int, now: datetime) -> None:
        rng, world, population, clients = self._rng, self.world, self._population, self.clients
        served: list[tuple[str, bool, bool, bool]] = []
        for index in range(count):
            client = clients[index % len(clients)]
            checkout = world.draw(rng, population)
            context = checkout.context()
            flags = client.flags
            new = client.enabled(FLAG, context)
            result = world.serve(rng, checkout, new)
            client.record("checkout.error", context, failed=result.failed)
            client.record("checkout.latency", context, value=result.latency_ms)
            client.track("checkout.abandoned", context, happened=result.abandoned)
            # The SDK attributes an outcome by evaluating the flag again when it is recorded:
            # a snapshot that changed in between (a stage, a rollback) may count it on the
            # other side, or not at all. Such checkouts are counted, so that the agreement
            # with the stored aggregates can be checked to within them.
            straddled = client.flags is not flags
            served.append((checkout.tenant.name, new, result.failed, straddled))
        with self._lock:
            tenants = self.traffic.tenants
            for name, new, failed, straddled in served:
                self.traffic.straddled += straddled
                tally = tenants.get(name)
                if tally is None:
                    tally = tenants[name] = Served()
                tally.requests += 1
                if new:
                    tally.exposed += 1
                    tally.exposed_failed += failed
                    tally.last_exposed_at = now
                else:
                    tally.baseline_failed += failed
