"""The dashboard: its bundled page and assets, and the series its charts draw, checked against
independent computations on a store filled deterministically."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy.stats import binomtest

from rollwise.control import ManualClock
from rollwise.core import RolloutAction
from rollwise.core.judgement import LATENCY_BUCKETS, latency_bucket
from rollwise.server import create_app
from rollwise.server._dashboard import ASSETS
from rollwise.store import AggregateRow, ExposureRow, GaugeRow, Role, Store

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (ROOT / "examples/checkout/flags.yaml").read_text()
ADMIN = "rw_admin_dashboard-secret"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
#: The store's window label of the window START begins (minutes since the epoch); the plan's
#: windows last its default stratum, 15 minutes, and the fixture's second window is an hour on.
WINDOW = int(START.timestamp() // 3600) * 60
PLAN = """
flag: new-checkout
unit: tenant
max_stage_duration: 2d
guards:
  - {metric: checkout.error, kind: rate, tolerance: 10%, by: [tenant]}
  - {metric: checkout.latency, kind: latency, quantile: 0.95, tolerance: 50ms}
  - {metric: payments.queue_depth, kind: gauge, max: 1000}
stages:
  - {name: pilot, audience: {segments: [pilot-tenants]}, bake: 10m}
  - {name: quarter, audience: {percent: 25}, bake: 10m, irreversible: true, approval: required}
  - {name: all, audience: {percent: 100}, holdback: 2%}
