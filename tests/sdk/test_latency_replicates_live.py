"""Latency replicates from a real client to a real server, and into the judge's dispersion:
the snapshot names the tail quantile, the client reads its tail point from the baseline it
recorded, ships per replicate the latencies and those beyond the point, the server takes them,
and the latency guard's verdict is discounted by their φ."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from rollwise import Client
from rollwise.core import load_plan
from rollwise.core.judgement import harm_alpha, judge_guard, parse_replicate
from rollwise.server import create_app
from rollwise.store import Role, Store
from rollwise.store import _schema as t
from tests._serving import server_client, serving

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "rw_admin_latency-replicates-test"
PLAN = """
flag: new-checkout
unit: tenant
guards:
  - {metric: checkout.latency, kind: latency, quantile: 0.95, tolerance: 10%}
stages:
  - {name: half, audience: {percent: 50}}
  - {name: all, audience: {percent: 100}}
"""


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, str, Store]]:
    """A real server with the example flags and a rollout of PLAN started: its URL, an SDK
    key and its store."""
    store = Store.open(f"sqlite:///{tmp_path / 'tails.db'}")
    app = create_app(store, controller=False, admin_token=ADMIN)
    try:
        with serving(app) as url:
            with server_client(url, ADMIN) as admin:
                flags = (ROOT / "examples/checkout/flags.yaml").read_text()
                admin.put("/api/v1/flags", content=flags).raise_for_status()
                plan = admin.post("/api/v1/plans", content=PLAN).json()
                admin.post("/api/v1/rollouts", json={"plan_id": plan["id"]}).raise_for_status()
                key = admin.post("/api/v1/tokens", json={"name": "app", "role": Role.SDK.value})
            yield url, key.json()["secret"], store
    finally:
        store.close()


def _until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def _replicates(store: Store) -> dict[tuple[bool, int], tuple[int, int]]:
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(t.aggregates)).all()
    return {
        (bool(row.exposed), replicate): (row.requests, row.events)
        for row in rows
        if row.metric == "checkout.latency"
        and (replicate := parse_replicate(row.segment)) is not None
    }


def test_a_real_client_ships_latency_replicates_the_judge_discounts_by(
    live: tuple[str, str, Store],
) -> None:
    url, key, store = live
    with Client(url, key, flush_interval=3600.0, poll_interval=3600.0) as client:
        assert _until(lambda: client.stats().snapshot_version is not None)
        contexts = [{"tenant": f"t{index}", "app_version": "2.5.0"} for index in range(400)]
        # Before a tail point: 2,000 latencies, every fiftieth slow; no replicates yet.
        for index in range(2000):
            client.record("checkout.latency", contexts[index % 400], 20.0 if index % 50 else 900.0)
        assert client.flush()
        assert _replicates(store) == {}
        # After it: tenants 0-9 slow on every request, as a slow client is.
        slow = 0
        for index in range(4000):
            tenant = index % 400
            milliseconds = 5000.0 if tenant < 10 else (20.0 if index % 50 else 900.0)
            slow += milliseconds > 20.0
            client.record("checkout.latency", contexts[tenant], milliseconds)
        assert client.flush()
    shipped = _replicates(store)
    assert sum(requests for requests, _ in shipped.values()) == 4000
    assert sum(beyond for _, beyond in shipped.values()) == slow  # the p95 is 20 ms's bucket
    assert {exposed for exposed, _ in shipped} == {True, False}
    rollout = store.rollouts()[0]
    plan = load_plan(PLAN)
    observations = store.observations(rollout, plan)
    tails = observations.dispersion["checkout.latency"]
    assert tails.replicates > 2 and tails.phi > 1.5  # ten tenants carry every slow request
    verdict, _ = judge_guard(
        plan.guards[0], observations, 0, harm_alpha(plan), rollout.stage_entered_at
    )
    assert verdict.dispersion == tails.phi
