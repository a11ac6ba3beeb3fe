"""Talking to a rollwise server: --url and --token (or ROLLWISE_URL, ROLLWISE_TOKEN).

Every way a request can fail — no server at the URL, a refused token, a refused request — is a
``RemoteError`` whose text is one line, followed by the server's conflicts and findings one per
line."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

import httpx

from rollwise.core import RollwiseError

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT_SECONDS = 10.0


def _network() -> httpx.BaseTransport | None:
    return None


#: Where requests go; ``None`` is the network. Tests set a factory of ``httpx.MockTransport``
#: here to stand in for a server.
make_transport: Callable[[], httpx.BaseTransport | None] = _network


class RemoteError(RollwiseError):
    """The server refused a request, or could not be reached.

    ``status`` is the HTTP status (None when there was no answer), ``code`` the server's error
    code, ``lines`` the conflicts and findings it listed, ``body`` its answer as sent."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        lines: list[str] | None = None,
        body: Any = None,
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.lines = lines or []
        self.body = body
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join([self.message, *(f"  {line}" for line in self.lines)])


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


def _finding(item: object) -> str:
    """A lint finding as ``error RW001 guards: the plan has no guard``."""
    if not isinstance(item, dict):
        return str(item)
    head = " ".join(str(item[k]) for k in ("severity", "code") if item.get(k))
    where = f" {item['path']}" if item.get("path") else ""
    return f"{head}{where}: {item.get('message', '')}".strip()


def _validation(items: list[Any]) -> str:
    """FastAPI's validation errors (``loc``/``msg``) or the event batch's (``path``/``message``)."""
    shown = []
    for item in items:
        if isinstance(item, dict):
            where = item.get("path") or ".".join(str(p) for p in item.get("loc", ()))
            shown.append(f"{where}: {item.get('message') or item.get('msg') or item}")
        else:
            shown.append(str(item))
    return "; ".join(shown)


def read_error(body: Any, text: str) -> tuple[str, str | None, list[str]]:
    """(message, code, detail lines) from an error body.

    The one schema is ``{"error": code, "message": text, "details": {...}}``; older servers
    sent ``{"detail": text}``, ``{"detail": {"error", "message", …}}`` or a validation list.
    """
    if not isinstance(body, dict):  # a proxy's error page, say: its text, on one line
        line = " ".join(text.split())
        return (line[:200] + "…" if len(line) > 200 else line) or "no explanation given", None, []
    details: Any = body.get("details")
    code = body.get("error") if isinstance(body.get("error"), str) else None
    message = body.get("message")
    if not isinstance(message, str):
        detail = body.get("detail", text)
        if isinstance(detail, dict):
            message = str(detail.get("error") or detail.get("message") or detail)
            details = details or detail
        elif isinstance(detail, list):
            message = _validation(detail)
        else:
            message = str(detail)
    lines: list[str] = []
    if isinstance(details, dict):
        lines.extend(str(c) for c in details.get("conflicts") or [])
        lines.extend(_finding(f) for f in details.get("findings") or [])
        errors = details.get("errors")
        if isinstance(errors, list) and len(errors) > 1:  # the message names the first
            lines.extend(_validation([error]) for error in errors)
    return message, code, lines


class Remote:
    def __init__(self, args: argparse.Namespace) -> None:
        token = (args.token or "").strip()
        if not token:
            raise RemoteError("no token: pass --token or set ROLLWISE_TOKEN")
        if not token.isascii() or not token.isprintable():
            raise RemoteError("the token has characters no token has: check --token")
        self.url = str(args.url).rstrip("/")
        try:
            parsed = httpx.URL(self.url)
        except httpx.InvalidURL:
            parsed = None
        if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
            raise RemoteError(f"--url must look like http://HOST:PORT, got {args.url!r}")
        self.client = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT_SECONDS,
            transport=make_transport(),
        )

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The server's JSON answer.

        Raises:
            RemoteError: no answer, a refusal (status 400 or more), or an answer not JSON.
        """
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise RemoteError(
                f"no answer from {self.url} within {TIMEOUT_SECONDS:g}s ({method} {path})"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            reason = str(exc).strip() or type(exc).__name__
            raise RemoteError(f"cannot reach {self.url}: {reason}") from None
        if response.status_code >= 400:
            raise self._refusal(method, path, response)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise RemoteError(
                f"{self.url} answered {method} {path} with something that is not JSON: "
                "is it a rollwise server?"
            ) from None

    def _refusal(self, method: str, path: str, response: httpx.Response) -> RemoteError:
        try:
            body: Any = response.json()
        except ValueError:
            body = None
        message, code, lines = read_error(body, response.text)
        status = response.status_code
        if status == 401:
            message = f"{self.url} refused the token ({message}): check --token or ROLLWISE_TOKEN"
        else:
            message = f"{method} {path}: {status} {message}"
        return RemoteError(message, status=status, code=code, lines=lines, body=body)

    def flags(self) -> list[dict[str, Any]]:
        """Every flag, as ``GET /api/v1/flags`` lists them."""
        return list(self.call("GET", "/api/v1/flags")["flags"])

    def rollout_of(self, flag: str) -> dict[str, Any]:
        """The latest rollout of a flag, in full."""
        flags = self.flags()
        for entry in flags:
            if entry["key"] == flag:
                if entry["rollout"] is None:
                    raise RemoteError(f"flag {flag!r} has no rollout")
                return self.call("GET", f"/api/v1/rollouts/{entry['rollout']['id']}")  # type: ignore[no-any-return]
        raise unknown_flag(flag, flags)


def unknown_flag(flag: str, flags: list[dict[str, Any]]) -> RemoteError:
    known = ", ".join(e["key"] for e in flags) or "none"
    return RemoteError(f"unknown flag {flag!r}; flags: {known}", status=404)
