"""close() at shutdown: prompt when nothing is pending, a last flush first when something is,
and never longer than its timeout. Against a real server on loopback, whose stream only speaks
every 15 seconds: a close that waited for the stream's next read would take that long."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollwise import Client
from rollwise.sdk import Reply
from rollwise.store import Role
from tests._serving import server_client
from tests.e2e.test_sdk_rollout import ADMIN, PLAN, ROOT, LiveServer
from tests.sdk.test_live_client import ACME, FakeServer, live_client, wait_until

#: Far longer than any close should take: the old close waited up to this for the stream.
TIMEOUT = 30.0
#: What "at once" is allowed on a busy machine (a close takes milliseconds on a quiet one).
PROMPT = 2.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[LiveServer, str]]:
    """A real server with the example flags (bucketed by user) and a rollout running on
    new-checkout; yields it and an SDK key."""
    with LiveServer(tmp_path) as live:
        with server_client(live.url, ADMIN) as admin:
            flags = (ROOT / "examples/checkout/flags.yaml").read_text()
            admin.put("/api/v1/flags", content=flags.replace("    unit: tenant", "    unit: user"))
            plan = admin.post("/api/v1/plans", content=PLAN.encode()).json()["id"]
            admin.post("/api/v1/rollouts", json={"plan_id": plan}).raise_for_status()
            key = admin.post("/api/v1/tokens", json={"name": "app", "role": Role.SDK.value})
        yield live, key.json()["secret"]


def own_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("rollwise-") and t not in before]


def test_closing_a_connected_client_with_nothing_pending_is_prompt(
    server: tuple[LiveServer, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Stream connected and past its first event, nothing recorded: close(timeout=30) returns
    at once (not at the stream's next keep-alive), stops both threads and logs nothing."""
    live, key = server
    before = set(threading.enumerate())
    client = Client(live.url, key, flush_interval=60.0)
    wait_until(lambda: client.stats().stream_connected, timeout=10.0)
    time.sleep(0.3)  # the stream is now waiting for the server's next word
    with caplog.at_level(logging.WARNING, logger="rollwise.sdk"):
        started = time.monotonic()
        client.close(timeout=TIMEOUT)
        elapsed = time.monotonic() - started
    assert elapsed < PROMPT, f"close took {elapsed:.2f} s"
    assert not own_threads(before)
    assert not caplog.records
    assert client.stats().stream_connected is False


def test_close_sends_what_is_pending_first_and_is_still_prompt(
    server: tuple[LiveServer, str],
) -> None:
    """Exposures and outcomes recorded under the running rollout are sent by close(), which
    returns as soon as the server has taken them."""
    live, key = server
    client = Client(live.url, key, flush_interval=60.0, clock=live.simulated_time)
    wait_until(lambda: client.stats().stream_connected, timeout=10.0)
    for index in range(50):
        context = {**ACME, "key": f"user-{index}"}
        client.enabled("new-checkout", context)
        client.record("checkout.error", context, failed=index % 7 == 0)
    started = time.monotonic()
    client.close(timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    stats = client.stats()
    assert (stats.batches_sent, stats.pending_batches) == (1, 0)
    assert elapsed < PROMPT, f"close took {elapsed:.2f} s"


class SlowServer(FakeServer):
    """Takes batches, but each POST takes far longer than a close may wait."""

    def __init__(self) -> None:
        super().__init__()
        self.posting = threading.Event()
        self.release = threading.Event()

    def post_events(self, body: bytes) -> Reply:
        self.posting.set()
        self.release.wait(10.0)
        return super().post_events(body)


def test_close_with_a_batch_the_server_is_slow_to_take_waits_at_most_its_timeout() -> None:
    """The last flush is attempted, and close() gives up on it when its timeout is over."""
    server = SlowServer()
    client = live_client(server)
    try:
        client.record("checkout.error", ACME, failed=True)
        started = time.monotonic()
        client.close(timeout=0.5)
        elapsed = time.monotonic() - started
        assert server.posting.is_set(), "the pending batch was being sent"
        assert 0.4 < elapsed < 0.5 + PROMPT, f"close took {elapsed:.2f} s"
    finally:
        server.release.set()
    wait_until(lambda: bool(server.applied))
