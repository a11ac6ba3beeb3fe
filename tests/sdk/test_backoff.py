"""A client whose batches fail backs off: each failure in a row doubles the wait before the next
flush (up to a minute), a server's Retry-After is honoured, and one success brings the interval
back (issue 12: 5xx and network errors retried with backoff and jitter)."""

from __future__ import annotations

import json
import random
import time

from rollwise.sdk._aggregation import Aggregates
from rollwise.sdk._outbox import MAX_BACKOFF, Batch, FlushSchedule, Outbox
from rollwise.sdk._throttle import Throttle
from rollwise.sdk._transport import Reply
from tests.sdk.test_live_client import ACME, FakeServer, live_client


def test_each_failure_in_a_row_doubles_the_wait_up_to_a_minute() -> None:
    """A 5 s schedule: 10 s after one failure, 20 s after two, 40 s after three, then 60 s,
    each ± 20 %; an interval longer than the cap is never shortened."""
    schedule = FlushSchedule(5.0, rng=random.Random(1))
    for failures, base in ((0, 5.0), (1, 10.0), (2, 20.0), (3, 40.0), (4, 60.0), (50, 60.0)):
        waits = [schedule.next_wait(failures) for _ in range(200)]
        assert all(0.8 * base <= wait <= 1.2 * base for wait in waits), (failures, base)
        assert max(waits) - min(waits) > 0.2 * base  # still jittered
    assert MAX_BACKOFF == 60.0
    slow = FlushSchedule(120.0, rng=random.Random(2))
    assert all(96.0 <= slow.next_wait(3) <= 144.0 for _ in range(50))


def test_a_retry_after_is_a_floor_jittered_upwards() -> None:
    schedule = FlushSchedule(5.0, rng=random.Random(3))
    waits = [schedule.next_wait(1, retry_after=30.0) for _ in range(200)]
    assert all(30.0 <= wait <= 36.0 for wait in waits)
    assert max(waits) - min(waits) > 3.0
    # A Retry-After shorter than the backoff changes nothing.
    assert all(8.0 <= schedule.next_wait(1, retry_after=1.0) <= 12.0 for _ in range(50))


class _Answers:
    """A transport answering each batch from a list: a Reply, or an exception to raise."""

    def __init__(self, *answers: Reply | Exception) -> None:
        self.answers = list(answers)
        self.posted = 0

    def get_snapshot(self, etag: str | None) -> Reply:
        raise AssertionError("not asked")

    def stream(self) -> object:
        raise AssertionError("not asked")

    def post_events(self, body: bytes) -> Reply:
        self.posted += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        pass


def _busy(seconds: int) -> Reply:
    body = {"error": "overloaded", "message": "busy", "details": {"retry_after_s": seconds}}
    return Reply(503, json.dumps(body).encode())


def test_the_outbox_counts_failures_in_a_row_and_reads_the_servers_retry_after() -> None:
    transport = _Answers(
        _busy(7),
        ConnectionRefusedError("down"),
        Reply(500, b"{}"),
        Reply(422, b'{"message": "bad"}'),  # refused for good: dropped, not a failure
        Reply(202, b'{"applied": true}'),
    )
    aggregates = Aggregates(clock=time.time)
    outbox = Outbox(
        transport,  # type: ignore[arg-type]
        aggregates,
        sdk="test",
        hashed=True,
        max_pending=10,
        log=Throttle(),
    )
    outbox._pending.extend(Batch(f"batch-{index}", b"{}") for index in range(2))
    assert not outbox.ship()
    assert (outbox.failures, outbox.retry_after) == (1, 7.0)
    assert not outbox.ship()
    assert (outbox.failures, outbox.retry_after) == (2, None)
    assert not outbox.ship()
    assert (outbox.failures, outbox.retry_after) == (3, None)
    assert outbox.ship()  # the 422 drops the first batch, the 202 takes the second
    assert (outbox.failures, outbox.retry_after, outbox.rejected, outbox.sent) == (0, None, 1, 1)
    assert transport.posted == 5


def test_a_live_client_facing_a_failing_server_backs_off() -> None:
    """Flush interval 50 ms, every batch answered 503: over 1.5 s the client posts a handful
    of times (50, 100, 200, 400, 800 ms apart), not thirty. A loaded machine only makes it
    fewer."""
    server = FakeServer()
    server.events_status = 503
    client = live_client(server, flush_interval=0.05)
    try:
        client.record("checkout.error", ACME, failed=True)
        time.sleep(1.5)
        attempts = len(server.attempts)
    finally:
        client.close()
    assert attempts >= 1  # it did try
    assert attempts <= 8, attempts  # without the backoff: about 30
