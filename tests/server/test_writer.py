"""The batch writer: one transaction for what is queued, an answer only after its commit, a
bounded queue, a bad batch failing alone, and room left for other writers of the database."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa

from rollwise.server._writer import BatchWriter, Busy
from rollwise.store import AggregateRow, EventBatch, NotFoundError, RolloutRecord, Store
from rollwise.store import _schema as t
from tests.store._checkout import FLAGS, NOW, PLAN

WAIT = 10.0  # seconds: only ever reached if the writer is broken


def _batch(name: str, rows: int = 1, rollout: int = 1) -> EventBatch:
    aggregates = tuple(
        AggregateRow(rollout, 0, 100, True, f"tenant=t{i}", "checkout.error", 10, 1)
        for i in range(rows)
    )
    return EventBatch(name, "sdk", NOW, aggregates)


class GatedSink:
    """Records each transaction's batches; holds a transaction open until ``release``."""

    def __init__(self, store: Store | None = None) -> None:
        self.store = store
        self.groups: list[list[str]] = []
        self.entered = threading.Semaphore(0)
        self.gate = threading.Event()

    def ingest_many(self, batches: Sequence[EventBatch]) -> list[bool]:
        self.groups.append([b.id for b in batches])
        self.entered.release()
        self.gate.wait(WAIT)
        if self.store is not None:
            return self.store.ingest_many(batches)
        return [True] * len(batches)


@pytest.fixture
def sink() -> GatedSink:
    return GatedSink()


@pytest.fixture
def writer(sink: GatedSink) -> Iterator[BatchWriter]:
    started = BatchWriter(sink, max_queued_rows=10, min_rest=0.0, rest_ratio=0.0)
    started.start()
    yield started
    sink.gate.set()
    started.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'writer.db'}")
    yield opened
    opened.close()


def _rollout(store: Store) -> RolloutRecord:
    store.apply_flags(FLAGS, "flags.yaml", "alice", NOW)
    plan = store.save_plan(PLAN, "plan.yaml", "alice", NOW).record
    return store.start_rollout(plan.id, "alice", NOW)


def test_batches_queued_during_a_transaction_are_written_together_and_answered_after_it(
    writer: BatchWriter, sink: GatedSink
) -> None:
    """While one transaction runs, three batches queue; none is answered before its own
    transaction ends, and the three share the next one."""
    first = writer.submit(_batch("first-batch"))
    assert sink.entered.acquire(timeout=WAIT)
    queued = [writer.submit(_batch(f"queued-{i}")) for i in range(3)]
    assert not first.done() and not any(f.done() for f in queued)
    sink.gate.set()
    assert first.result(WAIT) is True
    assert [f.result(WAIT) for f in queued] == [True, True, True]
    assert sink.groups == [["first-batch"], ["queued-0", "queued-1", "queued-2"]]
    assert writer.stats.transactions == 2 and writer.stats.largest_group == 3


def test_a_full_queue_answers_503_with_retry_after_and_keeps_nothing(
    writer: BatchWriter, sink: GatedSink
) -> None:
    """Rows being written count until their commit: past the bound a batch is refused at once
    (503, Retry-After); once the writer catches up it is taken again."""
    in_flight = writer.submit(_batch("in-flight", rows=6))
    assert sink.entered.acquire(timeout=WAIT)
    with pytest.raises(Busy) as refused:
        writer.submit(_batch("one-too-many", rows=6))
    assert refused.value.status_code == 503
    assert refused.value.headers == {"Retry-After": "1"}
    assert "rows are waiting to be written" in refused.value.detail["message"]
    sink.gate.set()
    assert in_flight.result(WAIT) is True
    assert writer.submit(_batch("later-batch", rows=6)).result(WAIT) is True
    assert "one-too-many" not in {b for group in sink.groups for b in group}
    assert writer.stats.refused_busy == 1


def test_a_batch_larger_than_the_queue_is_taken_when_nothing_waits(
    writer: BatchWriter, sink: GatedSink
) -> None:
    """The bound never makes a batch impossible to send: alone, any size is taken."""
    sink.gate.set()
    assert writer.submit(_batch("huge-batch", rows=50)).result(WAIT) is True


def test_one_bad_batch_fails_alone_and_the_rest_of_its_group_is_written(store: Store) -> None:
    """A group whose transaction fails is written again batch by batch: the bad batch gets its
    error, the others are applied; a duplicate id inside one group is counted once."""
    rollout = _rollout(store)
    sink = GatedSink(store)
    writer = BatchWriter(sink, min_rest=0.0)
    writer.start()
    try:
        blocker = writer.submit(_batch("blocker", rollout=rollout.id))
        assert sink.entered.acquire(timeout=WAIT)
        good = writer.submit(_batch("good-batch", rollout=rollout.id))
        bad = writer.submit(_batch("bad-batch", rollout=rollout.id + 7))
        again = writer.submit(_batch("good-batch", rollout=rollout.id))
        sink.gate.set()
        assert blocker.result(WAIT) is True
        assert good.result(WAIT) is True and again.result(WAIT) is False
        with pytest.raises(NotFoundError, match="unknown rollout"):
            bad.result(WAIT)
    finally:
        writer.close()
    assert sink.groups[1] == ["good-batch", "bad-batch", "good-batch"]
    assert writer.stats.retried_groups == 1 and writer.stats.failed == 1
    with store.engine.connect() as connection:
        requests = connection.execute(sa.select(sa.func.sum(t.aggregates.c.requests))).scalar()
    assert requests == 20  # blocker and good-batch, once each


def test_write_awaits_the_commit(store: Store) -> None:
    """``await writer.write(batch)`` returns whether it was applied, after its commit."""
    rollout = _rollout(store)
    writer = BatchWriter(store)
    writer.start()

    async def post_twice() -> list[bool]:
        batch = _batch("awaited-batch", rollout=rollout.id)
        return [await writer.write(batch), await writer.write(batch)]

    try:
        assert asyncio.run(post_twice()) == [True, False]
    finally:
        writer.close()


def test_close_writes_what_is_queued_then_refuses(writer: BatchWriter, sink: GatedSink) -> None:
    """At shutdown the queue is written first; afterwards batches are refused (503)."""
    first = writer.submit(_batch("before-close"))
    assert sink.entered.acquire(timeout=WAIT)
    queued = writer.submit(_batch("queued-at-close"))
    closer = threading.Thread(target=writer.close)
    closer.start()
    sink.gate.set()
    closer.join(WAIT)
    assert first.result(WAIT) is True and queued.result(WAIT) is True
    with pytest.raises(Busy, match="503"):
        writer.submit(_batch("after-close"))


def test_kill_switches_are_not_starved_by_a_busy_writer(store: Store) -> None:
    """With the queue kept full of batches, 20 kill-switch changes on the same SQLite file all
    go through (none waits out the busy timeout: 'database is locked')."""
    rollout = _rollout(store)
    writer = BatchWriter(store)
    writer.start()
    stop = threading.Event()
    sent: list[str] = []

    def flood() -> None:
        number = 0
        while not stop.is_set():
            number += 1
            try:
                writer.submit(_batch(f"flood-{number:06d}", rows=40, rollout=rollout.id))
                sent.append(f"flood-{number:06d}")
            except Busy:
                stop.wait(0.001)

    feeder = threading.Thread(target=flood)
    feeder.start()
    try:
        for change in range(20):
            store.set_killed("new-checkout", change % 2 == 0, "alice", NOW)
    finally:
        stop.set()
        feeder.join()
        writer.close()
    assert store.kill_switches() == {"new-checkout": False}
    assert writer.stats.transactions > 0 and len(sent) > 20
