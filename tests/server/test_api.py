"""The HTTP service: roles, validation, idempotent ingestion and the controller end to end."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rollwise.control import ManualClock
from rollwise.sdk._snapshot import parse_snapshot
from rollwise.server import create_app
from rollwise.store import Role, Store

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (ROOT / "examples/checkout/flags.yaml").read_text()
ADMIN = "rw_admin_test-secret"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
WINDOW = int(START.timestamp() // 60)  # the window of START, minutes since the epoch
PLAN = """
flag: new-checkout
unit: tenant
max_stage_duration: 2d
guards:
  - {metric: checkout.error, kind: rate, tolerance: 10%}
stages:
  - {name: canary, audience: {percent: 5}, bake: 10m, min_samples: 1000}
  - {name: half, audience: {percent: 50}, bake: 10m, min_samples: 1000, approval: required}
  - {name: all, audience: {percent: 100}, holdback: 2%}
"""


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def client(tmp_path: Path, clock: ManualClock) -> Iterator[TestClient]:
    store = Store.open(f"sqlite:///{tmp_path / 'server.db'}")
    app = create_app(store, clock, controller=False, admin_token=ADMIN)
    with TestClient(app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {ADMIN}"
        yield test_client
    store.close()


def _token(client: TestClient, role: Role) -> dict[str, str]:
    response = client.post("/api/v1/tokens", json={"name": role.value, "role": role.value})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['secret']}"}


def _start(client: TestClient, plan: str = PLAN) -> dict[str, object]:
    assert client.put("/api/v1/flags", content=FLAGS).status_code == 200
    saved = client.post("/api/v1/plans", content=plan)
    assert saved.status_code == 201, saved.text
    started = client.post("/api/v1/rollouts", json={"plan_id": saved.json()["id"]})
    assert started.status_code == 201, started.text
    return started.json()  # type: ignore[no-any-return]


def test_roles_are_enforced(client: TestClient) -> None:
    """No token: 401; a viewer reads but cannot change; an SDK key reads only the snapshot."""
    assert client.get("/api/v1/flags", headers={"Authorization": ""}).status_code == 401
    assert client.get("/api/v1/flags", headers={"Authorization": "Bearer nope"}).status_code == 401
    viewer, sdk = _token(client, Role.VIEWER), _token(client, Role.SDK)
    assert client.get("/api/v1/flags", headers=viewer).status_code == 200
    refused = client.put("/api/v1/flags", content=FLAGS, headers=viewer)
    assert refused.status_code == 403 and "needs an operator token" in refused.json()["message"]
    assert client.get("/api/v1/flags", headers=sdk).status_code == 403
    assert client.get("/sdk/v1/snapshot", headers=sdk).status_code == 200
    assert client.get("/sdk/v1/snapshot").status_code == 403  # the admin is not an SDK


def test_an_invalid_flags_file_is_a_422_naming_the_line(client: TestClient) -> None:
    """Bad YAML or a bad field: 422 with the path and line; nothing is applied."""
    response = client.put("/api/v1/flags", content="flags:\n  f:\n    variants: [only]\n")
    assert response.status_code == 422
    assert response.json()["error"] == "invalid"
    detail = response.json()["details"]
    assert (detail["path"], detail["line"]) == ("flags.f.variants", 3)
    assert client.get("/api/v1/flags").json()["flags"] == []
    plan = client.post("/api/v1/plans", content="flag: f\nunit: user\nstages: []\n")
    assert plan.status_code == 422 and plan.json()["details"]["path"] == "stages"


def test_snapshot_is_versioned_with_an_etag(client: TestClient) -> None:
    """The snapshot carries the stage rules; If-None-Match gives 304 until a change."""
    sdk = _token(client, Role.SDK)
    rollout = _start(client)
    first = client.get("/sdk/v1/snapshot", headers=sdk)
    etag = first.headers["etag"]
    document = first.json()
    assert document["rollouts"][0]["id"] == rollout["id"]
    assert document["rollouts"][0]["metrics"] == {"checkout.error": "rate"}
    rules = document["flags"]["flags"]["new-checkout"]["rules"]
    assert rules == [
        {"description": "canary: 5% of tenants", "percent": 5.0, "unit": "tenant", "serve": "on"}
    ]
    assert client.get("/sdk/v1/snapshot", headers={**sdk, "If-None-Match": etag}).status_code == 304
    client.post("/api/v1/flags/new-checkout/kill")
    killed = client.get("/sdk/v1/snapshot", headers={**sdk, "If-None-Match": etag})
    assert killed.status_code == 200 and killed.json()["flags"]["flags"]["new-checkout"]["killed"]


@pytest.mark.parametrize(("stratum", "minutes"), [(None, 15), ("5m", 5), ("1h", 60)])
def test_snapshot_carries_the_plans_window_minutes(
    client: TestClient, stratum: str | None, minutes: int
) -> None:
    """Each live rollout in the snapshot names its plan's stratum in minutes (15 by default),
    and the SDK reads it as the length of its aggregation windows."""
    plan = PLAN if stratum is None else f"{PLAN}stratum: {stratum}\n"
    _start(client, plan)
    response = client.get("/sdk/v1/snapshot", headers=_token(client, Role.SDK))
    (served,) = response.json()["rollouts"]
    assert served["window_minutes"] == minutes
    (live,) = parse_snapshot(response.content).rollouts
    assert live.window_minutes == minutes


def test_snapshot_tells_sdks_the_tail_quantile_of_each_latency_guard(client: TestClient) -> None:
    """A latency guard with a tolerance names its metric's quantile (the highest of its
    guards), where the SDK's replicates count requests beyond."""
    guards = (
        "  - {metric: checkout.error, kind: rate, tolerance: 10%}\n"
        "  - {metric: checkout.latency, kind: latency, quantile: 0.9, tolerance: 10%}\n"
        "  - {metric: checkout.latency, kind: latency, quantile: 0.99, tolerance: 50ms}\n"
    )
    _start(
        client, PLAN.replace("  - {metric: checkout.error, kind: rate, tolerance: 10%}\n", guards)
    )
    response = client.get("/sdk/v1/snapshot", headers=_token(client, Role.SDK))
    (served,) = response.json()["rollouts"]
    assert served["tails"] == {"checkout.latency": 0.99}
    (live,) = parse_snapshot(response.content).rollouts
    assert live.tails == {"checkout.latency": 0.99}