"""
#: Schemes and hosts the bundled assets may name: the SVG namespace is an identifier that is
#: never fetched.
ALLOWED_URLS = {"http://www.w3.org/2000/svg"}


@dataclass
class Filled:
    """A rollout with two windows of outcomes, a ledger, gauge readings and decisions."""

    client: TestClient
    store: Store
    clock: ManualClock
    rollout_id: int
    exposed_latency: np.ndarray[Any, Any]
    baseline_latency: np.ndarray[Any, Any]


def _histogram(samples: np.ndarray[Any, Any]) -> tuple[int, ...]:
    counts = [0] * LATENCY_BUCKETS
    for value in samples:
        counts[latency_bucket(float(value))] += 1
    return tuple(counts)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def client(tmp_path: Path, clock: ManualClock) -> Iterator[TestClient]:
    store = Store.open(f"sqlite:///{tmp_path / 'dashboard.db'}")
    app = create_app(store, clock, controller=False, admin_token=ADMIN)
    with TestClient(app, follow_redirects=False) as test_client:
        test_client.headers["Authorization"] = f"Bearer {ADMIN}"
        yield test_client
    store.close()


@pytest.fixture
def filled(client: TestClient, clock: ManualClock) -> Filled:
    store: Store = client.app.state.store  # type: ignore[attr-defined]
    assert client.put("/api/v1/flags", content=FLAGS).status_code == 200
    plan_id = client.post("/api/v1/plans", content=PLAN).json()["id"]
    rollout_id = client.post("/api/v1/rollouts", json={"plan_id": plan_id}).json()["id"]
    rng = np.random.default_rng(11)
    exposed_latency = rng.lognormal(math.log(120), 0.4, 3000)
    baseline_latency = rng.lognormal(math.log(110), 0.4, 20000)
    rows = [
        AggregateRow(rollout_id, 0, WINDOW, True, "", "checkout.error", 1000, 37),
        AggregateRow(rollout_id, 0, WINDOW, False, "", "checkout.error", 9000, 270),
        AggregateRow(rollout_id, 0, WINDOW + 60, True, "", "checkout.error", 1200, 30),
        AggregateRow(rollout_id, 0, WINDOW + 60, False, "", "checkout.error", 8800, 264),
        # The pilot tenant does worse than the other exposed tenant.
        AggregateRow(rollout_id, 0, WINDOW, True, "tenant=acme", "checkout.error", 600, 33),
        AggregateRow(rollout_id, 0, WINDOW, True, "tenant=rollwise", "checkout.error", 400, 4),
        AggregateRow(rollout_id, 0, WINDOW, False, "tenant=globex", "checkout.error", 9000, 270),
        AggregateRow(
            rollout_id,
            0,
            WINDOW,
            True,
            "",
            "checkout.latency",
            len(exposed_latency),
            0,
            _histogram(exposed_latency),
        ),
        AggregateRow(
            rollout_id,
            0,
            WINDOW,
            False,
            "",
            "checkout.latency",
            len(baseline_latency),
            0,
            _histogram(baseline_latency),
        ),
    ]
    exposures = [
        ExposureRow(rollout_id, "acme", 0, True, START + timedelta(minutes=5)),
        ExposureRow(rollout_id, "rollwise", 0, True, START + timedelta(minutes=70)),
        ExposureRow(rollout_id, "globex", 0, False, START + timedelta(minutes=6)),
    ]
    gauges = [
        GaugeRow("payments.queue_depth", 200.0 + i, START + timedelta(minutes=i)) for i in range(5)
    ]
    assert store.ingest("b1", "test", rows, exposures, START, gauges)
    return Filled(client, store, clock, rollout_id, exposed_latency, baseline_latency)


def _series(filled: Filled) -> dict[str, Any]:
    response = filled.client.get(f"/api/v1/rollouts/{filled.rollout_id}/series")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _guard(series: dict[str, Any], metric: str) -> dict[str, Any]:
    return next(g for g in series["guards"] if g["metric"] == metric)  # type: ignore[no-any-return]


def test_the_page_and_its_assets_are_served_with_their_types(client: TestClient) -> None:
    """/ leads to /dashboard/; the page and every bundled file come with the right type and a
    Content-Security-Policy that allows this origin only; anything else is a 404."""
    root = client.get("/")
    assert root.status_code == 307 and root.headers["location"] == "/dashboard/"
    assert client.get("/dashboard").headers["location"] == "/dashboard/"
    page = client.get("/dashboard/", headers={"Authorization": ""})
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="app.js"></script>' in page.text
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    names = sorted(p.name for p in ASSETS.iterdir() if p.suffix in types)
    assert {"app.js", "app.css", "charts.js", "icon.svg"} <= set(names)
    for name in names:
        response = client.get(f"/dashboard/{name}", headers={"Authorization": ""})
        assert response.status_code == 200, name
        assert response.headers["content-type"].startswith(types[Path(name).suffix]), name
    for missing in ("nope.js", ".hidden", "..%2f_app.py", "_dashboard.py"):
        assert client.get(f"/dashboard/{missing}").status_code == 404, missing
    assert "/dashboard/" not in client.app.openapi()["paths"]  # type: ignore[attr-defined]


def test_the_assets_load_nothing_from_elsewhere() -> None:
    """No bundled file names another host: no CDN, no web fonts, no remote images."""
    for path in ASSETS.iterdir():
        text = path.read_text(encoding="utf-8")
        urls = set(re.findall(r"https?://[^\s\"'`)<>]+", text))
        assert urls <= ALLOWED_URLS, f"{path.name} names {urls - ALLOWED_URLS}"
        assert "@import" not in text and "url(" not in text.replace("url(#", ""), path.name
        assert not re.search(r"""(src|href)=["']//""", text), path.name


def test_rates_per_window_carry_wilson_intervals(filled: Filled) -> None:
    """Each window's rate per side is events / requests with the Wilson score interval, as
    scipy computes it; the tolerated line is the baseline rate plus the relative tolerance."""
    windows = _guard(_series(filled), "checkout.error")["windows"]
    assert [w["start"] for w in windows] == [
        START.isoformat(),
        (START + timedelta(hours=1)).isoformat(),
    ]
    for window, (exposed, baseline) in zip(
        windows, [((37, 1000), (270, 9000)), ((30, 1200), (264, 8800))], strict=True
    ):
        for side, (events, requests) in (("exposed", exposed), ("baseline", baseline)):
            shown = window[side]
            interval = binomtest(events, requests).proportion_ci(0.95, method="wilson")
            assert (shown["requests"], shown["events"]) == (requests, events)
            assert shown["value"] == pytest.approx(events / requests)
            assert shown["lower"] == pytest.approx(interval.low, rel=1e-9)
            assert shown["upper"] == pytest.approx(interval.high, rel=1e-9)
        assert window["tolerated"] == pytest.approx(baseline[0] / baseline[1] * 1.1)


