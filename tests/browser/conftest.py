"""Browser tests: Playwright drives Debian's chromium (never a downloaded browser) against a
real server with the checkout rollout running and SDK traffic flowing.

Fixtures for any browser test: ``browser`` (one chromium per session), ``browser_page`` (a
fresh page, 1280 px wide, that fails the test on a script error or a refused resource),
``artifacts`` (where screenshots go: ``ROLLWISE_ARTIFACTS`` or tests/browser/artifacts) and
``checkout`` (a live server running the example plan, with traffic; one per module).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.live import EXAMPLES, CheckoutTraffic, LiveServer

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page

CHROMIUM = shutil.which("chromium")
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 900}
#: Console messages that are not faults of the page: a refused API call (a viewer pressing
#: pause) is logged by the browser as a failed resource and shown by the page as it should be.
EXPECTED_CONSOLE = ("Failed to load resource",)


@pytest.fixture(
    scope="package"
)  # Playwright keeps an event loop on the main thread: close it after these tests
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        pytest.skip(
            "browser tests need Debian's chromium on the PATH: run `make chromium` "
            "(Playwright never downloads a browser here)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield launched
        launched.close()


@dataclass
class BrowserPage:
    """A page and what went wrong in it: uncaught script errors and console errors."""

    page: Page
    errors: list[str] = field(default_factory=list)

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith(EXPECTED_CONSOLE):
            self.errors.append(f"console: {message.text}")


#: How long an expectation waits for the page. The rollout page draws from ``/series``, which
#: shares a process with 2,000 checkouts a second and the controller; when it read the rollout
#: whole at every poll (before 2026-12-02: 0.4 to 0.7 s on a quiet machine, growing with the
#: data), two test runs and two busy loops on two cores made it miss Playwright's 5 s.
EXPECT_TIMEOUT_MS = 20_000


@pytest.fixture
def browser_page(browser: Browser) -> Iterator[BrowserPage]:
    """A fresh page (its own session storage), 1280 px wide. The test fails if a script
    throws or the page logs an error (a Content-Security-Policy refusal, say)."""
    context = browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
    page = context.new_page()
    page.set_default_timeout(10_000)
    from playwright.sync_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    watched = BrowserPage(page)
    page.on("console", watched.on_console)
    page.on("pageerror", lambda error: watched.errors.append(f"script: {error}"))
    yield watched
    context.close()
    assert not watched.errors, watched.errors


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots are written (kept out of git by a .gitignore inside)."""
    folder = Path(os.environ.get("ROLLWISE_ARTIFACTS") or Path(__file__).parent / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class Checkout:
    """The checkout rollout on a live server, with traffic flowing."""

    server: LiveServer
    rollout_id: int
    traffic: CheckoutTraffic

    def assert_running(self) -> None:
        """The rollout is running, or the test fails with the controller's latest reasons
        (a test that needs a running rollout says why it is not, not just that it is not)."""
        status = self.server.rollout(self.rollout_id)["status"]
        if status != "running":
            path = f"/api/v1/rollouts/{self.rollout_id}/decisions"
            latest = self.server.admin.get(path, params={"limit": 1}).json()
            raise AssertionError(f"the checkout rollout is {status}, not running: {latest}")


#: The example plan pauses for a person after 3 simulated days in one stage
#: (``max_stage_duration``): 216 s of real time at 1200×, which the tests of a module can
#: take on a slow, busy machine while the rollout waits for the pilot's approval. Here the
#: limit is 30 days (36 minutes), so what the tests see is what they do.
EXAMPLE_PLAN = (EXAMPLES / "plan.yaml").read_text()
LIVE_PLAN = EXAMPLE_PLAN.replace("max_stage_duration: 3d ", "max_stage_duration: 30d")
assert LIVE_PLAN != EXAMPLE_PLAN, "the example plan no longer says max_stage_duration: 3d"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory, browser: Browser) -> Iterator[Checkout]:
    """The example flags and plan on a live server at 1200× real time (an hour in 3 s), from
    20:00 simulated, with 2,000 checkout requests a second; the internal team is 15 % of them.
    (It asks for the browser first, so that without chromium nothing is started.)"""
    database = tmp_path_factory.mktemp("browser") / "rollwise.db"
    start = datetime(2026, 1, 5, 20, 0, tzinfo=UTC)
    with LiveServer(database, start=start, speed=1200.0) as server:
        rollout_id = server.start_checkout(LIVE_PLAN)
        with CheckoutTraffic(server, per_second=2000.0, internal_share=0.15) as traffic:
            yield Checkout(server, rollout_id, traffic)
