"""The dashboard in a real browser, on a live checkout rollout: what it shows, and what a
person can do from it. The tests share one server and run in order: the kill switch is last."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import expect

from rollwise.store import Role
from tests.browser.conftest import BrowserPage, Checkout
from tests.browser.dashboard import Dashboard
from tests.browser.live import ADMIN

#: A drawn line: a path that moves to a point and draws to at least one more.
DRAWN = re.compile(r"^M[\d.\-]+,[\d.\-]+[LHV]")


def _dashboard(checkout: Checkout, browser_page: BrowserPage) -> Dashboard:
    return Dashboard(browser_page.page, checkout.server.url)


def _wait_for_two_windows(checkout: Checkout) -> None:
    """Lines need two points: two windows of simulated traffic (the plan's stratum, 15
    minutes: under 2 s at 1200×)."""
    path = f"/api/v1/rollouts/{checkout.rollout_id}/series"

    def enough() -> bool:
        series = checkout.server.admin.get(path).json()
        return len(series["exposure"]["windows"]) >= 2 and series["latest_decision_id"] is not None

    checkout.server.wait_for(enough, timeout=30, what="two windows of traffic")


def test_the_rollout_page_shows_the_rollout_at_a_glance(
    checkout: Checkout, browser_page: BrowserPage, artifacts: Path
) -> None:
    """Stages, exposure, one chart pair per guard drawn from live data, the segments, the
    decision log and the ledger; the token leaves the address bar; a full-page screenshot."""
    _wait_for_two_windows(checkout)
    dashboard = _dashboard(checkout, browser_page)
    dashboard.open(f"/rollouts/{checkout.rollout_id}", ADMIN)
    dashboard.wait_for_charts(4)
    page = browser_page.page
    assert "token" not in page.url and page.url.endswith(f"#/rollouts/{checkout.rollout_id}")
    expect(dashboard.status()).to_have_attribute("data-status", "running")
    expect(dashboard.testid("current-stage")).to_have_text("internal")
    stages = dashboard.testid("stage")
    expect(stages).to_have_count(5)
    assert stages.first.get_attribute("data-state") == "current"
    assert stages.nth(1).get_attribute("data-state") == "ahead"
    expect(dashboard.testid("stage-timeline").get_by_text("irreversible")).to_have_count(1)

    guards = dashboard.testid("guard")
    expect(guards).to_have_count(4)
    for chart in dashboard.testid("guard-chart").all():
        lines = [
            d
            for d in chart.locator("path.line").evaluate_all(
                "ps => ps.map(p => p.getAttribute('d'))"
            )
            if d
        ]
        assert any(DRAWN.match(d) for d in lines), lines
    rate_chart = guards.first.get_by_test_id("guard-chart")
    assert rate_chart.locator("circle.dot.exposed").count() >= 2
    assert rate_chart.locator("path.band.exposed").count() == 1
    effect = guards.first.get_by_test_id("effect-chart")
    assert effect.locator("circle.dot").count() >= 2
    expect(effect.locator("text.ref-label").first).to_contain_text("tolerance")
    expect(dashboard.testid("exposure-chart")).to_have_attribute("data-drawn", "true")

    expect(dashboard.testid("segment-row").first).to_be_visible()
    expect(dashboard.testid("decision").first).to_be_visible()
    expect(dashboard.testid("ledger-row").first).to_contain_text("internal")
    expect(dashboard.testid("irreversible-note")).to_contain_text("pilot-tenant")
    expect(dashboard.testid("clock")).to_contain_text("simulated time")
    shot = dashboard.screenshot(artifacts / "rollout-page.png")
    assert shot.stat().st_size > 50_000


def test_pause_asks_first_then_pauses_and_resume_resumes(
    checkout: Checkout, browser_page: BrowserPage
) -> None:
    """Pause opens an in-page confirmation; cancel changes nothing; confirming pauses (the
    API agrees, with the reason in the audit log); resume runs it again."""
    server, rollout_id = checkout.server, checkout.rollout_id
    checkout.assert_running()
    dashboard = _dashboard(checkout, browser_page)
    dashboard.open(f"/rollouts/{rollout_id}", server.token(Role.OPERATOR, "release-manager"))
    expect(dashboard.status()).to_have_attribute("data-status", "running")
    dashboard.testid("pause-button").click()
    expect(dashboard.testid("confirm-dialog")).to_be_visible()
    dashboard.testid("cancel").click()
    expect(dashboard.testid("confirm-dialog")).to_be_hidden()
    assert server.rollout(rollout_id)["status"] == "running"

    dialog = dashboard.press("pause-button", reason="checking the pilot's invoices")
    expect(dialog).to_be_hidden()
    expect(dashboard.status()).to_have_attribute("data-status", "paused")
    assert server.rollout(rollout_id)["status"] == "paused"
    audit = server.admin.get("/api/v1/audit", params={"limit": 20}).json()
    pause = next(e for e in audit if e["action"] == "rollout.pause")
    assert pause["actor"] == "operator:release-manager"
    assert pause["details"]["reason"] == "checking the pilot's invoices"
    expect(dashboard.testid("stage").first).to_have_attribute("data-state", "paused")
    expect(dashboard.testid("decision-event").first).to_contain_text("paused")

    dashboard.press("resume-button")
    expect(dashboard.status()).to_have_attribute("data-status", "running")
    assert server.rollout(rollout_id)["status"] == "running"


def test_a_viewer_is_told_it_needs_an_operator_token(
    checkout: Checkout, browser_page: BrowserPage
) -> None:
    """A viewer sees everything, but pressing pause says an operator token is needed, in the
    dialog, and nothing changes."""
    server, rollout_id = checkout.server, checkout.rollout_id
    checkout.assert_running()
    dashboard = _dashboard(checkout, browser_page)
    dashboard.open(f"/rollouts/{rollout_id}", server.token(Role.VIEWER, "dashboard"))
    expect(dashboard.status()).to_have_attribute("data-status", "running")
    dialog = dashboard.press("pause-button")
    expect(dashboard.testid("confirm-error")).to_have_text(
        "This needs an operator token; you are signed in with a viewer token."
    )
    expect(dialog).to_be_visible()
    dashboard.testid("cancel").click()
    assert server.rollout(rollout_id)["status"] == "running"


def test_signing_in_by_hand_and_the_list_pages(
    checkout: Checkout, browser_page: BrowserPage
) -> None:
    """Without a token the page asks for one; a wrong one is refused with the server's reason;
    a good one shows the flags, the rollouts and the audit log."""
    checkout.assert_running()
    dashboard = _dashboard(checkout, browser_page)
    dashboard.open("/flags")
    form = dashboard.testid("sign-in")
    expect(form).to_be_visible()
    dashboard.testid("token-input").fill("rw_viewer_wrong")
    dashboard.testid("sign-in-button").click()
    expect(dashboard.testid("sign-in-error")).to_contain_text("unknown, revoked or expired token")
    dashboard.testid("token-input").fill(checkout.server.token(Role.VIEWER, "by-hand"))
    dashboard.testid("sign-in-button").click()
    rows = dashboard.testid("flag-row")
    expect(rows).to_have_count(2)
    checkout_row = rows.filter(has_text="new-checkout")
    expect(checkout_row.get_by_test_id("kill-state")).to_have_attribute("data-killed", "false")
    checkout_row.get_by_test_id("rollout-link").click()
    expect(dashboard.status()).to_have_attribute("data-status", "running")
    dashboard.page.get_by_role("link", name="Audit log", exact=True).click()
    expect(dashboard.testid("audit-row").filter(has_text="rollout.start")).to_have_count(1)
    dashboard.page.get_by_role("link", name="Rollouts", exact=True).click()
    expect(dashboard.testid("rollout-row")).to_have_count(1)


def test_the_kill_switch_kills_the_flag_and_the_rollout_rolls_back(
    checkout: Checkout, browser_page: BrowserPage
) -> None:
    """Kill (confirmed) turns the flag's kill switch on: the page shows it killed, the
    controller rolls the rollout back, and the flags page agrees with the API."""
    server, rollout_id = checkout.server, checkout.rollout_id
    checkout.assert_running()
    dashboard = _dashboard(checkout, browser_page)
    dashboard.open(f"/rollouts/{rollout_id}", server.token(Role.OPERATOR, "on-call"))
    expect(dashboard.status()).to_have_attribute("data-status", "running")
    dashboard.press("kill-button")
    expect(dashboard.testid("kill-state")).to_have_attribute("data-killed", "true")
    # The rollback waits for a controller tick and the page's next refresh: on a busy machine
    # that can take longer than Playwright's default 5 s; what must hold is that it happens.
    expect(dashboard.status()).to_have_attribute("data-status", "rolled_back", timeout=30_000)
    expect(dashboard.testid("decision").first).to_contain_text(
        "the kill switch is on", timeout=30_000
    )
    flags = server.admin.get("/api/v1/flags").json()["flags"]
    assert next(f for f in flags if f["key"] == "new-checkout")["killed"] is True
    dashboard.page.get_by_role("link", name="Flags", exact=True).click()
    row = dashboard.testid("flag-row").filter(has_text="new-checkout")
    expect(row.get_by_test_id("kill-state")).to_have_attribute("data-killed", "true")
    expect(row).to_contain_text("rolled back")