def test_windows_last_the_plans_stratum(filled: Filled) -> None:
    """The series names the plan's stratum (15 minutes by default) as its window length, and
    every window, of a guard or of exposure, ends that long after it starts."""
    series = _series(filled)
    assert series["window_minutes"] == 15
    windows = [
        *series["exposure"]["windows"],
        *(w for guard in series["guards"] for w in guard["windows"]),
    ]
    assert len(windows) == 5
    for window in windows:
        start, end = datetime.fromisoformat(window["start"]), datetime.fromisoformat(window["end"])
        assert end - start == timedelta(minutes=15)


def test_latency_per_window_is_the_quantile_of_each_side(filled: Filled) -> None:
    """A window's p95 read from its histogram is within the histogram's 3 % resolution of the
    raw samples' p95, and its interval covers it."""
    (window,) = _guard(_series(filled), "checkout.latency")["windows"]
    for side, samples in (
        ("exposed", filled.exposed_latency),
        ("baseline", filled.baseline_latency),
    ):
        truth = float(np.quantile(samples, 0.95))
        shown = window[side]
        assert shown["requests"] == len(samples)
        assert shown["value"] == pytest.approx(truth, rel=0.03)
        assert shown["lower"] <= truth <= shown["upper"]
        assert shown["upper"] - shown["lower"] < 0.25 * truth
    assert window["tolerated"] == pytest.approx(window["baseline"]["value"] + 50)


def test_exposure_per_window_and_from_the_ledger(filled: Filled) -> None:
    """Requests on each side per window, the exposed share, and exposed units counted at
    their first exposure (the unexposed unit is not counted)."""
    exposure = _series(filled)["exposure"]
    first, second = exposure["windows"]
    assert (first["exposed_requests"], first["baseline_requests"]) == (3000, 20000)
    assert first["exposed_share"] == pytest.approx(3000 / 23000)
    assert (second["exposed_requests"], second["baseline_requests"]) == (1200, 8800)
    assert (first["exposed_units"], second["exposed_units"]) == (1, 2)
    assert exposure["exposed_units"] == 2
    # The curve: units exposed by the end of each window that exposed some.
    assert [(u["at"], u["units"]) for u in exposure["units"]] == [
        ((START + timedelta(minutes=15)).isoformat(), 1),
        ((START + timedelta(minutes=75)).isoformat(), 2),
    ]


def test_segments_are_listed_worst_first(filled: Filled) -> None:
    """The tenant doing worse comes first, with its counts and its share of the tolerance;
    a segment with no exposed traffic is counted as hidden, not listed."""
    segments = _series(filled)["segments"]
    values = [row["value"] for row in segments["rows"]]
    assert values == ["acme", "rollwise"]
    acme = segments["rows"][0]
    assert (acme["exposed"], acme["attribute"], acme["metric"]) == (
        {"requests": 600, "events": 33},
        "tenant",
        "checkout.error",
    )
    assert acme["estimate"] > 1.1 > segments["rows"][1]["estimate"]
    assert acme["share_of_tolerance"] == pytest.approx((acme["estimate"] - 1) / 0.1)
    assert segments["hidden"] == 1


