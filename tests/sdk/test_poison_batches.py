"""The poison batches of issue 11, sent as the SDK sends them (its HTTP transport, JSON written
by ``json.dumps``): each is refused with a 4xx that says why and stores nothing; the next good
batch is taken and the rollout goes on being judged."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from rollwise.control import ManualClock
from rollwise.core import RolloutAction
from rollwise.core.judgement import LATENCY_BUCKETS
from rollwise.sdk._http import HttpTransport
from rollwise.server import create_app
from rollwise.store import LATE_BATCH_GRACE, Store
from rollwise.store import _schema as t
from rollwise.store._merging import histogram_counts

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (ROOT / "examples/checkout/flags.yaml").read_text()
ADMIN = "rw_admin_poison-secret"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PLAN = """
flag: new-checkout
unit: tenant
max_stage_duration: 2d
guards:
  - {metric: checkout.error, kind: rate, tolerance: 50%, by: [tenant]}
  - {metric: checkout.latency, kind: latency, quantile: 0.95, tolerance: 50ms}
stages:
  - {name: canary, audience: {percent: 5}, bake: 10m}
  - {name: half, audience: {percent: 50}, bake: 10m}
  - {name: all, audience: {percent: 100}, holdback: 2%}
"""


class Server:
    """A server on a fresh SQLite file with a running rollout, and an SDK transport to it."""

    def __init__(self, client: TestClient, store: Store, clock: ManualClock) -> None:
        self.client, self.store, self.clock = client, store, clock
        client.put("/api/v1/flags", content=FLAGS).raise_for_status()
        plan = client.post("/api/v1/plans", content=PLAN)
        plan.raise_for_status()
        started = client.post("/api/v1/rollouts", json={"plan_id": plan.json()["id"]})
        started.raise_for_status()
        self.rollout = int(started.json()["id"])
        key = client.post("/api/v1/tokens", json={"name": "app", "role": "sdk"})
        key.raise_for_status()
        self.sdk = HttpTransport(str(client.base_url), key.json()["secret"], http=client)

    def batch(self, **changes: Any) -> dict[str, Any]:
        """A good batch as the SDK writes it, with ``changes`` to its latency aggregate
        (``gauge`` replaces the gauge reading's value)."""
        now = self.clock.now()
        latency = {
            "rollout": self.rollout,
            "stage": 0,
            "window": int(now.timestamp() // 60),
            "exposed": True,
            "segment": "",
            "metric": "checkout.latency",
            "requests": 10,
            "events": 0,
            "histogram": [1] * 10 + [0] * (LATENCY_BUCKETS - 10),
        }
        gauge = {"metric": "payments.queue_depth", "value": 12.5, "at": now.isoformat()}
        if "gauge" in changes:
            gauge["value"] = changes.pop("gauge")
        latency.update(changes)
        errors = {**latency, "metric": "checkout.error", "events": 1}
        del errors["histogram"]
        return {
            "batch": str(uuid.uuid4()),
            "sdk": "rollwise-python/test",
            "aggregates": [errors, latency],
            "exposures": [
                {
                    "rollout": self.rollout,
                    "unit": "acme",
                    "stage": latency["stage"],
                    "exposed": True,
                    "at": now.isoformat(),
                }
            ],
            "gauges": [gauge],
        }

    def stored(self) -> tuple[Any, ...]:
        with self.store.engine.connect() as connection:
            batches = connection.execute(sa.select(sa.func.count()).select_from(t.batches)).scalar()
        return (
            batches,
            self.store.data_fingerprints([self.rollout]),
            self.store.gauge_versions(),
            self.store.ledger(self.rollout),
        )


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    store = Store.open(f"sqlite:///{tmp_path / 'poison.db'}")
    clock = ManualClock(START)
    app = create_app(store, clock, controller=False, admin_token=ADMIN)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN}"
        yield Server(client, store, clock)
    store.close()


Poison = Callable[[Server], dict[str, Any]]


def sparse(server: Server, buckets: Any, **changes: Any) -> dict[str, Any]:
    """A good batch whose latency histogram is sent sparse (as the SDK sends it) as ``buckets``
    (index, count, index, count, …),
    with ``changes`` to the latency aggregate."""
    batch = server.batch(**changes)
    latency = batch["aggregates"][1]
    if "histogram" not in changes:
        del latency["histogram"]
    latency["buckets"] = buckets
    return batch


#: (what, the batch, the status, what the message must say)
POISON: list[tuple[str, Poison, int, str]] = [
    (
        "a 3-bucket histogram",
        lambda s: s.batch(histogram=[1, 2, 3]),
        422,
        f"aggregates[1].histogram: List should have at least {LATENCY_BUCKETS} items",
    ),
    (
        "sparse buckets out of order",
        lambda s: sparse(s, [5, 1, 3, 1]),
        422,
        "aggregates[1].buckets: indices must increase, but [2] is index 3 after 5",
    ),
    (
        "a sparse bucket twice",
        lambda s: sparse(s, [5, 1, 5, 1]),
        422,
        "aggregates[1].buckets: indices must increase, but [2] is index 5 after 5",
    ),
    (
        "a sparse bucket past the last",
        lambda s: sparse(s, [3, 1, LATENCY_BUCKETS, 1]),
        422,
        f"aggregates[1].buckets: [2] is bucket index {LATENCY_BUCKETS}: there are "
        f"{LATENCY_BUCKETS} buckets",
    ),
    (
        "a sparse index without its count",
        lambda s: sparse(s, [3, 1, 7]),
        422,
        "aggregates[1].buckets: must be index, count pairs: an even number of integers, got 3",
    ),
    (
        "a negative sparse count",
        lambda s: sparse(s, [3, -1]),
        422,
        "aggregates[1].buckets[1]: Input should be greater than or equal to 0",
    ),
    (
        "a sparse bucket as text",
        lambda s: sparse(s, ["3", 1]),
        422,
        "aggregates[1].buckets[0]: Input should be a valid integer",
    ),
    (
        "sparse buckets as pairs",
        lambda s: sparse(s, [[3, 1]]),
        422,
        "aggregates[1].buckets[0]: Input should be a valid integer",
    ),
    (
        "histogram and buckets both",
        lambda s: sparse(s, [3, 1], histogram=[1] * 10 + [0] * (LATENCY_BUCKETS - 10)),
        422,
        "aggregates[1].buckets: an aggregate has histogram or buckets",
    ),
    (
        "more events than requests",
        lambda s: s.batch(events=11),
        422,
        "aggregates[1].events: must not exceed requests (10), got 11",
    ),
    (
        "a NaN gauge",
        lambda s: s.batch(gauge=float("nan")),
        422,
        "gauges[0].value: Input should be a finite number",
    ),
    (
        "an infinite gauge",
        lambda s: s.batch(gauge=float("inf")),
        422,
        "gauges[0].value: Input should be a finite number",
    ),
    (
        "stage 7 of a 3-stage plan",
        lambda s: s.batch(stage=7),
        422,
        "aggregates[0].stage: rollout 1's plan has no stage 7: its stages are 0 (canary), 1 (half), 2 (all)",
    ),
    (
        "an unknown metric",
        lambda s: s.batch(metric="checkout.latencyy"),
        422,
        "aggregates[1].metric: rollout 1's plan does not guard 'checkout.latencyy'",
    ),
    (
        "a window two centuries ahead",
        lambda s: s.batch(window=int(s.clock.now().timestamp() // 60) + 200 * 525_960),
        422,
        "aggregates[0].window: must be within 2 days of the server's clock",
    ),
]


@pytest.mark.parametrize(
    ("what", "poison", "status", "message"), POISON, ids=[p[0] for p in POISON]
)
def test_a_poison_batch_is_refused_stores_nothing_and_the_next_is_taken(
    server: Server, what: str, poison: Poison, status: int, message: str
) -> None:
    """The poison batch: a 4xx whose message names the bad row and why; nothing stored. The
    next good batch: 202. A controller tick afterwards judges the rollout."""
    before = server.stored()
    reply = server.sdk.post_events(json.dumps(poison(server)).encode())
    assert reply.status == status, reply.body
    body = json.loads(reply.body)
    assert message in body["message"], body
    assert server.stored() == before
    good = server.sdk.post_events(json.dumps(server.batch()).encode())
    assert good.status == 202, good.body
    assert server.stored() != before
    server.clock.advance(timedelta(minutes=1))
    (outcome,) = server.client.app.state.controller.tick(server.clock.now())  # type: ignore[attr-defined]
    assert outcome.decision.move.value == "hold", outcome


def test_a_batch_for_a_rollout_that_ended_is_refused_after_the_grace(server: Server) -> None:
    """Within LATE_BATCH_GRACE of a rollback a late batch is taken (its units were exposed);
    after it, 409 naming the rollout, and nothing stored."""
    rollout = server.store.rollout(server.rollout)
    server.store.transition(
        rollout, action=RolloutAction.ROLLBACK, actor="alice", now=server.clock.now()
    )
    late = server.sdk.post_events(json.dumps(server.batch()).encode())
    assert late.status == 202, late.body
    server.clock.advance(LATE_BATCH_GRACE + timedelta(seconds=1))
    before = server.stored()
    reply = server.sdk.post_events(json.dumps(server.batch()).encode())
    assert reply.status == 409, reply.body
    body = json.loads(reply.body)
    assert body["error"] == "conflict"
    assert body["message"].startswith("aggregates[0].rollout: rollout 1 was rolled back at")
    assert server.stored() == before


def test_sparse_buckets_and_a_dense_histogram_add_up_to_the_same_counts(server: Server) -> None:
    """The SDK sends latencies sparse; an older client sends 432 counts. Into one key, both are
    added bucket by bucket, in one group or in separate transactions."""
    dense = [0] * LATENCY_BUCKETS
    dense[7], dense[200], dense[LATENCY_BUCKETS - 1] = 4, 5, 1
    for body in (
        server.batch(histogram=dense),
        sparse(server, [0, 2, 7, 1, LATENCY_BUCKETS - 1, 7]),
        sparse(server, []),
    ):
        reply = server.sdk.post_events(json.dumps(body).encode())
        assert reply.status == 202, reply.body
    with server.store.engine.connect() as connection:
        (histogram,) = connection.execute(
            sa.select(t.aggregates.c.histogram).where(t.aggregates.c.metric == "checkout.latency")
        ).one()
    expected = [0] * LATENCY_BUCKETS
    expected[0], expected[7], expected[200], expected[LATENCY_BUCKETS - 1] = 2, 5, 5, 8
    assert histogram_counts(histogram) == tuple(expected)
