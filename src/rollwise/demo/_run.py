"""Running the demo: a real server on loopback, the checkout service, and a director that
plays the operator (approvals) and paces the simulated clock.

The server is the one ``rollwise server`` runs (uvicorn, FastAPI, the controller loop) with
SQLite in a temporary directory. Everything the demo does to the rollout goes through the HTTP
API with tokens, as a person or a script would.

Pace: each stage plays in a few tens of wall-clock seconds whatever its simulated length, so
the clock runs faster in long stages; the service's rate per simulated second is set so the
machine serves about the same number of checkouts per wall-clock second throughout.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from rollwise.control import ScaledClock
from rollwise.core import Plan, load_plan
from rollwise.demo._report import build_report
from rollwise.demo._service import CheckoutService, Traffic
from rollwise.demo._world import World
from rollwise.server import create_app
from rollwise.store import Role, Store

#: Wall-clock seconds a stage takes per simulated hour it needs, and the bounds.
WALL_SECONDS_PER_HOUR = 6.0
WALL_SECONDS_PER_STAGE = (10.0, 40.0)
#: The director's API calls share the process with the server, the controller and the service's
#: SDK clients; on a machine whose cores other work keeps busy an answer can take several
#: seconds (httpx's default gives up after 5, which failed a test run once).
_API_TIMEOUT = httpx.Timeout(60.0, connect=10.0)


@dataclass(frozen=True, slots=True)
class DemoOptions:
    healthy: bool = False
    #: Multiplies the wall-clock time each stage takes (0.25: four times faster).
    pace: float = 1.0
    seed: int = 7
    #: Loopback port of the server; 0 picks a free one.
    port: int = 0
    #: Checkouts the service aims to serve per wall-clock second.
    budget: float = 4000.0
    #: Simulated time the rollout starts at; default today 20:00 UTC.
    start: datetime | None = None
    #: Give up (outcome "unfinished") after this many wall-clock seconds.
    timeout: float = 900.0
    #: Where the SQLite file goes; default a temporary directory, removed at the end.
    directory: Path | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """What the live view shows, as of one look at the rollout."""

    now: datetime
    speed: float
    status: str
    stage: int
    stage_names: tuple[str, ...]
    stage_entered_at: datetime
    started_at: datetime
    gates: tuple[dict[str, Any], ...]
    verdicts: tuple[dict[str, Any], ...]
    segments: tuple[dict[str, Any], ...]
    traffic: Traffic
    events: tuple[str, ...]
    wall_seconds: float


@dataclass
class _Director:
    """The operator's side: approvals given, stage paced."""

    paced_stage: int = -1
    status: str = "running"
    approved: set[str] = field(default_factory=set)
    events: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def checkout_files() -> tuple[str, str]:
    """The checkout example's flags and plan, as shipped with rollwise."""
    folder = resources.files("rollwise.demo") / "checkout"
    return (folder / "flags.yaml").read_text(), (folder / "plan.yaml").read_text()


