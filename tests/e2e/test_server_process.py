"""A real server process on loopback: the CLI drives it, and kill -9 loses no transition."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rollwise.cli import main
from tests._serving import server_client

ROOT = Path(__file__).resolve().parents[2]
# The example flags with new-checkout bucketed by user, as the plans here are.
FLAGS_TEXT = (
    (ROOT / "examples/checkout/flags.yaml")
    .read_text()
    .replace("    unit: tenant", "    unit: user")
)
ADMIN = "rw_admin_e2e-secret-0123456789"
FAST_PLAN = """
flag: new-checkout
unit: user
max_stage_duration: 1h
guards:
  - {metric: checkout.error, kind: rate, tolerance: 10%}
stages:
  - {name: one, audience: {percent: 5}, bake: 1s, min_samples: 1000}
  - {name: two, audience: {percent: 25}, bake: 1s, min_samples: 1000}
  - {name: three, audience: {percent: 50}, bake: 1s, min_samples: 1000}
  - {name: all, audience: {percent: 100}, holdback: 2%, bake: 1s, min_samples: 1000}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    def __init__(self, database: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.database = database
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "ROLLWISE_ADMIN_TOKEN": ADMIN}
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rollwise.cli",
                "server",
                "--db",
                self.database,
                "--port",
                str(self.port),
                "--tick",
                "0.2s",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("the server did not become ready")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(f"sqlite:///{tmp_path / 'e2e.db'}")
    running.start()
    try:
        yield running
    finally:
        running.stop()


def _cli(server: Server, *argv: str) -> int:
    return main([*argv, "--url", server.url, "--token", ADMIN])


def test_the_cli_drives_a_real_server(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """apply, rollout start, status, kill, audit and token create against a live server."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(FAST_PLAN)
    flags = tmp_path / "flags.yaml"
    flags.write_text(FLAGS_TEXT)
    assert _cli(server, "apply", str(flags)) == 0
    assert _cli(server, "rollout", "start", "new-checkout", "--plan", str(plan)) == 0
    assert _cli(server, "rollout", "status", "new-checkout") == 0
    assert _cli(server, "kill", "new-checkout") == 0
    assert _cli(server, "token", "create", "--role", "sdk", "--name", "checkout-service") == 0
    assert _cli(server, "audit", "--limit", "10") == 0
    out = capsys.readouterr().out
    assert "started rollout 1 of new-checkout at stage 'one'" in out
    assert "new-checkout: rollout 1 running (unit user)" in out
    assert "new-checkout: killed: every SDK serves the safe default" in out
    assert "flag.kill" in out and "admin:bootstrap" in out
    assert _cli(server, "rollout", "approve", "new-checkout", "nowhere") == 2
    assert "has no stage 'nowhere'" in capsys.readouterr().err


def _post_safe_events(client: httpx.Client, rollout_id: int, stage: int) -> None:
    window = int(time.time() // 60)
    batch = {
        "batch": str(uuid.uuid4()),
        "aggregates": [
            {
                "rollout": rollout_id,
                "stage": stage,
                "window": window,
                "exposed": True,
                "metric": "checkout.error",
                "requests": 500_000,
                "events": 5_000,
            },
            {
                "rollout": rollout_id,
                "stage": stage,
                "window": window,
                "exposed": False,
                "metric": "checkout.error",
                "requests": 9_500_000,
                "events": 95_000,
            },
        ],
    }
    client.post("/sdk/v1/events", json=batch).raise_for_status()


def _client(server: Server, secret: str) -> httpx.Client:
    return server_client(server.url, secret)


def test_kill_9_in_the_middle_of_a_rollout_loses_and_repeats_no_transition(server: Server) -> None:
    """The server is killed with SIGKILL after the first expansion and restarted on the same
    database: the rollout completes, each stage is entered exactly once, the audit log is
    complete and every transition names the version it was decided from, once."""
    with _client(server, ADMIN) as admin:
        admin.put("/api/v1/flags", content=FLAGS_TEXT.encode()).raise_for_status()
        plan_id = admin.post("/api/v1/plans", content=FAST_PLAN.encode()).json()["id"]
        rollout_id = admin.post("/api/v1/rollouts", json={"plan_id": plan_id}).json()["id"]
        secret = admin.post("/api/v1/tokens", json={"name": "e2e", "role": "sdk"}).json()["secret"]
    restarted = False
    status = "running"
    deadline = time.monotonic() + 60
    while status == "running" and time.monotonic() < deadline:
        with _client(server, ADMIN) as admin, _client(server, secret) as sdk:
            rollout = admin.get(f"/api/v1/rollouts/{rollout_id}").json()
            status = rollout["status"]
            if rollout["stage"] >= 1 and not restarted:
                server.kill9()
                server.start()
                restarted = True
                continue
            _post_safe_events(sdk, rollout_id, rollout["stage"])
        time.sleep(0.3)
    assert restarted
    assert status == "completed", status
    with _client(server, ADMIN) as admin:
        audit = admin.get("/api/v1/audit", params={"limit": 1000}).json()
        decisions = admin.get(
            f"/api/v1/rollouts/{rollout_id}/decisions", params={"limit": 1000}
        ).json()
    transitions = [
        e
        for e in reversed(audit)
        if e["action"].startswith("rollout.") and e["details"].get("rollout_id") == rollout_id
    ]
    actions = [e["action"] for e in transitions]
    assert actions == [
        "rollout.start",
        "rollout.expand",
        "rollout.expand",
        "rollout.expand",
        "rollout.complete",
    ]
    assert [e["details"]["from_version"] for e in transitions[1:]] == [1, 2, 3, 4]
    moves = sorted(d["move"] for d in decisions if d["move"] != "hold")
    assert moves == ["complete", "expand", "expand", "expand"]
