"""docs/dashboard.png and docs/demo-report.txt: the rollout page and the report after
`rollwise demo` rolled the new checkout back. Written only with
ROLLWISE_WRITE_DOCS_SCREENSHOT=1: it plays the whole demo, about a minute."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from rollwise.demo import DEFECT_TENANT, Demo, DemoOptions, render
from tests.browser.conftest import BrowserPage
from tests.browser.dashboard import Dashboard

ROOT = Path(__file__).resolve().parents[2]
DOCS_SCREENSHOT = ROOT / "docs" / "dashboard.png"
DOCS_REPORT = ROOT / "docs" / "demo-report.txt"

pytestmark = pytest.mark.skipif(
    os.environ.get("ROLLWISE_WRITE_DOCS_SCREENSHOT") != "1",
    reason="writes docs/dashboard.png: set ROLLWISE_WRITE_DOCS_SCREENSHOT=1",
)


def test_write_the_docs_screenshot(browser_page: BrowserPage) -> None:
    """The demo as `make demo` plays it: rolled back on the defect tenant, which tops the
    segment table; the top of the rollout page is captured at 1280 px, the report as text."""
    with Demo(DemoOptions()) as demo:
        report = demo.run()
        assert report["outcome"] == "rolled_back", report["outcome"]
        dashboard = Dashboard(browser_page.page, demo.url)
        dashboard.open(f"/rollouts/{demo.rollout_id}", demo.viewer_token)
        dashboard.wait_for_charts(4)
        expect(dashboard.testid("segment-row").first).to_have_attribute(
            "data-segment", f"tenant={DEFECT_TENANT}"
        )
        browser_page.page.screenshot(
            path=str(DOCS_SCREENSHOT),
            full_page=True,
            clip={"x": 0, "y": 0, "width": 1280, "height": 2000},
        )
        DOCS_REPORT.write_text(render(report) + "\n")
    assert DOCS_SCREENSHOT.stat().st_size > 100_000
