"""Simulated SDK clients over real HTTP: an asyncio load generator light enough to run a thousand
of them in one process next to the server it measures.

Each client behaves as the Python SDK's outbox does: every flush interval (± 20 % jitter) it cuts
a batch (a new id), appends it to its pending queue, and sends the queue in order over its own
keep-alive connection until one fails (a 5xx, 408/429, a timeout or a broken connection: kept
for the next flush, under the same id). 2xx is an acknowledgement (202 applied, 200 duplicate);
any other 4xx drops the batch. Bodies are built from per-client templates (only the id, the
exposures and their times change), so the generator spends its time sending, not encoding.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from rollwise.core.judgement import LATENCY_BUCKETS

TENANTS = 50
TENANTS_PER_CLIENT = 20
EXPOSURES_PER_BATCH = 20
TIMEOUT = 5.0  # the SDK's HTTP timeout


@dataclass
class Shape:
    """What every batch carries: the rollout, its stage and window, and the rows' sizes."""

    rollout: int
    window: int
    stage: int = 0
    exposed_share: float = 0.05


@dataclass
class Tally:
    """What the clients saw, together."""

    #: Every batch id cut → the requests it carries (to check the store's sums afterwards).
    cut: dict[str, int] = field(default_factory=dict)
    acked: set[str] = field(default_factory=set)
    #: (time sent, milliseconds) of every acknowledged POST.
    latencies: list[tuple[float, float]] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    #: (time sent, status) of every answer 500 or above.
    server_errors: list[tuple[float, int]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def _histogram(rng: random.Random, scale: int) -> list[int]:
    """A latency histogram shaped like a real one: a few dozen buckets around a mode."""
    counts = [0] * LATENCY_BUCKETS
    mode = LATENCY_BUCKETS // 3
    for _ in range(scale):
        counts[max(0, min(LATENCY_BUCKETS - 1, int(rng.gauss(mode, 12))))] += 1
    return counts


def _template(shape: Shape, rng: random.Random) -> tuple[bytes, int]:
    """A batch body with ``@@BATCH@@`` and ``@@EXPOSURES@@`` to fill in, and its requests: a
    ``by: [tenant]`` plan's rows (error counts and latency histograms, both sides, the whole
    and each of 20 tenants: 84 aggregates, 42 of them histograms) and a gauge reading."""
    aggregates: list[dict[str, object]] = []
    requests = 0
    tenants = rng.sample(range(TENANTS), TENANTS_PER_CLIENT)
    for segment in ["", *(f"tenant=t{t:02d}" for t in tenants)]:
        for exposed, served in ((True, 100), (False, 200)):
            common = {"rollout": shape.rollout, "stage": shape.stage, "window": shape.window}
            common |= {"exposed": exposed, "segment": segment}
            aggregates.append(
                {**common, "metric": "checkout.error", "requests": served, "events": served // 100}
            )
            aggregates.append(
                {
                    **common,
                    "metric": "checkout.latency",
                    "requests": served,
                    "events": 0,
                    "buckets": [
                        x for i, n in enumerate(_histogram(rng, served)) if n for x in (i, n)
                    ],
                }
            )
            requests += 2 * served
    document = {
        "batch": "@@BATCH@@",
        "sdk": "benchmark",
        "aggregates": aggregates,
        "exposures": "@@EXPOSURES@@",
        "gauges": [{"metric": "payments.queue_depth", "value": 12.5, "at": "@@AT@@"}],
    }
    text = json.dumps(document, separators=(",", ":"))
    return text.replace('"@@EXPOSURES@@"', "@@EXPOSURES@@").encode(), requests


class SimulatedSdk:
    """One SDK process: a template, a pending queue, a keep-alive connection."""

    def __init__(
        self,
        index: int,
        host: str,
        port: int,
        key: str,
        shape: Shape,
        tally: Tally,
        *,
        flush: float,
        seed: int,
    ) -> None:
        self.index = index
        self.host, self.port = host, port
        self.key = key
        self.shape = shape
        self.tally = tally
        self.flush = flush
        self.rng = random.Random(seed)
        self.template, self.requests = _template(shape, self.rng)
        self.pending: deque[tuple[str, bytes]] = deque()
        self.serial = 0
        self.units = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    def _cut(self) -> None:
        self.serial += 1
        batch = f"bench-{self.index:05d}-{self.serial:07d}"
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        units = []
        for _ in range(EXPOSURES_PER_BATCH):
            self.units += 1
            exposed = "true" if self.rng.random() < self.shape.exposed_share else "false"
            units.append(
                f'{{"rollout":{self.shape.rollout},"unit":"u{self.index:05d}x{self.units:08d}",'
                f'"stage":{self.shape.stage},"exposed":{exposed},"at":"{at}"}}'
            )
        body = (
            self.template.replace(b"@@BATCH@@", batch.encode())
            .replace(b"@@EXPOSURES@@", ("[" + ",".join(units) + "]").encode())
            .replace(b"@@AT@@", at.encode())
        )
        self.pending.append((batch, body))
        self.tally.cut[batch] = self.requests

    async def run(self, stop_cutting: float, stop_sending: float) -> None:
        """Flush until ``stop_cutting`` (a ``time.monotonic()``), then send what is pending
        until it is gone or ``stop_sending`` passes."""
        await asyncio.sleep(self.rng.uniform(0, self.flush))
        while time.monotonic() < stop_cutting:
            self._cut()
            await self._send()
            await asyncio.sleep(self.flush * self.rng.uniform(0.8, 1.2))
        while self.pending and time.monotonic() < stop_sending:
            if not await self._send():
                await asyncio.sleep(self.flush * self.rng.uniform(0.8, 1.2))
        self._close()

    async def _send(self) -> bool:
        while self.pending:
            batch, body = self.pending[0]
            sent = time.monotonic()
            try:
                status = await asyncio.wait_for(self._post(body), TIMEOUT)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                self.tally.statuses[f"connection: {type(exc).__name__}"] += 1
                self._close()
                return False
            except TimeoutError:
                self.tally.statuses["timeout"] += 1
                self._close()
                return False
            self.tally.statuses[str(status)] += 1
            if status >= 500:
                self.tally.server_errors.append((sent, status))
            if 200 <= status < 300:
                self.tally.acked.add(batch)
                self.tally.latencies.append((sent, (time.monotonic() - sent) * 1000))
            elif status >= 500 or status in (408, 429):
                return False
            else:
                self.tally.dropped.append(batch)
            self.pending.popleft()
        return True

    async def _post(self, body: bytes) -> int:
        if self._reader is not None and self._reader.at_eof():
            self._close()  # the server closed the idle connection (as httpx notices, too)
        if self._writer is None or self._reader is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        head = (
            f"POST /sdk/v1/events HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {self.key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self._writer.write(head + body)
        await self._writer.drain()
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionResetError("the server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        keep_alive = True
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                keep_alive = False
        await self._reader.readexactly(length)
        if not keep_alive:
            self._close()
        return status

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