def test_rollout_lifecycle_and_audit_names_the_actor(client: TestClient) -> None:
    """Start, a second start (409), pause, resume, approve, roll back; the audit log says who."""
    operator = _token(client, Role.OPERATOR)
    rollout = _start(client)
    path = f"/api/v1/rollouts/{rollout['id']}"
    saved = client.post("/api/v1/plans", content=PLAN).json()
    assert client.post("/api/v1/rollouts", json={"plan_id": saved["id"]}).status_code == 409
    assert (
        client.post(f"{path}/pause", json={"reason": "look"}, headers=operator).json()["status"]
        == "paused"
    )
    assert client.post(f"{path}/pause", json={}).status_code == 409
    assert client.post(f"{path}/resume", json={}).json()["status"] == "running"
    approved = client.post(f"{path}/approve", json={"stage": "half"})
    assert approved.json()["approvals"] == ["half"]
    assert client.post(f"{path}/approve", json={"stage": "nope"}).status_code == 422
    assert (
        client.post(f"{path}/rollback", json={"reason": "enough"}).json()["status"] == "rolled_back"
    )
    actions = [(e["actor"], e["action"]) for e in client.get("/api/v1/audit").json()]
    assert ("operator:operator", "rollout.pause") in actions
    assert ("admin:bootstrap", "rollout.rollback") in actions
    snapshot = client.get("/sdk/v1/snapshot", headers=_token(client, Role.SDK)).json()
    assert snapshot["rollouts"] == []
    served = snapshot["flags"]["flags"]["new-checkout"]
    assert served["rules"] == [] and served.get("default", "off") == "off"


def _batch(
    rollout_id: int, stage: int, exposed: tuple[int, int], baseline: tuple[int, int]
) -> dict[str, object]:
    return {
        "batch": str(uuid.uuid4()),
        "aggregates": [
            {
                "rollout": rollout_id,
                "stage": stage,
                "window": WINDOW,
                "exposed": True,
                "metric": "checkout.error",
                "requests": exposed[0],
                "events": exposed[1],
            },
            {
                "rollout": rollout_id,
                "stage": stage,
                "window": WINDOW,
                "exposed": False,
                "metric": "checkout.error",
                "requests": baseline[0],
                "events": baseline[1],
            },
        ],
        "exposures": [
            {
                "rollout": rollout_id,
                "unit": "abc123",
                "stage": stage,
                "exposed": True,
                "at": START.isoformat(),
            }
        ],
    }