def test_the_effect_follows_the_decision_log_and_ends_with_the_live_verdict(
    filled: Filled,
) -> None:
    """Each kept decision's verdict for a guard is a point of its effect series, in order;
    a running rollout's series ends with the verdict judged now, and with what the controller
    would decide now."""
    controller = filled.client.app.state.controller  # type: ignore[attr-defined]
    for minutes in (1, 15, 30):
        filled.clock.advance(timedelta(minutes=minutes))
        controller.tick(filled.clock.now())
    kept = filled.client.get(f"/api/v1/rollouts/{filled.rollout_id}/decisions").json()
    assert len(kept) >= 2
    series = _series(filled)
    effect = _guard(series, "checkout.error")["effect"]
    assert (effect["scale"], effect["neutral"], effect["threshold"]) == ("ratio", 1.0, 1.1)
    stored = [
        next(v for v in d["evidence"]["verdicts"] if v["metric"] == "checkout.error")
        for d in reversed(kept)
    ]
    points = effect["points"]
    assert [(p["estimate"], p["lower"], p["upper"], p["verdict"]) for p in points[:-1]] == [
        (v["estimate"], v["lower"], v["upper"], v["verdict"]) for v in stored
    ]
    assert points[-1]["live"] and points[-1]["at"] == filled.clock.now().isoformat()
    latency = _guard(series, "checkout.latency")["effect"]
    assert (latency["scale"], latency["neutral"], latency["threshold"]) == ("difference", 0.0, 50.0)
    assert series["decision"]["live"] and series["decision"]["move"] == "hold"
    assert series["latest_decision_id"] == kept[0]["id"]
    gauge = _guard(series, "payments.queue_depth")
    assert gauge["effect"] is None and [r["value"] for r in gauge["readings"]] == [
        200.0,
        201.0,
        202.0,
        203.0,
        204.0,
    ]


def test_the_timeline_replays_the_stages_from_the_audit_log(filled: Filled) -> None:
    """Entered, left and how for each stage; people's actions as events; after a rollback the
    stage it happened in is marked, and the stages ahead stay ahead."""
    client, clock, rollout_id = filled.client, filled.clock, filled.rollout_id
    path = f"/api/v1/rollouts/{rollout_id}"
    clock.advance(timedelta(minutes=20))
    assert client.post(f"{path}/approve", json={"stage": "quarter"}).status_code == 200
    record = filled.store.rollout(rollout_id)
    clock.advance(timedelta(minutes=10))
    expanded_at = clock.now()
    filled.store.transition(
        record,
        actor="controller",
        action=RolloutAction.EXPAND,
        now=expanded_at,
        stage=1,
        details={"reasons": ["every gate is met"], "stage": 0},
    )
    clock.advance(timedelta(minutes=10))
    assert client.post(f"{path}/pause", json={"reason": "look first"}).status_code == 200
    clock.advance(timedelta(minutes=10))
    rolled_back_at = clock.now()
    assert client.post(f"{path}/rollback", json={"reason": "enough"}).status_code == 200
    series = _series(filled)
    stages = series["stages"]
    assert [s["state"] for s in stages] == ["done", "rolled_back", "ahead"]
    assert stages[0]["left_at"] == stages[1]["entered_at"] == expanded_at.isoformat()
    assert (stages[0]["left_by"], stages[1]["left_by"]) == ("expand", "rollback")
    assert stages[1]["left_at"] == rolled_back_at.isoformat()
    assert (stages[1]["irreversible"], stages[1]["approval"], stages[1]["approved"]) == (
        True,
        True,
        True,
    )
    assert stages[2]["entered_at"] is None and stages[2]["assigned_percent"] == 98.0
    actions = [(e["action"], e["reason"]) for e in series["events"]]
    assert actions == [
        ("rollout.start", ""),
        ("rollout.approve", "quarter"),
        ("rollout.expand", "every gate is met"),
        ("rollout.pause", "look first"),
        ("rollout.rollback", "enough"),
    ]
    assert series["rollout"]["status"] == "rolled_back" and series["decision"] is None
    plan = client.get(path).json()["plan"]
    assert [(s["irreversible"], s["approval"]) for s in plan["stages"]] == [
        (False, False),
        (True, True),
        (False, False),
    ]


