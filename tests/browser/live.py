"""A real rollwise server on loopback with the checkout example running, and SDK traffic.

The server runs under uvicorn in a thread on a simulated clock shared with the SDK clients,
so a day of the checkout plan plays in minutes. Reusable by any browser test: start a
``LiveServer``, ``start_checkout()`` and let a ``CheckoutTraffic`` feed it.
"""

from __future__ import annotations

import math
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import uvicorn

from rollwise import Client
from rollwise.control import ScaledClock
from rollwise.server import create_app
from rollwise.store import Role, Store
from tests._serving import server_client

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "checkout"
ADMIN = "rw_admin_browser-test-secret"
#: Customer names of the checkout service, besides the pilot tenant (acme).
TENANTS = (
    "globex", "initech", "monarch", "umbrella", "hooli", "gekko", "stark", "wayne", "lacuna",
    "wonka", "soylent", "tyrell", "cyberdyne", "oscorp", "aperture", "vandelay", "dunder",
    "pied-piper", "massive", "nakatomi", "gringotts", "virtucon", "duff", "krusty", "prestige",
    "sirius", "zorg", "weyland", "bluth", "sterling", "pendant", "rekall", "ollivander",
    "spacely", "cogswell", "wernham", "kramerica", "bubba", "primatech", "abstergo",
)  # fmt: skip
#: Three storefronts of each, largest first: 120 customer tenants, so that 5 % of them is a
#: handful (under the example flag's salt: monarch-shop, gekko-shop and lacuna-shop).
CUSTOMERS = tuple(f"{name}{shop}" for shop in ("-shop", "", "-eu") for name in TENANTS)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LiveServer:
    """The app under uvicorn in a thread, on a ``ScaledClock`` the SDK clients share."""

    def __init__(
        self,
        database: Path,
        *,
        start: datetime = datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        speed: float = 600.0,
    ) -> None:
        self.clock = ScaledClock(start, speed)
        self.store = Store.open(f"sqlite:///{database}")
        app = create_app(self.store, self.clock, tick=timedelta(seconds=0.1), admin_token=ADMIN)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # SDK clients keep a stream open: at exit, cut it rather than wait for it.
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                timeout_graceful_shutdown=1,
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.admin = server_client(self.url, ADMIN)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise RuntimeError("the server did not start within 15 s")
        return self

    def __exit__(self, *exc: object) -> None:
        self.admin.close()
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.store.close()

    def simulated_time(self) -> float:
        return self.clock.now().timestamp()

    def token(self, role: Role, name: str | None = None) -> str:
        """A new token's secret."""
        response = self.admin.post(
            "/api/v1/tokens", json={"name": name or role.value, "role": role.value}
        )
        response.raise_for_status()
        return str(response.json()["secret"])

    def start_checkout(self, plan: str | None = None) -> int:
        """Apply the example flags, store the checkout plan and start it; the rollout id."""
        flags = (EXAMPLES / "flags.yaml").read_bytes()
        self.admin.put("/api/v1/flags", content=flags).raise_for_status()
        text = plan if plan is not None else (EXAMPLES / "plan.yaml").read_text()
        saved = self.admin.post("/api/v1/plans", content=text.encode())
        saved.raise_for_status()
        started = self.admin.post("/api/v1/rollouts", json={"plan_id": saved.json()["id"]})
        started.raise_for_status()
        return int(started.json()["id"])

    def rollout(self, rollout_id: int) -> dict[str, Any]:
        response = self.admin.get(f"/api/v1/rollouts/{rollout_id}")
        response.raise_for_status()
        return response.json()  # type: ignore[no-any-return]

    def wait_for(
        self, check: Callable[[], bool], timeout: float, what: str, every: float = 0.1
    ) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(every)


#: How the new checkout behaves for one request: (error rate, extra ms, abandon rate) given
#: the request's context.
Behaviour = Callable[[Mapping[str, str]], tuple[float, float, float]]


