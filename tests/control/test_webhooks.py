"""Webhooks: every applied decision reaches each URL at least once — written with the decision,
delivered from the outbox, retried through failures, across a restart, one URL never waiting on
another."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from rollwise.control import Controller, ManualClock, Webhooks
from rollwise.core import RolloutAction
from rollwise.core.judgement import Decision, Move, RolloutStatus
from rollwise.store import RolloutRecord, Store

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (ROOT / "examples/checkout/flags.yaml").read_text()
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
PLAN = """
flag: new-checkout
unit: tenant
guards: [{metric: checkout.error, kind: rate, tolerance: 50%}]
stages:
  - {name: canary, audience: {percent: 5}}
  - {name: all, audience: {percent: 100}}
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'hooks.db'}")
    opened.apply_flags(FLAGS, "flags.yaml", "alice", NOW)
    yield opened
    opened.close()


def _decide(store: Store, hooks: Webhooks) -> RolloutRecord:
    """A rollback written with its notifications, as the controller writes it."""
    rollout = store.start_rollout(None, "alice", NOW, text=PLAN)
    decision = Decision(Move.ROLLBACK, 0, NOW, ("checkout.error is worse than tolerated",))
    after = store.transition(
        rollout,
        action=RolloutAction.ROLLBACK,
        actor="controller",
        now=NOW,
        decision=decision,
        notify=hooks.bodies(replace(rollout, status=RolloutStatus.ROLLED_BACK), decision),
    )
    hooks(after, decision)
    return after


def _until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_notification_is_retried_until_delivered(store: Store) -> None:
    """A real receiver fails twice (500), then accepts: it gets the JSON, once."""
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
    hooks = Webhooks(store, [f"http://127.0.0.1:{server.server_port}/hook"], backoff=0.01)
    try:
        _decide(store, hooks)
        _until(lambda: bool(received))
    finally:
        hooks.close()
        server.shutdown()
        server.server_close()
    (payload,) = received
    assert payload["event"] == "rollout.rollback"
    assert payload["flag"] == "new-checkout" and payload["status"] == "rolled_back"
    assert payload["reasons"] == ["checkout.error is worse than tolerated"]
    (row,) = store.notifications()
    assert row["attempts"] == 2 and row["delivered_at"] is not None


def test_a_4xx_is_not_retried_and_an_unreachable_url_gives_up_without_raising(
    store: Store,
) -> None:
    calls: dict[str, int] = {"bad": 0, "down": 0}

    def post(url: str, body: bytes) -> int:
        name = url.rsplit("/", 1)[-1]
        calls[name] += 1
        if name == "bad":
            return 400
        raise ConnectionError("refused")

    hooks = Webhooks(store, ["http://h/bad", "http://h/down"], attempts=3, backoff=0.001, post=post)
    try:
        _decide(store, hooks)
        _until(lambda: all(row["given_up_at"] is not None for row in store.notifications()))
    finally:
        hooks.close()
    assert calls == {"bad": 1, "down": 3}
    errors = {row["url"]: row["last_error"] for row in store.notifications()}
    assert errors == {"http://h/bad": "HTTP 400", "http://h/down": "ConnectionError: refused"}


def test_one_slow_url_never_delays_another(store: Store) -> None:
    """The first URL hangs until released; the second is delivered meanwhile."""
    release = threading.Event()
    delivered: list[str] = []

    def post(url: str, body: bytes) -> int:
        if url.endswith("slow"):
            release.wait(30)
        delivered.append(url)
        return 200

    hooks = Webhooks(store, ["http://h/slow", "http://h/fast"], post=post)
    try:
        _decide(store, hooks)
        _until(lambda: "http://h/fast" in delivered)
        assert "http://h/slow" not in delivered
        release.set()
        _until(lambda: "http://h/slow" in delivered)
    finally:
        release.set()
        hooks.close()


def test_what_was_not_delivered_before_a_restart_is_delivered_after(
    store: Store, tmp_path: Path
) -> None:
    """The notification is in the outbox from the decision's own transaction: a deliverer that
    never ran (the process died) loses nothing; the next one delivers it."""
    delivered: list[bytes] = []
    dead = Webhooks(store, ["http://h/hook"], post=lambda url, body: 503, attempts=100)
    dead.close()  # the process "dies" before any delivery succeeded
    rollout = _decide(store, dead)
    assert [row["delivered_at"] for row in store.notifications()] == [None]
    reopened = Store.open(f"sqlite:///{tmp_path / 'hooks.db'}")
    fresh = Webhooks(
        reopened, ["http://h/hook"], post=lambda url, body: delivered.append(body) or 200
    )
    try:
        _until(lambda: bool(delivered))
    finally:
        fresh.close()
        reopened.close()
    assert json.loads(delivered[0])["rollout"] == rollout.id


def test_the_controller_writes_the_notification_with_its_decision(store: Store) -> None:
    """A kill makes the controller roll back: its notification is in the outbox, naming the
    status after the change."""
    clock = ManualClock(NOW)
    posted: list[dict[str, object]] = []
    hooks = Webhooks(
        store, ["http://h/hook"], post=lambda url, body: posted.append(json.loads(body)) or 200
    )
    try:
        store.start_rollout(None, "alice", NOW, text=PLAN)
        store.set_killed("new-checkout", True, "bob", NOW)
        clock.advance(timedelta(seconds=1))
        (outcome,) = Controller(store, [hooks], hooks.bodies).tick(clock.now())
        assert outcome.applied and outcome.decision.move is Move.ROLLBACK
        _until(lambda: bool(posted))
    finally:
        hooks.close()
    assert posted[0]["status"] == "rolled_back" and posted[0]["event"] == "rollout.rollback"
