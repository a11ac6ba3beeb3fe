"""The live loop end to end: a real server on loopback, SDK clients generating traffic, the
controller judging on a simulated clock. A regression rolls back and says why; without one the
rollout completes. Each takes seconds."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import uvicorn

from rollwise.control import ScaledClock
from rollwise.server import create_app
from rollwise.store import Role, Store
from tests._serving import server_client

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "rw_admin_sdk-e2e-secret"
#: Simulated seconds per wall-clock second: a 30-minute bake takes about 3 s.
SPEED = 600.0
PLAN = """
flag: new-checkout
unit: user
max_stage_duration: 1d
guards:
  - {metric: checkout.error, kind: rate, tolerance: 50%, on_regression: rollback}
stages:
  - {name: canary, audience: {percent: 20}, bake: 10m, min_samples: 500}
  - {name: half, audience: {percent: 50}, bake: 10m, min_samples: 500}
  - {name: all, audience: {percent: 100}, holdback: 10%, bake: 10m, min_samples: 500}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LiveServer:
    """The real app under uvicorn in a thread, sharing the simulated clock with the SDKs."""

    def __init__(self, tmp_path: Path) -> None:
        self.clock = ScaledClock(datetime(2026, 1, 5, 9, 0, tzinfo=UTC), SPEED)
        self.store = Store.open(f"sqlite:///{tmp_path / 'live.db'}")
        app = create_app(
            self.store,
            self.clock,
            tick=__import__("datetime").timedelta(seconds=0.1),
            admin_token=ADMIN,
        )
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.store.close()

    def simulated_time(self) -> float:
        return self.clock.now().timestamp()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(tmp_path) as server:
        yield server


def _run(live: LiveServer, exposed_error_rate: float, seconds: float) -> dict[str, object]:
    from rollwise import Client

    with server_client(live.url, ADMIN) as admin:
        flags = (ROOT / "examples/checkout/flags.yaml").read_text()
        # The plan here buckets by user: so must the flag.
        flags = flags.replace("    unit: tenant", "    unit: user")
        admin.put("/api/v1/flags", content=flags.encode()).raise_for_status()
        plan_id = admin.post("/api/v1/plans", content=PLAN.encode()).json()["id"]
        rollout_id = admin.post("/api/v1/rollouts", json={"plan_id": plan_id}).json()["id"]
        key = admin.post(
            "/api/v1/tokens", json={"name": "checkout", "role": Role.SDK.value}
        ).json()["secret"]
        clients = [
            Client(
                live.url, key, flush_interval=0.1, clock=live.simulated_time, ledger_units="plain"
            )
            for _ in range(2)
        ]
        rng = random.Random(7)
        deadline = time.monotonic() + seconds
        status = "running"
        try:
            while status == "running" and time.monotonic() < deadline:
                for _ in range(400):
                    client = clients[rng.randrange(2)]
                    context = {
                        "key": f"user-{rng.randrange(5000)}",
                        "tenant": "acme",
                        "app_version": "2.5.0",
                    }
                    exposed = client.enabled("new-checkout", context)
                    rate = exposed_error_rate if exposed else 0.05
                    client.record("checkout.error", context, failed=rng.random() < rate)
                time.sleep(0.01)
                status = admin.get(f"/api/v1/rollouts/{rollout_id}").json()["status"]
        finally:
            for client in clients:
                client.close()
        rollout = admin.get(f"/api/v1/rollouts/{rollout_id}").json()
        decisions = admin.get(f"/api/v1/rollouts/{rollout_id}/decisions").json()
        audit = admin.get("/api/v1/audit", params={"limit": 200}).json()
        ledger = admin.get(f"/api/v1/rollouts/{rollout_id}/ledger").json()
        # A client started now serves what the rollout left behind, for any user.
        with Client(live.url, key) as fresh:
            served = {
                fresh.variant("new-checkout", {"key": f"user-{n}", "app_version": "2.5.0"}, "x")
                for n in range(200)
            }
    return {
        "rollout": rollout,
        "decisions": decisions,
        "audit": audit,
        "ledger": ledger,
        "served": served,
    }


def test_a_regression_for_the_exposed_variant_is_rolled_back(live: LiveServer) -> None:
    """Exposed users fail three times as often: the controller rolls back, the decision and
    the audit log say which guard and by how much, and SDKs serve 'off' again."""
    result = _run(live, exposed_error_rate=0.15, seconds=40)
    rollout, decisions = result["rollout"], result["decisions"]
    assert rollout["status"] == "rolled_back", rollout  # type: ignore[index]
    rollback = next(d for d in decisions if d["move"] == "rollback")  # type: ignore[attr-defined]
    assert "checkout.error is worse than tolerated" in rollback["reasons"][0]
    assert rollback["evidence"]["trigger"]["lower"] > 1.5
    actions = [(e["actor"], e["action"]) for e in result["audit"]]  # type: ignore[attr-defined]
    assert ("controller", "rollout.rollback") in actions
    assert result["ledger"]["units"]  # type: ignore[index]
    assert result["served"] == {"off"}


def test_without_a_regression_the_rollout_completes(live: LiveServer) -> None:
    """Same traffic, same error rate on both sides: every stage expands on evidence and the
    rollout completes with its holdback."""
    result = _run(live, exposed_error_rate=0.05, seconds=90)
    rollout, decisions = result["rollout"], result["decisions"]
    assert rollout["status"] == "completed", rollout  # type: ignore[index]
    moves = [d["move"] for d in reversed(decisions) if d["move"] != "hold"]  # type: ignore[attr-defined]
    assert moves == ["expand", "expand", "complete"]
    assert result["served"] == {"on", "off"}  # 90 % on, the 10 % holdback off
