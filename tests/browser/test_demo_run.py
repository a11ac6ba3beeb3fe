"""The dashboard during a `rollwise demo` run: the rollout page holds drawn charts while the
demo's checkout service sends traffic; an operator pauses it from the page, then pulls the kill
switch, and the demo's own SDK clients stop serving the new checkout."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from rollwise.demo import Demo, DemoOptions
from tests._serving import server_client
from tests.browser.conftest import BrowserPage
from tests.browser.dashboard import Dashboard

DRAWN = re.compile(r"^M[\d.\-]+,[\d.\-]+[LHV]")


class RunningDemo:
    """A demo playing in a background thread, as `rollwise demo` would in a terminal."""

    def __init__(self, demo: Demo) -> None:
        self.demo = demo
        self.report: dict[str, Any] | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.api = server_client(demo.url, demo.viewer_token)

    def _run(self) -> None:
        self.report = self.demo.run()

    def rollout(self) -> dict[str, Any]:
        return dict(self.api.get(f"/api/v1/rollouts/{self.demo.rollout_id}").json())

    def wait_for(self, what: str, ready: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise AssertionError(f"the demo did not reach {what} in {timeout:.0f}s")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def running() -> Iterator[RunningDemo]:
    options = DemoOptions(pace=0.25, seed=3, start=datetime(2026, 11, 26, 20, 0, tzinfo=UTC))
    with Demo(options) as demo:
        run = RunningDemo(demo)
        run.thread.start()
        yield run
        demo.stop()
        run.thread.join(timeout=30)
        run.api.close()


def test_the_rollout_page_during_a_demo_run(
    running: RunningDemo, browser_page: BrowserPage, artifacts: Path
) -> None:
    """After a few simulated hours of the demo's traffic, every guard chart holds drawn lines,
    the stage strip shows where the rollout is, and the decision log has entries."""
    # Lines need at least two windows (of the plan's stratum) of traffic.
    running.wait_for(
        "two windows",
        lambda: (
            len(
                running.api.get(f"/api/v1/rollouts/{running.demo.rollout_id}/series").json()[
                    "exposure"
                ]["windows"]
            )
            >= 3
        ),
    )
    dashboard = Dashboard(browser_page.page, running.demo.url)
    dashboard.open(f"/rollouts/{running.demo.rollout_id}", running.demo.operator_token)
    dashboard.wait_for_charts(4)
    expect(dashboard.status()).to_have_attribute("data-status", "running")
    stages = dashboard.testid("stage")
    expect(stages).to_have_count(5)
    current = running.rollout()["stage"]
    expect(stages.nth(current)).to_have_attribute("data-state", "current")
    for chart in dashboard.testid("guard-chart").all():
        paths = chart.locator("path.line").evaluate_all("ps => ps.map(p => p.getAttribute('d'))")
        assert any(DRAWN.match(d or "") for d in paths), paths
    expect(dashboard.testid("decision").first).to_be_visible()
    shot = dashboard.screenshot(artifacts / "demo-rollout-page.png")
    assert shot.stat().st_size > 50_000


def test_pause_then_kill_from_the_page_reaches_the_demo_service(
    running: RunningDemo, browser_page: BrowserPage
) -> None:
    """Pause (confirmed) pauses the demo's rollout; the kill switch (confirmed) turns the flag
    off: the page shows it, and the demo's SDK clients stop serving the new checkout."""
    demo = running.demo
    dashboard = Dashboard(browser_page.page, demo.url)
    dashboard.open(f"/rollouts/{demo.rollout_id}", demo.operator_token)
    expect(dashboard.status()).to_have_attribute("data-status", "running")
    dashboard.press("pause-button", reason="looking at the pilot before the night")
    expect(dashboard.status()).to_have_attribute("data-status", "paused")
    assert running.rollout()["status"] == "paused"

    dashboard.press("kill-button")
    expect(dashboard.testid("kill-state")).to_have_attribute("data-killed", "true")
    service = demo.service
    assert service is not None
    # The kill switch reaches the SDKs through the stream within a second of wall time.
    time.sleep(1.5)
    before = service.snapshot()
    time.sleep(1.0)
    after = service.snapshot()
    assert after.requests > before.requests, "the demo's service stopped serving checkouts"
    assert after.exposed == before.exposed, "the demo's service still served the new checkout"
    flags = running.api.get("/api/v1/flags").json()["flags"]
    assert next(f for f in flags if f["key"] == "new-checkout")["killed"] is True
