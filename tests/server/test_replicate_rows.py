"""Replicate aggregates at the SDK API (window 0, segment ``~replicate=k``: a replicate's counts
of a rate metric in the stage, for the judge's dispersion): taken and added up per key; a bad one
refused whole with 422 naming its field; and not traffic to the dashboard's series."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rollwise.control import ManualClock
from rollwise.core.judgement import LATENCY_BUCKETS, REPLICATE_WINDOW, replicate_segment
from rollwise.server import create_app
from rollwise.store import Store
from rollwise.store import _schema as t

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (ROOT / "examples/checkout/flags.yaml").read_text()
PLAN = """
flag: new-checkout
unit: tenant
max_stage_duration: 2d
guards:
  - {metric: checkout.error, kind: rate, tolerance: 50%, by: [tenant]}
  - {metric: checkout.latency, kind: latency, quantile: 0.95, tolerance: 50ms}
stages:
  - {name: canary, audience: {percent: 5}, bake: 10m}
  - {name: all, audience: {percent: 100}}
"""
ADMIN = "rw_admin_replicate-secret"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
NOW_MINUTE = int(START.timestamp() // 60)


class Server:
    """A server on a fresh SQLite file, a running rollout and an SDK key."""

    def __init__(self, client: TestClient, store: Store) -> None:
        self.client, self.store = client, store
        client.put("/api/v1/flags", content=FLAGS).raise_for_status()
        plan = client.post("/api/v1/plans", content=PLAN)
        plan.raise_for_status()
        started = client.post("/api/v1/rollouts", json={"plan_id": plan.json()["id"]})
        started.raise_for_status()
        self.rollout = int(started.json()["id"])
        key = client.post("/api/v1/tokens", json={"name": "app", "role": "sdk"})
        key.raise_for_status()
        self.sdk = {"Authorization": f"Bearer {key.json()['secret']}"}

    def traffic(self, **changes: Any) -> dict[str, Any]:
        return {
            "rollout": self.rollout,
            "stage": 0,
            "window": NOW_MINUTE,
            "exposed": True,
            "segment": "",
            "metric": "checkout.error",
            "requests": 100,
            "events": 4,
            **changes,
        }

    def replicate(self, replicate: int, **changes: Any) -> dict[str, Any]:
        row = {
            "segment": replicate_segment(replicate),
            "window": REPLICATE_WINDOW,
            "requests": 50,
            "events": 2,
            **changes,
        }
        return self.traffic(**row)

    def post(self, *aggregates: dict[str, Any]) -> Any:
        batch = {"batch": str(uuid.uuid4()), "sdk": "test", "aggregates": list(aggregates)}
        return self.client.post("/sdk/v1/events", json=batch, headers=self.sdk)

    def stored(self) -> dict[tuple[Any, ...], tuple[int, int]]:
        """Every aggregate row, and how many batches were applied."""
        with self.store.engine.connect() as connection:
            rows = connection.execute(sa.select(t.aggregates)).all()
            batches = connection.execute(sa.select(sa.func.count()).select_from(t.batches))
            applied = batches.scalar_one()
        found: dict[tuple[Any, ...], tuple[int, int]] = {
            (r.stage, r.window, bool(r.exposed), r.segment, r.metric): (r.requests, r.events)
            for r in rows
        }
        found[("batches",)] = (applied, 0)
        return found

    def series(self) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/rollouts/{self.rollout}/series")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    store = Store.open(f"sqlite:///{tmp_path / 'replicates.db'}")
    app = create_app(store, ManualClock(START), controller=False, admin_token=ADMIN)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN}"
        yield Server(client, store)
    store.close()


def test_replicate_rows_are_taken_and_add_up_across_batches(server: Server) -> None:
    """202 for a batch of traffic and replicate rows on both sides; a second batch adds its
    counts to the same replicate rows (window 0), as to the traffic's."""
    for events in (1, 3):
        reply = server.post(
            server.traffic(),
            server.replicate(0, events=events),
            server.replicate(63, exposed=False, requests=70, events=events),
        )
        assert reply.status_code == 202, reply.text
    stored = server.stored()
    assert stored[(0, 0, True, "~replicate=0", "checkout.error")] == (100, 4)
    assert stored[(0, 0, False, "~replicate=63", "checkout.error")] == (140, 4)
    assert stored[(0, NOW_MINUTE, True, "", "checkout.error")] == (200, 8)
    assert stored[("batches",)] == (2, 0)


def test_a_latency_guards_tail_replicates_are_taken(server: Server) -> None:
    """The plan's latency guard has a tolerance: its replicate rows (requests, and those beyond
    the SDK's tail point) are taken like a rate's, with no histogram."""
    reply = server.post(
        server.traffic(), server.replicate(9, metric="checkout.latency", requests=50, events=4)
    )
    assert reply.status_code == 202, reply.text
    assert server.stored()[(0, 0, True, "~replicate=9", "checkout.latency")] == (50, 4)