def test_the_series_needs_a_viewer_token_and_a_known_rollout(filled: Filled) -> None:
    """No token: 401; a viewer reads it; an SDK key may not; an unknown rollout is a 404 that
    says so; a malformed id is refused."""
    client = filled.client
    path = f"/api/v1/rollouts/{filled.rollout_id}/series"
    assert client.get(path, headers={"Authorization": ""}).status_code == 401
    viewer = client.post("/api/v1/tokens", json={"name": "v", "role": Role.VIEWER.value})
    sdk = client.post("/api/v1/tokens", json={"name": "s", "role": Role.SDK.value})
    assert (
        client.get(path, headers={"Authorization": f"Bearer {viewer.json()['secret']}"}).status_code
        == 200
    )
    assert (
        client.get(path, headers={"Authorization": f"Bearer {sdk.json()['secret']}"}).status_code
        == 403
    )
    missing = client.get("/api/v1/rollouts/999/series")
    assert missing.status_code == 404 and missing.json()["message"] == "no rollout 999"
    assert client.get("/api/v1/rollouts/abc/series").status_code == 422


def test_an_ended_rollout_is_shown_as_its_last_decision_judged_it(filled: Filled) -> None:
    """After a rollback on one tenant's harm, guard and segment verdicts come from the
    decision that rolled it back, not from data that arrived later; there is no live point."""
    controller = filled.client.app.state.controller  # type: ignore[attr-defined]
    # The pilot tenant's history on the baseline, an hour before (a whole tenant is judged
    # against its own history: without one it is not judged on its own).
    history = [
        AggregateRow(filled.rollout_id, 0, WINDOW - 60, False, "", "checkout.error", 10_000, 300),
        AggregateRow(
            filled.rollout_id, 0, WINDOW - 60, False, "tenant=acme", "checkout.error", 3000, 90
        ),
    ]
    assert filled.store.ingest("history", "test", history, [], filled.clock.now())
    # The pilot tenant fails one checkout in ten: harm, for the decision log to keep.
    worse = [
        AggregateRow(
            filled.rollout_id, 0, WINDOW + 60, True, "tenant=acme", "checkout.error", 5000, 500
        )
    ]
    assert filled.store.ingest("worse", "test", worse, [], filled.clock.now())
    filled.clock.advance(timedelta(minutes=5))
    controller.tick(filled.clock.now())
    (kept,) = filled.client.get(f"/api/v1/rollouts/{filled.rollout_id}/decisions").json()
    assert (
        kept["move"] == "rollback"
        and filled.store.rollout(filled.rollout_id).status.value == "rolled_back"
    )
    # A late batch: the tenant now looks fine, but that is not what was judged.
    late = [
        AggregateRow(
            filled.rollout_id, 0, WINDOW + 60, True, "tenant=acme", "checkout.error", 50_000, 0
        )
    ]
    assert filled.store.ingest("late", "test", late, [], filled.clock.now())
    series = _series(filled)
    segments = series["segments"]
    assert (segments["source"], segments["at"]) == ("decision", kept["at"])
    stored = {tuple(v["segment"]): v for v in kept["evidence"]["segments"]}
    assert stored, "the decision judged no segment: the test would prove nothing"
    assert {(r["attribute"], r["value"]): r["estimate"] for r in segments["rows"]} == {
        key: value["estimate"] for key, value in stored.items()
    }
    error = _guard(series, "checkout.error")
    stored_error = next(v for v in kept["evidence"]["verdicts"] if v["metric"] == "checkout.error")
    assert error["verdict"]["estimate"] == stored_error["estimate"]
    assert not any(p["live"] for p in error["effect"]["points"])
    assert segments["rows"][0]["value"] == "acme" and segments["rows"][0]["verdict"] == "harm"
    assert series["decision"] == {
        "at": kept["at"],
        "move": "rollback",
        "reasons": kept["reasons"],
        "gates": kept["evidence"]["gates"],
        "live": False,
    }