def test_event_batches_are_applied_once_and_bad_ones_refused(client: TestClient) -> None:
    """202 once, 200 duplicate on retry; malformed 422; unknown rollout 404; huge 413."""
    sdk = _token(client, Role.SDK)
    rollout = _start(client)
    batch = _batch(int(rollout["id"]), 0, (100, 1), (1900, 19))  # type: ignore[call-overload]
    assert client.post("/sdk/v1/events", json=batch, headers=sdk).status_code == 202
    again = client.post("/sdk/v1/events", json=batch, headers=sdk)
    assert again.status_code == 200 and again.json() == {"applied": False, "duplicate": True}
    bad = {
        **batch,
        "batch": str(uuid.uuid4()),
        "aggregates": [{"rollout": rollout["id"], "requests": -1}],
    }
    refused = client.post("/sdk/v1/events", json=bad, headers=sdk)
    assert refused.status_code == 422
    assert refused.json()["error"] == "invalid"
    assert any(
        error["loc"][-3:] == ["aggregates", 0, "requests"]
        and "greater than or equal to 0" in error["msg"]
        for error in refused.json()["details"]["errors"]
    ), refused.json()
    unknown = _batch(999, 0, (1, 0), (1, 0))
    response = client.post("/sdk/v1/events", json=unknown, headers=sdk)
    assert response.status_code == 404 and "unknown rollout(s): 999" in response.json()["message"]
    huge = {
        **batch,
        "batch": str(uuid.uuid4()),
        "sdk": "x" * 100,
        "aggregates": [batch["aggregates"][0]] * 100_000,
    }  # type: ignore[index]
    assert client.post("/sdk/v1/events", json=huge, headers=sdk).status_code == 413
    ledger = client.get(f"/api/v1/rollouts/{rollout['id']}/ledger").json()
    assert [u["unit"] for u in ledger["units"]] == ["abc123"]


def test_the_ledger_is_read_a_page_at_a_time(client: TestClient) -> None:
    """``limit`` units a page, in the units' order, ``next`` leading to the next page and null
    on the last; a limit or cursor out of bounds is a 422 naming it, a rollout that does not
    exist a 404."""
    sdk = _token(client, Role.SDK)
    rollout = _start(client)
    at = START.isoformat()
    units = [f"u{n:03d}" for n in range(25)]
    batch = {
        "batch": str(uuid.uuid4()),
        "aggregates": [],
        "exposures": [
            {"rollout": rollout["id"], "unit": unit, "stage": 0, "exposed": True, "at": at}
            for unit in reversed(units)
        ],
    }
    accepted = client.post("/sdk/v1/events", json=batch, headers=sdk)
    assert accepted.status_code == 202, accepted.text
    path = f"/api/v1/rollouts/{rollout['id']}/ledger"
    listed: list[str] = []
    params: dict[str, object] = {"limit": 10}
    while True:
        page = client.get(path, params=params).json()
        assert page["exposed_units"] == 25 and len(page["units"]) <= 10
        listed += [entry["unit"] for entry in page["units"]]
        if page["next"] is None:
            break
        params = {"limit": 10, "after": page["next"]}
    assert listed == units
    assert len(client.get(path).json()["units"]) == 25  # up to 1,000 by default
    assert client.get(path, params={"from_stage": 1}).json() == {
        "rollout_id": rollout["id"],
        "exposed_units": 0,
        "units": [],
        "next": None,
    }
    for bad, field in (
        ({"limit": 0}, "limit"),
        ({"limit": 10_001}, "limit"),
        ({"after": "x" * 65}, "after"),
        ({"from_stage": -1}, "from_stage"),
    ):
        refused = client.get(path, params=bad)
        assert refused.status_code == 422 and field in refused.text, (bad, refused.text)
    assert client.get("/api/v1/rollouts/999/ledger").status_code == 404


