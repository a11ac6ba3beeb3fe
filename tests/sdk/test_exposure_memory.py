"""The exposure ledger is never silently short: the client remembers exposures only until the
server has them, so more distinct units than its bound are all sent; what is still lost (the
server unreachable for too long, a batch refused) is counted and logged."""

from __future__ import annotations

import logging

import pytest

from rollwise import Context
from rollwise.sdk import Reply
from rollwise.sdk._aggregation import Aggregates
from rollwise.sdk._live import MAX_EXPOSURES
from rollwise.sdk._outbox import Outbox
from rollwise.sdk._snapshot import LiveRollout, parse_snapshot
from rollwise.sdk._throttle import Throttle
from tests.sdk.test_live_client import ACME, FakeServer, document, live_client

NOW = 1_700_000_000.0


def rollout() -> LiveRollout:
    return parse_snapshot(FakeServer().get_snapshot(None).body).rollouts[0]


def expose(sums: Aggregates, served: LiveRollout, *tenants: int) -> None:
    for tenant in tenants:
        values = Context.of({**ACME, "tenant": f"tenant-{tenant}"}).values
        sums.expose(served, served.flag.program.run(values), values)


def cut_tenants(sums: Aggregates) -> list[str]:
    return [key[1] for key, _ in sums.cut().exposures]


def test_exposures_the_server_has_are_forgotten_to_make_room() -> None:
    """With room for 3: once the server has acknowledged 3, 3 new ones are remembered (the
    oldest acknowledged forgotten); a forgotten one is recorded again if seen again."""
    sums = Aggregates(max_exposures=3, clock=lambda: NOW)
    served = rollout()
    expose(sums, served, 1, 2, 3)
    first = sums.cut()
    sums.acknowledged(key for key, _ in first.exposures)
    expose(sums, served, 4, 3, 5)  # 4 and 5 take the places of 1 and 2; 3 is remembered
    assert cut_tenants(sums) == ["tenant-4", "tenant-5"]
    assert sums.exposures_dropped == 0 and sums.remembered_exposures == 3
    expose(sums, served, 1)  # forgotten to make room for 4: harmless to send again
    assert cut_tenants(sums) == ["tenant-1"]


def test_only_exposures_all_waiting_for_the_server_make_a_new_one_drop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While every remembered exposure still waits for the server, a new one is dropped,
    counted, and logged once however many follow."""
    sums = Aggregates(max_exposures=3, clock=lambda: NOW, log=Throttle())
    with caplog.at_level(logging.WARNING, logger="rollwise.sdk"):
        expose(sums, rollout(), 1, 2, 3, 4, 5, 6)
    assert sums.exposures_dropped == 3
    assert [r.getMessage() for r in caplog.records] == [
        "rollwise: 3 exposures are waiting for the server; dropped a new one (1 so far)"
    ]


class Unreachable:
    """A transport whose server never answers a batch; ``status`` makes it answer instead."""

    def __init__(self) -> None:
        self.status: int | None = None

    def post_events(self, body: bytes) -> Reply:
        if self.status is None:
            raise ConnectionRefusedError("down")
        return Reply(self.status, b'{"detail": "no such rollout"}')


def test_exposures_in_a_dropped_batch_are_counted_and_recorded_again() -> None:
    """With one batch allowed to wait, the oldest is dropped for the next: its exposures are
    counted as dropped, and the unit's next exposure is recorded (and sent) again."""
    sums = Aggregates(clock=lambda: NOW)
    transport = Unreachable()
    outbox = Outbox(
        transport,  # type: ignore[arg-type]
        sums,
        sdk="test",
        hashed=False,
        max_pending=1,
        log=Throttle(),
    )
    served = rollout()
    expose(sums, served, 1, 2)
    assert outbox.ship() is False
    expose(sums, served, 3)
    assert outbox.ship() is False  # the batch of 1 and 2 made way for the batch of 3
    assert (outbox.dropped, sums.exposures_dropped) == (1, 2)
    expose(sums, served, 1, 3)  # 3 is still waiting: not again
    assert [key[1] for key, _ in sums.cut().exposures] == ["tenant-1"]


def test_exposures_in_a_refused_batch_are_counted_and_not_sent_again_at_once() -> None:
    """A batch the server refuses for good: its exposures are counted as dropped, and not
    shipped again at the next evaluation (they could have the next batch refused too)."""
    sums = Aggregates(clock=lambda: NOW)
    transport = Unreachable()
    transport.status = 404
    outbox = Outbox(
        transport,  # type: ignore[arg-type]
        sums,
        sdk="test",
        hashed=False,
        max_pending=10,
        log=Throttle(),
    )
    served = rollout()
    expose(sums, served, 1, 2)
    assert outbox.ship() is True
    assert (outbox.rejected, sums.exposures_dropped) == (1, 2)
    expose(sums, served, 1)
    assert not sums.cut().exposures


def test_more_distinct_units_than_the_bound_are_all_sent() -> None:
    """A live client sees 150,000 distinct tenants over three flushes, half again its bound of
    100,000 remembered exposures: every one reaches the server, and none is counted dropped."""
    rounds, per_round = 3, 50_000
    assert rounds * per_round > MAX_EXPOSURES
    server = FakeServer(document())
    with live_client(server, ledger_units="plain") as client:
        for round_number in range(rounds):
            for index in range(per_round):
                tenant = f"t-{round_number}-{index}"
                client.enabled(
                    "new-checkout", {"key": "u", "tenant": tenant, "app_version": "2.5.0"}
                )
            assert client.flush() is True
        stats = client.stats()
    sent = {row["unit"] for row in server.exposures()}
    assert len(sent) == rounds * per_round
    assert stats.exposures_dropped == 0
