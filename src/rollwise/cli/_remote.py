"""Talking to a rollwise server: --url and --token (or ROLLWISE_URL, ROLLWISE_TOKEN)."""

from __future__ import annotations

import argparse
import os
from typing import Any

import httpx

from rollwise.core import RollwiseError

DEFAULT_URL = "http://127.0.0.1:8000"


class RemoteError(RollwiseError):
    """The server refused a request, or could not be reached."""


def add_connection(parser: argparse.ArgumentParser, *, json_output: bool = True) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("ROLLWISE_URL", DEFAULT_URL),
        help="server URL (ROLLWISE_URL)",
    )
    parser.add_argument(
        "--token", default=os.environ.get("ROLLWISE_TOKEN"), help="API token (ROLLWISE_TOKEN)"
    )
    if json_output:
        parser.add_argument("--json", action="store_true", help="print the server's data as JSON")


class Remote:
    def __init__(self, args: argparse.Namespace) -> None:
        if not args.token:
            raise RemoteError("no token: pass --token or set ROLLWISE_TOKEN")
        self.url = args.url.rstrip("/")
        self.client = httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {args.token}"}, timeout=10.0
        )

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach {self.url}: {exc}") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            if isinstance(detail, dict):
                detail = detail.get("error") or detail.get("message") or detail
            raise RemoteError(f"{method} {path}: {response.status_code} {detail}")
        return response.json() if response.content else None

    def rollout_of(self, flag: str) -> dict[str, Any]:
        """The latest rollout of a flag, in full."""
        flags = self.call("GET", "/api/v1/flags")["flags"]
        for entry in flags:
            if entry["key"] == flag:
                if entry["rollout"] is None:
                    raise RemoteError(f"flag {flag!r} has no rollout")
                return self.call("GET", f"/api/v1/rollouts/{entry['rollout']['id']}")  # type: ignore[no-any-return]
        known = ", ".join(e["key"] for e in flags) or "none"
        raise RemoteError(f"unknown flag {flag!r}; flags: {known}")
