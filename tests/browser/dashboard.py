"""The dashboard as a test drives it: open a page with a token, wait for data, press a button
and confirm. Reusable by any browser test (a demo run, say)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from playwright.sync_api import Locator, Page, expect


class Dashboard:
    """The dashboard of the server at ``url``, in ``page``."""

    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url

    def open(self, route: str, token: str | None = None) -> None:
        """Open ``route`` (``/flags``, ``/rollouts/1``, ``/audit``), signed in with ``token``
        passed in the address the way a printed link would."""
        address = f"{self.url}/dashboard/#{route}"
        if token is not None:
            address += f"?token={quote(token)}"
        self.page.goto(address)

    def testid(self, name: str) -> Locator:
        return self.page.get_by_test_id(name)

    def status(self) -> Locator:
        """The rollout page's status pill (its ``data-status`` is the API's status)."""
        return self.testid("rollout-status")

    def wait_for_charts(self, drawn: int, timeout: float = 20_000) -> None:
        """Until at least ``drawn`` guard charts hold data."""
        charts = self.page.locator('[data-testid="guard-chart"][data-drawn="true"]')
        expect(charts.nth(drawn - 1)).to_be_attached(timeout=timeout)

    def press(self, button: str, reason: str | None = None) -> Locator:
        """Press a button that asks first; fill in the reason; confirm. The dialog."""
        self.testid(button).click()
        dialog = self.testid("confirm-dialog")
        expect(dialog).to_be_visible()
        if reason is not None:
            self.testid("confirm-reason").fill(reason)
        self.testid("confirm").click()
        return dialog

    def screenshot(self, path: Path) -> Path:
        """The whole page, as a person would scroll through it."""
        self.page.screenshot(path=str(path), full_page=True)
        return path
