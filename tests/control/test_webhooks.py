"""Webhooks: every applied decision reaches each URL, retried through failures."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

from rollwise.control import Webhooks
from rollwise.core.judgement import Decision, Move, RolloutStatus
from rollwise.store import RolloutRecord

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
ROLLOUT = RolloutRecord(7, "new-checkout", 1, RolloutStatus.ROLLED_BACK, 1, NOW, NOW, NOW, 3)
DECISION = Decision(Move.ROLLBACK, 1, NOW, ("checkout.error is worse than tolerated",))


def test_a_notification_is_retried_until_delivered() -> None:
    """The receiver fails twice (500), then accepts: it gets the JSON once accepted."""
    received: list[dict[str, object]] = []
    failures = [500, 500]

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = failures.pop(0) if failures else 200
            if status == 200:
                received.append(json.loads(body))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        hooks = Webhooks([f"http://127.0.0.1:{server.server_port}/hook"], backoff=0.01)
        hooks(ROLLOUT, DECISION)
        hooks.close()
    finally:
        server.shutdown()
        server.server_close()
    (payload,) = received
    assert payload["event"] == "rollout.rollback"
    assert payload["flag"] == "new-checkout" and payload["rollout"] == 7
    assert payload["reasons"] == ["checkout.error is worse than tolerated"]


def test_an_unreachable_url_gives_up_without_raising() -> None:
    """A receiver that never answers costs the set number of attempts, then a log line."""
    calls: list[str] = []

    def refuse(url: str, body: bytes) -> int:
        calls.append(url)
        raise ConnectionError("refused")

    hooks = Webhooks(["http://hook.invalid/a"], attempts=3, backoff=0.001, post=refuse)
    hooks(ROLLOUT, DECISION)
    hooks.close()
    assert calls == ["http://hook.invalid/a"] * 3