class Demo:
    """One run of the checkout demo. Use as a context manager; ``run()`` plays it to the end
    and returns the report."""

    def __init__(self, options: DemoOptions | None = None) -> None:
        self.options = options or DemoOptions()
        flags_text, self.plan_text = checkout_files()
        self.flags_text = flags_text
        self.plan: Plan = load_plan(self.plan_text, "checkout/plan.yaml")
        start = self.options.start or datetime.now(UTC).replace(
            hour=20, minute=0, second=0, microsecond=0
        )
        self.clock = ScaledClock(start, self._speed_for(0, start))
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        directory = self.options.directory
        if directory is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="rollwise-demo-")
            directory = Path(self._temporary.name)
        self.database = directory / "demo.db"
        self.store = Store.open(f"sqlite:///{self.database}")
        # The clock runs 10^3–10^4 times the wall's: the 5 minutes a batch may trail its stage
        # (or the rollout's end) would be a tenth of a wall second. Two simulated days, the most
        # a batch's times may stray from the server's clock, keep a late batch's data.
        self.store.late_batch_grace = timedelta(days=2)
        self.admin_token = f"rw_admin_{secrets.token_urlsafe(24)}"
        app = create_app(
            self.store, self.clock, tick=timedelta(seconds=0.1), admin_token=self.admin_token
        )
        self.port = self.options.port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                timeout_graceful_shutdown=1,
            )
        )
        self._thread = threading.Thread(target=self._server.run, name="server", daemon=True)
        self._director = _Director()
        self.operator_token = ""
        self.viewer_token = ""
        self.rollout_id = 0
        self.service: CheckoutService | None = None
        self._api: httpx.Client | None = None
        self._wall_started = 0.0
        self._stopping = threading.Event()

    # --- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Demo:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def dashboard_url(self) -> str:
        return f"{self.url}/dashboard/#/rollouts/{self.rollout_id}?token={self.operator_token}"

    def start(self) -> None:
        """Start the server, apply the flags and the plan, start the rollout and the traffic."""
        self._wall_started = time.monotonic()
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the demo server did not start on {self.url}")
            time.sleep(0.02)
        admin = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.admin_token}"},
            timeout=_API_TIMEOUT,
        )
        with admin:
            admin.put("/api/v1/flags", content=self.flags_text.encode()).raise_for_status()
            tokens = {
                role: admin.post(
                    "/api/v1/tokens", json={"name": f"demo-{role.value}", "role": role.value}
                )
                .raise_for_status()
                .json()["secret"]
                for role in (Role.OPERATOR, Role.VIEWER, Role.SDK)
            }
        self.operator_token = tokens[Role.OPERATOR]
        self.viewer_token = tokens[Role.VIEWER]
        self._api = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {self.operator_token}"},
            timeout=_API_TIMEOUT,
        )
        plan = self._post("/api/v1/plans", content=self.plan_text.encode())
        self.rollout_id = self._post("/api/v1/rollouts", json={"plan_id": plan["id"]})["id"]
        self.service = CheckoutService(
            self.url,
            tokens[Role.SDK],
            self.clock.now,
            lambda: self.clock.speed,
            World(defect=not self.options.healthy),
            self.options.seed,
            rate=self.options.budget / self.clock.speed,
        )
        self.service.start()

    def close(self) -> None:
        """Stop the traffic and the server; remove the temporary directory."""
        if self.service is not None:
            self.service.stop()
            self.service = None
        if self._api is not None:
            self._api.close()
            self._api = None
        # SDK event streams are still open (each ends at its next keep-alive): the server gives
        # them a second, then cancels them; uvicorn logs each cancel as an error, expected here.
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self.store.close()
        if self._temporary is not None:
            with contextlib.suppress(OSError):
                self._temporary.cleanup()

    # --- the director --------------------------------------------------------------------

    def step(self) -> Progress:
        """Look at the rollout once: pace the clock for its stage, approve what waits for
        approval once everything else is met, and say what is going on."""
        rollout = self._get(f"/api/v1/rollouts/{self.rollout_id}")
        stage = int(rollout["stage"])
        director = self._director
        stage_entered = datetime.fromisoformat(rollout["stage_entered_at"])
        if stage != director.paced_stage:
            if director.paced_stage >= 0:
                name = self.plan.stages[stage].name
                director.events.append(f"{stage_entered:%a %H:%M} controller expanded to {name}")
            director.paced_stage = stage
            speed = self._speed_for(stage, stage_entered)
            self.clock.set_speed(speed)
            if self.service is not None:
                self.service.rate = max(0.5, self.options.budget / speed)
        if rollout["status"] != director.status:
            director.status = rollout["status"]
            latest = rollout.get("decision") or {}
            reasons = latest.get("reasons") or ["by hand"]
            director.events.append(
                f"{self.clock.now():%a %H:%M} {director.status.replace('_', ' ')}: {reasons[0]}"
            )
        current = rollout.get("current") or {}
        evidence = current.get("evidence") or {}
        gates = tuple(evidence.get("gates") or ())
        verdicts = tuple(evidence.get("verdicts") or ())
        if rollout["status"] == "running":
            self._approve_when_ready(stage, gates, verdicts)
        traffic = self.service.snapshot() if self.service is not None else Traffic()
        return Progress(
            now=self.clock.now(),
            speed=self.clock.speed,
            status=rollout["status"],
            stage=stage,
            stage_names=tuple(s.name for s in self.plan.stages),
            stage_entered_at=stage_entered,
            started_at=datetime.fromisoformat(rollout["started_at"]),
            gates=gates,
            verdicts=verdicts,
            segments=tuple(evidence.get("segments") or ()),
            traffic=traffic,
            events=tuple(director.events[-6:]),
            wall_seconds=time.monotonic() - self._wall_started,
        )

    def _approve_when_ready(
        self, stage: int, gates: tuple[dict[str, Any], ...], verdicts: tuple[dict[str, Any], ...]
    ) -> None:
        """Approve the next stage once every other gate is met and every guard is safe: what
        an operator following the plan would do after looking at the evidence."""
        if stage + 1 >= len(self.plan.stages):
            return
        following = self.plan.stages[stage + 1].name
        waiting = [g for g in gates if g["name"] == "approval" and not g["met"]]
        others_met = all(g["met"] for g in gates if g["name"] != "approval")
        safe = all(v["verdict"] == "safe" for v in verdicts)
        if waiting and others_met and safe and following not in self._director.approved:
            self._post(f"/api/v1/rollouts/{self.rollout_id}/approve", json={"stage": following})
            self._director.approved.add(following)
            self._director.events.append(
                f"{self.clock.now():%a %H:%M} operator approved entering {following}"
            )

    def run(self, on_progress: Any = None, interval: float = 0.25) -> dict[str, Any]:
        """Play the rollout to its end (rolled back, completed, or paused by a guard) and
        return the report. ``on_progress(progress)`` is called after every look."""
        deadline = self._wall_started + self.options.timeout
        while True:
            progress = self.step()
            if on_progress is not None:
                on_progress(progress)
            if progress.status in ("rolled_back", "completed"):
                break
            if progress.status == "paused" and self._paused_by_controller():
                break
            if time.monotonic() > deadline or self._stopping.wait(interval):
                break
        return self.finish()

    def stop(self) -> None:
        """Make ``run()`` (in another thread) end at its next look, with a report."""
        self._stopping.set()

    def finish(self) -> dict[str, Any]:
        """Let the SDKs see the last snapshot and send what they hold, then report."""
        ended_at = self.clock.now()
        # A second of wall time: the stream brings the new snapshot, the next batches flush.
        time.sleep(1.0)
        traffic = Traffic()
        if self.service is not None:
            self.service.stop()
            traffic = self.service.snapshot()
            self.service = None
        return build_report(
            self.store,
            self.rollout_id,
            self.plan,
            traffic,
            ended_at=ended_at,
            wall_seconds=time.monotonic() - self._wall_started,
            dashboard=f"{self.url}/dashboard/#/rollouts/{self.rollout_id}",
        )

    def _paused_by_controller(self) -> bool:
        latest = self.store.audit_log(limit=1, target=self.plan.flag)
        return (
            bool(latest)
            and latest[0].action == "rollout.pause"
            and (latest[0].actor == "controller")
        )

    def _speed_for(self, stage: int, entered: datetime) -> float:
        """Simulated seconds per wall-clock second for ``stage``: its least simulated length
        (bake, or until the windows it must cover have passed) in a few tens of seconds."""
        spec = self.plan.stages[stage]
        span = spec.bake or timedelta(hours=1)
        for name in spec.cover:
            window = self.plan.windows.get(name)
            if window is not None:
                span = max(span, window.next_span(entered)[1] - entered)
        hours = span.total_seconds() / 3600
        low, high = WALL_SECONDS_PER_STAGE
        wall = min(max(hours * WALL_SECONDS_PER_HOUR, low), high) * self.options.pace
        return span.total_seconds() / wall

    # --- HTTP ----------------------------------------------------------------------------

    def _get(self, path: str) -> Any:
        assert self._api is not None
        return self._api.get(path).raise_for_status().json()

    def _post(self, path: str, **kwargs: Any) -> Any:
        assert self._api is not None
        return self._api.post(path, **kwargs).raise_for_status().json()