#: (what, the replicate row's changes, the status, the first bad field, what the message says)
BAD: list[tuple[str, dict[str, Any], int, str, str]] = [
    (
        "replicate 64",
        {"segment": "~replicate=64"},
        422,
        "body.aggregates[1].segment",
        "must be a replicate",
    ),
    (
        "replicate x",
        {"segment": "~replicate=x"},
        422,
        "body.aggregates[1].segment",
        "must be a replicate",
    ),
    (
        "a leading zero",
        {"segment": "~replicate=07"},
        422,
        "body.aggregates[1].segment",
        "no leading zero",
    ),
    (
        "a digit that is not ASCII",
        {"segment": "~replicate=²"},
        422,
        "body.aggregates[1].segment",
        "must be a replicate",
    ),
    ("another ~ segment", {"segment": "~other=1"}, 422, "body.aggregates[1].segment", "~"),
    (
        "a replicate in a window",
        {"window": NOW_MINUTE},
        422,
        "body.aggregates[1].window",
        "must be 0 for a replicate aggregate",
    ),
    (
        "window 0 without a replicate",
        {"segment": ""},
        422,
        "body.aggregates[1].window",
        "within 2 days",
    ),
    (
        "window 0 of a tenant",
        {"segment": "tenant=acme"},
        422,
        "body.aggregates[1].window",
        "within 2 days",
    ),
    (
        "a histogram",
        {"histogram": [0] * LATENCY_BUCKETS},
        422,
        "body.aggregates[1].histogram",
        "no histogram",
    ),
    (
        "an unknown metric",
        {"metric": "made.up"},
        422,
        "aggregates[1].metric",
        "plan has no rate guard and no latency guard with a tolerance on 'made.up'",
    ),
    (
        "a rate only the flags file declares",
        {"metric": "checkout.abandoned"},
        422,
        "aggregates[1].metric",
        "plan has no rate guard and no latency guard with a tolerance on 'checkout.abandoned'",
    ),
    ("a stage the plan does not have", {"stage": 7}, 422, "aggregates[1].stage", "no stage 7"),
    ("a stage not exposed yet", {"stage": 1}, 409, "aggregates[1].stage", "not being exposed"),
]


@pytest.mark.parametrize(
    ("what", "changes", "status", "field", "says"), BAD, ids=[case[0] for case in BAD]
)
def test_a_bad_replicate_row_is_refused_whole(
    server: Server, what: str, changes: dict[str, Any], status: int, field: str, says: str
) -> None:
    """The status and a message starting with the bad field's path (``details.errors`` for the
    batch's shape, ``details.path`` for what the store knows); nothing of the batch stored."""
    before = server.stored()
    reply = server.post(server.traffic(), server.replicate(5, **changes))
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["message"].startswith(f"{field}: "), body["message"]
    assert says in body["message"], body["message"]
    if field.startswith("body."):
        loc = ["body", "aggregates", 1, field.rsplit(".", 1)[1]]
        assert body["details"]["errors"][0]["loc"] == loc, body
    else:
        assert body["details"]["path"] == field
    assert server.stored() == before


def test_the_dashboard_series_is_unchanged_by_replicate_rows(server: Server) -> None:
    """The rollout's series is the same, byte for byte, before and after replicate rows whose
    rates all equal their side's (no dispersion to apply): they are not traffic."""
    reply = server.post(
        server.traffic(),
        server.traffic(exposed=False, requests=1900, events=76),
        server.traffic(segment="tenant=acme"),
        server.traffic(metric="checkout.latency", events=0, histogram=[100] + [0] * 431),
    )
    assert reply.status_code == 202, reply.text
    before = server.series()
    assert before["exposure"]["windows"][0]["exposed_requests"] == 100
    replicates = [
        server.replicate(k, exposed=exposed, requests=50, events=2)
        for k in range(8)
        for exposed in (True, False)
    ]
    assert server.post(*replicates).status_code == 202
    assert server.series() == before


def test_dispersed_replicate_rows_leave_the_windows_alone(server: Server) -> None:
    """Replicates whose rates spread widely may change the verdict (that is their point), but
    never the traffic per window: each guard's windows and the exposure are the same."""
    assert server.post(server.traffic(), server.traffic(exposed=False, requests=1900)).is_success
    before = server.series()
    replicates = [
        server.replicate(k, exposed=exposed, requests=1000, events=k * 100)
        for k in range(8)
        for exposed in (True, False)
    ]
    assert server.post(*replicates).status_code == 202
    after = server.series()
    assert after["exposure"] == before["exposure"]
    assert [g["windows"] for g in after["guards"]] == [g["windows"] for g in before["guards"]]
    assert after["segments"]["rows"] == before["segments"]["rows"]