def test_controller_rolls_back_a_regression_and_the_decision_says_why(
    client: TestClient, clock: ManualClock
) -> None:
    """Events showing a doubled error rate → the next tick rolls back; the decision log and
    the snapshot show it."""
    sdk = _token(client, Role.SDK)
    rollout = _start(client)
    client.post(
        "/sdk/v1/events",
        json=_batch(int(rollout["id"]), 0, (20_000, 400), (380_000, 3_800)),
        headers=sdk,
    )  # type: ignore[call-overload]
    clock.advance(timedelta(minutes=1))
    (outcome,) = client.app.state.controller.tick(clock.now())  # type: ignore[attr-defined]
    assert outcome.applied and outcome.decision.move.value == "rollback"
    state = client.get(f"/api/v1/rollouts/{rollout['id']}").json()
    assert state["status"] == "rolled_back"
    assert state["decision"]["move"] == "rollback"
    assert (
        "checkout.error is worse than tolerated: 2% exposed vs 1% baseline"
        in state["decision"]["reasons"][0]
    )
    assert state["decision"]["evidence"]["trigger"]["lower"] > 1.1
    served = client.get("/sdk/v1/snapshot", headers=sdk).json()["flags"]["flags"]["new-checkout"]
    assert served["rules"] == [] and served.get("default", "off") == "off"


def test_controller_expands_when_safe_and_waits_for_approval(
    client: TestClient, clock: ManualClock
) -> None:
    """Safe evidence and a baked stage → expand; the next stage waits for its approval."""
    sdk = _token(client, Role.SDK)
    rollout = _start(client)
    client.post(
        "/sdk/v1/events",
        json=_batch(int(rollout["id"]), 0, (2_000_000, 20_000), (38_000_000, 380_000)),
        headers=sdk,
    )  # type: ignore[call-overload]
    clock.advance(timedelta(minutes=5))
    (held,) = client.app.state.controller.tick(clock.now())  # type: ignore[attr-defined]
    assert held.decision.move.value == "hold" and "baked 5m of 10m" in held.decision.reasons
    clock.advance(timedelta(minutes=6))
    (waiting,) = client.app.state.controller.tick(clock.now())  # type: ignore[attr-defined]
    assert "waiting for approval to enter 'half'" in waiting.decision.reasons
    client.post(f"/api/v1/rollouts/{rollout['id']}/approve", json={"stage": "half"})
    (expanded,) = client.app.state.controller.tick(clock.now())  # type: ignore[attr-defined]
    assert expanded.applied and expanded.decision.move.value == "expand"
    assert client.get(f"/api/v1/rollouts/{rollout['id']}").json()["stage"] == 1
    rules = client.get("/sdk/v1/snapshot", headers=sdk).json()["flags"]["flags"]["new-checkout"][
        "rules"
    ]
    assert rules[0]["percent"] == 50.0
    moves = [d["move"] for d in client.get(f"/api/v1/rollouts/{rollout['id']}/decisions").json()]
    assert moves == ["expand", "hold", "hold"]


def test_health_metrics_and_openapi(client: TestClient) -> None:
    """healthz, readyz, Prometheus metrics and the OpenAPI document are served."""
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    metrics = client.get("/metrics")
    assert metrics.status_code == 200 and "rollwise_snapshot_version" in metrics.text
    paths = client.get("/openapi.json").json()["paths"]
    assert {
        "/api/v1/flags",
        "/sdk/v1/snapshot",
        "/sdk/v1/events",
        "/api/v1/rollouts/{rollout_id}/rollback",
    } <= set(paths)


def test_a_gauge_over_its_limit_pauses_the_rollout(client: TestClient, clock: ManualClock) -> None:
    """Gauge readings posted by an SDK reach the gauge guard: three readings over the limit in a
    row pause the rollout, and the decision says which gauge."""
    sdk = _token(client, Role.SDK)
    plan = PLAN.replace(
        "guards:\n",
        "guards:\n  - {metric: payments.queue_depth, kind: gauge, max: 1000, breaches: 3, on_regression: pause}\n",
    )
    rollout = _start(client, plan)
    readings = [
        {
            "metric": "payments.queue_depth",
            "value": value,
            "at": (START + timedelta(seconds=10 * i)).isoformat(),
        }
        for i, value in enumerate([400, 1200, 1300, 1400])
    ]
    batch = {"batch": str(uuid.uuid4()), "gauges": readings}
    assert client.post("/sdk/v1/events", json=batch, headers=sdk).status_code == 202
    clock.advance(timedelta(minutes=1))
    (outcome,) = client.app.state.controller.tick(clock.now())  # type: ignore[attr-defined]
    assert outcome.applied and outcome.decision.move.value == "pause"
    assert (
        "payments.queue_depth: 1.4e+03 > max 1e+03 for 3 readings in a row"
        in outcome.decision.reasons[0]
        or "payments.queue_depth: 1400 > max 1000 for 3 readings in a row"
        in outcome.decision.reasons[0]
    )
    assert client.get(f"/api/v1/rollouts/{rollout['id']}").json()["status"] == "paused"
