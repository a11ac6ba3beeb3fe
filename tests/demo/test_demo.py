"""The checkout demo end to end: a real server, the SDK, the controller on a fast clock. The
defect is caught per tenant and rolled back, and the report's blast radius agrees with the
ledger, the stored aggregates and the service's own count of what it served."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from rollwise.cli import main
from rollwise.core import bucket
from rollwise.demo import DEFECT_TENANT, Demo, DemoOptions, render
from tests._serving import server_client

START = datetime(2026, 11, 26, 20, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def finished() -> Iterator[tuple[Demo, dict[str, Any]]]:
    with Demo(DemoOptions(pace=0.4, seed=11, start=START, timeout=240)) as demo:
        report = demo.run()
        yield demo, report


def test_the_tenant_specific_defect_is_rolled_back(finished: tuple[Demo, dict[str, Any]]) -> None:
    """The rollout passes the internal and pilot stages and is rolled back in five-percent,
    triggered by the per-tenant error guard for the defect tenant, with its numbers."""
    _, report = finished
    assert report["outcome"] == "rolled_back"
    assert report["stage"] == {"index": 2, "name": "five-percent"}
    trigger = report["trigger"]
    assert trigger["guard"] == "checkout.error"
    assert trigger["segment"] == f"tenant={DEFECT_TENANT}"
    assert trigger["verdict"] == "harm"
    # The evidence: the exposed rate over the baseline's, bounded above the tolerated ratio of
    # the plan's 50 % tolerance.
    (exposed, exposed_failed), (baseline, baseline_failed) = trigger["exposed"], trigger["baseline"]
    assert exposed_failed / exposed > 3 * baseline_failed / baseline
    assert trigger["threshold"] == pytest.approx(1.5)
    assert trigger["lower"] > trigger["threshold"]
    events = [(item["actor"], item["event"]) for item in report["timeline"]]
    assert events[0][1] == "started at internal"
    assert ("operator:demo-operator", "approved entering pilot-tenant") in events
    assert ("controller", "expanded to five-percent") in events
    assert events[-1] == ("controller", "rolled back")


def test_the_blast_radius_agrees_with_the_ledger_aggregates_and_service(
    finished: tuple[Demo, dict[str, Any]],
) -> None:
    """Units exposed are the ledger's (and exactly who the plan's audiences admit); requests
    and failures exposed are the stored aggregates' sums and what the service served."""
    demo, report = finished
    radius = report["blast_radius"]
    with server_client(demo.url, demo.viewer_token) as api:
        page = api.get(f"/api/v1/rollouts/{demo.rollout_id}/ledger").json()
    ledger = page["units"]
    assert page["next"] is None and page["exposed_units"] == len(ledger)
    units = {entry["unit"] for entry in ledger}
    assert radius["units_exposed"] == len(ledger)
    assert {u["unit"] for u in radius["units"]} == units
    # Who the audiences admit up to five-percent: staff, the pilot, buckets below 5 %.
    served = set(report["service"]["tenants_served_new"])
    admitted = {"staff", "acme"} | {t for t in served if bucket("new-checkout", t) < 5_000}
    assert units == admitted == served
    assert DEFECT_TENANT in units

    with demo.store.engine.connect() as connection:
        requests, failed = connection.execute(
            sa.text(
                "select sum(requests), sum(events) from aggregates where rollout_id = :id "
                "and exposed and segment = '' and metric = 'checkout.error'"
            ),
            {"id": demo.rollout_id},
        ).one()
    assert radius["requests_exposed"] == requests > 0
    assert radius["failed_requests_exposed"] == failed > 0
    assert sum(s["requests_exposed"] for s in radius["per_stage"]) == requests
    assert sum(s["units_first_exposed"] for s in radius["per_stage"]) == len(units)
    # Every SDK batch arrived: the stored counts are what the service served. (On a busy
    # machine the service skips checkouts it has no time for — report["service"]["skipped"] —
    # which are then neither served nor stored: what must hold is the agreement.)
    service = report["service"]
    # No batch was refused, dropped or left behind (a difference below would say which).
    sdk = service["sdk_batches"]
    assert sdk["sent"] > 0
    assert {k: v for k, v in sdk.items() if k != "sent"} == dict.fromkeys(
        ("rejected", "dropped", "pending", "outcomes_dropped", "exposures_dropped"), 0
    ), sdk
    # A checkout during which the SDK's snapshot changed (the rollback) is attributed when its
    # outcomes are recorded, on the snapshot then: it may be stored on the other side. Each of
    # the two instances serves one checkout at a time, so at most one per snapshot change.
    straddled = service["straddled"]
    assert straddled <= 2 * 25, straddled
    assert abs(service["requests_served_new"] - requests) <= straddled
    assert abs(service["failed_requests_served_new"] - failed) <= straddled


def test_the_irreversible_stage_ledger_names_who_needs_follow_up(
    finished: tuple[Demo, dict[str, Any]],
) -> None:
    """pilot-tenant was entered, so every exposed unit is listed; staff were exposed before
    it, the others from it on."""
    _, report = finished
    ledger = report["ledger"]
    assert ledger["irreversible_stage"] == "pilot-tenant"
    assert ledger["entered"] is True
    before = {u["unit"] for u in ledger["units"] if u["exposed_before_irreversible"]}
    assert before == {"staff"}
    assert {u["unit"] for u in ledger["units"]} == {
        u["unit"] for u in report["blast_radius"]["units"]
    }


def test_the_report_is_json_and_reads_as_text(finished: tuple[Demo, dict[str, Any]]) -> None:
    """The JSON report has the promised fields; the text names the trigger and the tenant."""
    _, report = finished
    data = json.loads(json.dumps(report))
    for key in ("outcome", "stage", "trigger", "blast_radius", "durations", "timeline", "ledger"):
        assert key in data
    assert data["durations"]["simulated_seconds"] > 4 * 3600
    assert 0 < data["durations"]["wall_seconds"] < 240
    text = render(report)
    assert "ROLLED BACK at stage five-percent" in text
    assert f"tenant={DEFECT_TENANT}" in text
    assert "need follow-up" in text


def test_bad_options_are_refused_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    """A pace out of range exits 2 naming the option, before anything starts."""
    assert main(["demo", "--pace", "0"]) == 2
    assert "--pace must be between" in capsys.readouterr().err
