"""The Prometheus source against a real Prometheus (Debian's binary, scraping a small service every
second): a rollout whose guard reads Prometheus is rolled back on a regression injected into the
service and another expands while healthy, end to end through the server's controller; and the
counts written per stage and window are what the service served."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from rollwise.server import create_app
from rollwise.sources import PrometheusFeed
from rollwise.store import Store
from rollwise.store import _schema as t
from tests._serving import server_client, serving
from tests.sources._prometheus_env import PER_TICK, Service, prometheus, service, wait_for_samples

ADMIN = "rw_admin_prometheus-test"
FLAGS = """
flags:
  checkout-v2: {variants: [off, on]}
  search-v2: {variants: [off, on]}
"""
PLAN = """
flag: {app}-v2
unit: user
stratum: 1m
guards:
  - metric: {app}.error
    kind: rate
    tolerance: 50%
    source:
      prometheus:
        events: sum(increase(http_requests_total{{app="{app}",code="500",variant="{{variant}}"}}[{{window}}]))
        requests: sum(increase(http_requests_total{{app="{app}",variant="{{variant}}"}}[{{window}}]))
        lag: 3s
stages:
  - {{name: some, audience: {{percent: 30}}}}
  - {{name: all, audience: {{percent: 100}}}}
"""


@dataclass
class Scraped:
    service: Service
    url: str
    started: datetime


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    directory = tmp_path_factory.mktemp("prometheus")
    with service(("checkout", "search")) as running, prometheus(directory, running.port) as url:
        started = datetime.now(UTC)
        wait_for_samples(url, "http_requests_total")
        yield Scraped(running, url, started)


def test_a_regression_in_prometheus_rolls_back_and_a_healthy_rollout_expands(
    scraped: Scraped, tmp_path: Path
) -> None:
    scraped.service.failure.update(
        {
            ("checkout", "on"): 0.25,  # the regression: 25 % of the exposed requests fail
            ("checkout", "off"): 0.02,
            ("search", "on"): 0.10,
            ("search", "off"): 0.10,
        }
    )
    store = Store.open(f"sqlite:///{tmp_path / 'live.db'}")
    app = create_app(store, admin_token=ADMIN, prometheus_url=scraped.url)
    try:
        with (
            serving(app) as url,
            server_client(url, ADMIN) as api,
        ):
            api.put("/api/v1/flags", content=FLAGS).raise_for_status()
            ids = {}
            for name in ("checkout", "search"):
                started = api.post("/api/v1/rollouts", json={"plan": PLAN.format(app=name)})
                assert started.status_code == 201, started.text
                ids[name] = started.json()["id"]

            def state(name: str) -> dict[str, object]:
                return api.get(f"/api/v1/rollouts/{ids[name]}").json()  # type: ignore[no-any-return]

            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                checkout, search = state("checkout"), state("search")
                if checkout["status"] == "rolled_back" and int(search["stage"]) >= 1:  # type: ignore[call-overload]
                    break
                time.sleep(1)
            assert checkout["status"] == "rolled_back", checkout
            assert int(search["stage"]) >= 1 and search["status"] == "running", search  # type: ignore[call-overload]
            rollback = api.get(f"/api/v1/rollouts/{ids['checkout']}/decisions").json()[0]
            assert rollback["move"] == "rollback"
            print("\nrollback:", rollback["reasons"][0])
            verdict = rollback["evidence"]["trigger"]
            print("evidence:", {k: verdict[k] for k in ("estimate", "lower", "upper")})
            assert verdict["metric"] == "checkout.error" and verdict["verdict"] == "harm"
            print("counts:", verdict["exposed"], verdict["baseline"])
            assert verdict["exposed"][0] > 0 and verdict["baseline"][0] > 0
            expand = next(
                d
                for d in api.get(f"/api/v1/rollouts/{ids['search']}/decisions").json()
                if d["move"] == "expand"
            )
            print("expand:", expand["reasons"][0])
    finally:
        store.close()


def test_each_stage_and_window_holds_what_the_service_served(
    scraped: Scraped, tmp_path: Path
) -> None:
    """The feed reads a rollout whose stage changed 20 s into it: rows of the first stage end at
    the change, the second's start there (both in the window of the change), and each side's share is the service's (6 of every 20
    requests served ``on``) and its failure rate what the service drew."""
    scraped.service.failure.update({("search", "on"): 0.10, ("search", "off"): 0.10})
    store = Store.open(f"sqlite:///{tmp_path / 'feed.db'}")
    store.apply_flags(FLAGS, "test", "alice", scraped.started)
    # A window that has ended (or the first that ends 35 s after the scrapes began): the
    # rollout began 30 s before its end, and its stage changed 20 s later.
    minute = 60 * (datetime.now(UTC).timestamp() // 60)
    first = 60 * -(-(scraped.started.timestamp() + 35) // 60)
    end = datetime.fromtimestamp(max(minute, first), UTC)
    begun, changed = end - timedelta(seconds=30), end - timedelta(seconds=10)
    record = store.start_rollout(None, "alice", begun, text=PLAN.format(app="search"))
    later = replace(record, stage=1, stage_entered_at=changed)
    time.sleep(max(0.0, (end + timedelta(seconds=4) - datetime.now(UTC)).total_seconds()))
    feed = PrometheusFeed(store, scraped.url)
    # The first stage as it ran, then the second: as the controller's ticks would see them.
    assert feed.poll([record], store.parsed_plan, changed) == {}
    assert feed.poll([later], store.parsed_plan, datetime.now(UTC)) == {}
    feed.close()
    columns = t.aggregates.c
    with store.engine.connect() as connection:
        rows = list(
            connection.execute(
                sa.select(
                    columns.stage, columns.window, columns.exposed, columns.requests, columns.events
                )
            )
        )
    store.close()
    cut = int(changed.timestamp() // 60)
    assert {row.window for row in rows if row.stage == 0} <= {cut - 1, cut}
    assert {row.window for row in rows if row.stage == 1} == {cut}
    exposed = sum(row.requests for row in rows if row.exposed)
    baseline = sum(row.requests for row in rows if not row.exposed)
    share = PER_TICK["on"] / (PER_TICK["on"] + PER_TICK["off"])
    assert exposed / (exposed + baseline) == pytest.approx(share, abs=0.02)
    # About 60 exposed requests a second (fewer on a busy machine: the traffic is a Python
    # thread), from begun to end; twice as many would be a range counted twice.
    seconds = (end - begun).total_seconds()
    assert 5 * seconds < exposed < 70 * seconds
    events = sum(row.events for row in rows)
    assert events / (exposed + baseline) == pytest.approx(0.10, abs=0.015)