def same_as_old(context: Mapping[str, str]) -> tuple[float, float, float]:
    return 0.03, 4.0, 0.2


class CheckoutTraffic:
    """Checkout requests from a seeded mix of tenants, users, the internal team, regions and
    traffic types, through a live SDK client: each request evaluates ``new-checkout`` and
    records its error, latency and abandonment; the payment queue depth is reported too.

    ``behaviour`` says how the new checkout behaves (the old one: 3 % errors, ~120 ms,
    20 % abandoned). ``per_second`` is the wall-clock request rate it aims for.
    """

    def __init__(
        self,
        server: LiveServer,
        *,
        behaviour: Behaviour = same_as_old,
        per_second: float = 3000.0,
        internal_share: float = 0.1,
        seed: int = 7,
    ) -> None:
        self.server = server
        self.behaviour = behaviour
        self.per_second = per_second
        self.internal_share = internal_share
        self.rng = random.Random(seed)
        self.requests = 0
        self._stop = threading.Event()
        self._sdk_key = server.token(Role.SDK, "checkout-service")
        self._thread = threading.Thread(target=self._run, daemon=True, name="checkout-traffic")
        # Zipf-like tenant sizes: a few large tenants, a long tail; acme is mid-sized.
        names = ("acme", *CUSTOMERS)
        self._tenants = list(names)
        self._weights = [1 / math.sqrt(rank + 2) for rank in range(len(names))]

    def __enter__(self) -> CheckoutTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _context(self) -> dict[str, str]:
        rng = self.rng
        if rng.random() < self.internal_share:
            return {
                "key": f"staff-{rng.randrange(40)}",
                "tenant": "rollwise",
                "team": rng.choice(("checkout", "payments", "support")),
                "region": "eu-west-1",
                "traffic_type": "web",
                "app_version": "2.5.0",
            }
        tenant = rng.choices(self._tenants, self._weights)[0]
        return {
            "key": f"{tenant}-user-{rng.randrange(300)}",
            "tenant": tenant,
            "region": rng.choice(("eu-west-1", "us-east-1", "ap-south-1")),
            "traffic_type": "web" if rng.random() < 0.7 else "api",
            "app_version": "2.5.0",
        }

    def _run(self) -> None:
        rng = self.rng
        client = Client(
            self.server.url,
            self._sdk_key,
            flush_interval=0.1,
            clock=self.server.simulated_time,
            ledger_units="plain",
        )
        try:
            started = time.monotonic()
            while not self._stop.is_set():
                due = int((time.monotonic() - started) * self.per_second) - self.requests
                for _ in range(min(max(due, 0), 2000)):
                    context = self._context()
                    errors, slower, abandons = 0.03, 0.0, 0.2
                    if client.enabled("new-checkout", context):
                        errors, slower, abandons = self.behaviour(context)
                    client.record("checkout.error", context, failed=rng.random() < errors)
                    latency = rng.lognormvariate(math.log(110), 0.35) + slower
                    client.record("checkout.latency", context, value=latency)
                    client.record("checkout.abandoned", context, failed=rng.random() < abandons)
                    self.requests += 1
                client.gauge("payments.queue_depth", max(0.0, rng.gauss(240, 40)))
                time.sleep(0.02)
        finally:
            # A short close: the last batch is flushed; the stream need not end politely.
            client.close(timeout=0.5)


class TenantRegression:
    """The new checkout fails one customer tenant: the first one (other than the pilot and
    the internal team) to be exposed gets 4× the errors and 40 ms more, everyone else
    behaves as before. Caught per tenant, while the aggregate may still look fine."""

    def __init__(self) -> None:
        self.tenant: str | None = None

    def __call__(self, context: Mapping[str, str]) -> tuple[float, float, float]:
        tenant = context.get("tenant", "")
        if tenant not in ("acme", "rollwise"):
            if self.tenant is None:
                self.tenant = tenant
            if tenant == self.tenant:
                return 0.12, 40.0, 0.21
        return same_as_old(context)
