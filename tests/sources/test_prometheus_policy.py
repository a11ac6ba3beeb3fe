"""The Prometheus source's policy, against answers made by hand (httpx's MockTransport): what a
range's queries ask, what is written for each kind of answer (no data is pending, never safe), and
that queries failing ``failures`` times in a row pause the rollout, with the error, through the
controller. The source against a real Prometheus: test_prometheus_live.py."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import sqlalchemy as sa

from rollwise.control import Controller
from rollwise.core import InputError, load_plan
from rollwise.core.judgement import LATENCY_BUCKETS, RolloutStatus, latency_bucket
from rollwise.sources import PrometheusFeed
from rollwise.store import Store
from rollwise.store import _schema as t
from rollwise.store._merging import histogram_counts
from tests._serving import free_port

START = datetime(2026, 11, 30, 9, 0, 30, tzinfo=UTC)
FLAGS = "flags:\n  checkout-v2: {variants: [off, on], rules: [{percent: 10, serve: on}]}\n"
RATE = """
flag: checkout-v2
unit: user
stratum: 1m
guards:
  - metric: checkout.error
    kind: rate
    tolerance: 50%
    source:
      prometheus:
        url: http://prometheus.test
        requests: sum(increase(http_requests_total{{variant="{{variant}}"}}[{{window}}]))
        events: sum(increase(http_requests_total{{code="500",variant="{{variant}}"}}[{{window}}]))
        lag: 10s
        headers: {{X-Scope-OrgID: team-a}}
        {extra}
stages:
  - {{name: some, audience: {{percent: 10}}}}
  - {{name: all, audience: {{percent: 100}}}}
"""

Answer = Callable[[str, str], Any]


def _store(tmp_path: Path, plan: str) -> tuple[Store, int]:
    store = Store.open(f"sqlite:///{tmp_path / 'feed.db'}")
    store.apply_flags(FLAGS, "test", "alice", START)
    rollout = store.start_rollout(None, "alice", START, text=plan)
    return store, rollout.id


def _feed(store: Store, answer: Answer, asked: list[dict[str, Any]]) -> PrometheusFeed:
    """A feed whose Prometheus answers ``answer(query, variant)`` as the sample value (None: an
    empty vector), and notes each request in ``asked``."""

    def handler(request: httpx.Request) -> httpx.Response:
        query = parse_qs(urlsplit(str(request.url)).query)
        text, at = query["query"][0], float(query["time"][0])
        variant = "on" if 'variant="on"' in text else "off"
        asked.append({"query": text, "time": at, "headers": dict(request.headers)})
        value = answer(text, variant)
        if isinstance(value, httpx.Response):
            return value
        result = [] if value is None else [{"metric": {}, "value": [at, str(value)]}]
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return httpx.Response(200, json=body)

    return PrometheusFeed(store, client=httpx.Client(transport=httpx.MockTransport(handler)))


def _aggregates(store: Store) -> list[tuple[Any, ...]]:
    columns = t.aggregates.c
    with store.engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(
                    columns.stage, columns.window, columns.exposed, columns.requests, columns.events
                ).order_by(columns.window, columns.exposed)
            )
        )


def _running(store: Store) -> list[Any]:
    return [r for r in store.rollouts() if r.status is RolloutStatus.RUNNING]


def test_each_ended_window_is_read_once_per_side_at_its_end(tmp_path: Path) -> None:
    store, _ = _store(tmp_path, RATE.format(extra=""))
    asked: list[dict[str, Any]] = []
    counts = {"on": (1000.4, 30.0), "off": (9000.0, 180.2)}
    feed = _feed(store, lambda q, v: counts[v][1 if "500" in q else 0], asked)
    plan_of = store.parsed_plan
    # 09:00:30 + 40 s: the first window (09:00:30-09:01:00) ended 10 s ago, the lag.
    assert feed.poll(_running(store), plan_of, START + timedelta(seconds=39)) == {}
    assert asked == []  # not yet: its lag has not passed
    assert feed.poll(_running(store), plan_of, START + timedelta(seconds=40)) == {}
    first_window = int(START.timestamp() // 60)
    assert _aggregates(store) == [
        (0, first_window, False, 9000, 180),
        (0, first_window, True, 1000, 30),
    ]
    # Four queries, at the end of the range, over its 30 s, with the headers asked for.
    assert len(asked) == 4
    assert {a["time"] for a in asked} == {START.timestamp() + 30}
    assert all("[30s]" in a["query"] and "{window}" not in a["query"] for a in asked)
    assert all(a["headers"]["x-scope-orgid"] == "team-a" for a in asked)
    # Three more minutes: three whole windows; a poll again, or a new feed (a restart), adds
    # nothing (each range is one batch id).
    later = START + timedelta(minutes=3, seconds=40)
    feed.poll(_running(store), plan_of, later)
    feed.poll(_running(store), plan_of, later)
    _feed(store, lambda q, v: counts[v][1 if "500" in q else 0], []).poll(
        _running(store), plan_of, later
    )
    stored = _aggregates(store)
    assert len(stored) == 8
    assert [row[1] for row in stored[::2]] == [first_window + k for k in range(4)]


def test_no_data_is_pending_and_events_never_exceed_requests(tmp_path: Path) -> None:
    store, _ = _store(tmp_path, RATE.format(extra=""))
    answers: dict[str, Any] = {"on": None, "off": 500.0}
    feed = _feed(store, lambda q, v: answers[v] if "500" not in q else 900.0, [])
    feed.poll(_running(store), store.parsed_plan, START + timedelta(minutes=1))
    # The exposed side had no data: only the baseline is written, and its events are capped.
    assert _aggregates(store) == [(0, int(START.timestamp() // 60), False, 500, 500)]
    answers["on"] = float("nan")
    feed.poll(_running(store), store.parsed_plan, START + timedelta(minutes=2))
    assert all(row[2] is False for row in _aggregates(store))


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (httpx.Response(503, text="overloaded"), "HTTP 503, not JSON"),
        (
            httpx.Response(400, json={"status": "error", "error": "parse error at char 5"}),
            "parse error at char 5",
        ),
        (
            httpx.Response(
                200,
                json={
                    "status": "success",
                    "data": {
                        "resultType": "vector",
                        "result": [
                            {"metric": {"code": "200"}, "value": [0, "1"]},
                            {"metric": {"code": "500"}, "value": [0, "2"]},
                        ],
                    },
                },
            ),
            "2 series",
        ),
        (
            httpx.Response(200, json={"status": "success", "data": {"resultType": "matrix"}}),
            "instant vector",
        ),
    ],
)
def test_queries_that_fail_three_times_in_a_row_pause_the_rollout(
    tmp_path: Path, answer: httpx.Response, said: str
) -> None:
    store, rollout_id = _store(tmp_path, RATE.format(extra=""))
    feed = _feed(store, lambda q, v: answer, [])
    controller = Controller(store, sources=[feed])
    now = START + timedelta(minutes=1)
    # Failures count at most once per lag (10 s here): a tick every second for 9 s is one.
    for second in range(10):
        controller.tick(now + timedelta(seconds=second))
    assert store.rollout(rollout_id).status is RolloutStatus.RUNNING
    for tick in (1, 2):
        controller.tick(now + timedelta(seconds=10 * tick))
        status = store.rollout(rollout_id).status
        assert status is (RolloutStatus.PAUSED if tick == 2 else RolloutStatus.RUNNING)
    decision = store.decisions(rollout_id)[0]
    assert decision.move == "pause"
    assert (
        "guard checkout.error: its Prometheus queries failed 3 times in a row"
        in decision.reasons[0]
    )
    assert said in decision.reasons[0]
    assert _aggregates(store) == []


def test_a_guard_split_by_tenant_reads_one_series_per_tenant(tmp_path: Path) -> None:
    """``by: [tenant]``: the queries group by tenant; each series is a segment, and the whole
    traffic is their sum. A series without the label is a query failure, not a guess."""
    plan = RATE.format(extra="").replace("kind: rate", "kind: rate\n    by: [tenant]", 1)
    store, _ = _store(tmp_path, plan)
    labelled = True

    def handler(request: httpx.Request) -> httpx.Response:
        query = parse_qs(urlsplit(str(request.url)).query)["query"][0]
        failing = "500" in query
        on = 'variant="on"' in query
        counts = (
            {"acme": (400, 40), "globex": (600, 6)}
            if on
            else {"acme": (4000, 40), "globex": (6000, 60)}
        )
        result = [
            {
                "metric": {"tenant": tenant} if labelled else {},
                "value": [0, str(pair[1] if failing else pair[0])],
            }
            for tenant, pair in counts.items()
        ]
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return httpx.Response(200, json=body)

    feed = PrometheusFeed(store, client=httpx.Client(transport=httpx.MockTransport(handler)))
    feed.poll(_running(store), store.parsed_plan, START + timedelta(minutes=1))
    columns = t.aggregates.c
    with store.engine.connect() as connection:
        rows = {
            (row.segment, row.exposed): (row.requests, row.events)
            for row in connection.execute(
                sa.select(columns.segment, columns.exposed, columns.requests, columns.events)
            )
        }
    assert rows == {
        ("", True): (1000, 46),
        ("tenant=acme", True): (400, 40),
        ("tenant=globex", True): (600, 6),
        ("", False): (10000, 100),
        ("tenant=acme", False): (4000, 40),
        ("tenant=globex", False): (6000, 60),
    }
    labelled = False
    assert feed.poll(_running(store), store.parsed_plan, START + timedelta(minutes=2)) == {}
    assert feed._cursors[next(iter(feed._cursors))].error.startswith("a series without a 'tenant'")


def test_an_unreachable_prometheus_pauses_after_failures_in_a_row(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    plan = RATE.format(extra="failures: 2").replace("http://prometheus.test", closed)
    store, rollout_id = _store(tmp_path, plan)
    controller = Controller(store, sources=[PrometheusFeed(store)])
    now = START + timedelta(minutes=1)
    controller.tick(now)
    assert store.rollout(rollout_id).status is RolloutStatus.RUNNING
    controller.tick(now + timedelta(seconds=10))
    assert store.rollout(rollout_id).status is RolloutStatus.PAUSED
    assert "ConnectError" in store.decisions(rollout_id)[0].reasons[0]


def test_latency_buckets_and_gauges(tmp_path: Path) -> None:
    plan = """
flag: checkout-v2
unit: user
stratum: 1m
guards:
  - metric: checkout.latency
    kind: latency
    tolerance: 20%
    source:
      prometheus:
        url: http://prometheus.test
        buckets: sum by (le) (increase(duration_seconds_bucket{variant="{variant}"}[{window}]))
  - metric: queue.depth
    kind: gauge
    max: 100
    source: {prometheus: {url: http://prometheus.test, query: max(queue_depth)}}
stages:
  - {name: some, audience: {percent: 10}}
  - {name: all, audience: {percent: 100}}
"""
    store, rollout_id = _store(tmp_path, plan)

    def handler(request: httpx.Request) -> httpx.Response:
        query = parse_qs(urlsplit(str(request.url)).query)["query"][0]
        if "queue_depth" in query:
            result = [{"metric": {}, "value": [0, "42"]}]
        else:  # cumulative: 10 under 5 ms, 30 under 50 ms, 31 in all
            cumulative = {"0.005": "10", "0.05": "30", "+Inf": "31"}
            result = [{"metric": {"le": le}, "value": [0, n]} for le, n in cumulative.items()]
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return httpx.Response(200, text=json.dumps(body))

    feed = PrometheusFeed(store, client=httpx.Client(transport=httpx.MockTransport(handler)))
    feed.poll(_running(store), store.parsed_plan, START + timedelta(minutes=1))
    with store.engine.connect() as connection:
        histograms = [
            row.histogram
            for row in connection.execute(
                sa.select(t.aggregates.c.histogram, t.aggregates.c.requests)
            )
        ]
        gauges = list(connection.execute(sa.select(t.gauges.c.metric, t.gauges.c.value)))
    assert len(histograms) == 2
    expected = [0] * LATENCY_BUCKETS
    expected[latency_bucket(5.0)] = 10
    expected[latency_bucket(50.0)] = 20
    expected[LATENCY_BUCKETS - 1] = 1
    assert all(list(histogram_counts(histogram) or ()) == expected for histogram in histograms)
    assert gauges == [("queue.depth", 42.0)]
    assert rollout_id


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("[{window}]))\n        events", "[5m]))\n        events"), "must contain {window}"),
        (('total{variant="{variant}"}', "total"), "must contain {variant}"),
    ],
)
def test_a_query_without_its_placeholders_is_refused(edit: tuple[str, str], message: str) -> None:
    plan = RATE.format(extra="")
    assert edit[0] in plan
    with pytest.raises(InputError) as refused:
        load_plan(plan.replace(*edit, 1))
    assert message in str(refused.value)


def test_guards_on_one_metric_read_it_once_and_share_one_source(tmp_path: Path) -> None:
    """A p95 and a p99 guard over the same histogram: one read per range, one row per side
    (not two added together). Guards on one metric with different sources are refused."""
    two = """
flag: checkout-v2
unit: user
stratum: 1m
guards:
  - metric: checkout.latency
    kind: latency
    tolerance: 20%
    source: &prom
      prometheus:
        url: http://prometheus.test
        buckets: sum by (le) (increase(d_bucket{variant="{variant}"}[{window}]))
  - metric: checkout.latency
    kind: latency
    quantile: 0.99
    tolerance: 20%
    source: *prom
stages:
  - {name: some, audience: {percent: 10}}
  - {name: all, audience: {percent: 100}}
"""
    store, _ = _store(tmp_path, two)
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url))
        result = [{"metric": {"le": "+Inf"}, "value": [0, "100"]}]
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return httpx.Response(200, json=body)

    feed = PrometheusFeed(store, client=httpx.Client(transport=httpx.MockTransport(handler)))
    feed.poll(_running(store), store.parsed_plan, START + timedelta(minutes=1))
    assert len(asked) == 2  # one query per side, for both guards
    assert [row[3] for row in _aggregates(store)] == [100, 100]
    mixed = two.replace("    source: *prom\n", "")
    with pytest.raises(InputError, match="take its counts from different sources"):
        load_plan(mixed)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("requests:", "buckets:"), "takes requests and events, not buckets"),
        (("url: http://prometheus.test", "url: http://prometheus.test:90o9"), "port must be"),
        (("X-Scope-OrgID: team-a", "X-Scope-OrgID: équipe"), "not a valid header"),
        (("url: http://prometheus.test", "url: ftp://x"), "expected an http(s) URL"),
        (("lag: 10s", "lag: 2h"), "lag must be more than 0 and at most 1:00:00"),
        (("lag: 10s", "lag: 10s\n        failures: 0"), "failures: a whole number from 1 to 100"),
        (("kind: rate", "kind: rate\n    by: [tenant, region]"), "split by one attribute"),
        (("prometheus:", "graphite:"), "graphite"),
    ],
)
def test_bad_sources_are_refused_when_the_plan_is_read(edit: tuple[str, str], message: str) -> None:
    plan = RATE.format(extra="").replace(*edit, 1)
    with pytest.raises(InputError) as refused:
        load_plan(plan)
    assert message in str(refused.value)


def test_a_restarted_feed_reads_what_the_last_one_missed_and_nothing_twice(
    tmp_path: Path,
) -> None:
    """The stage changed while no feed ran (a restart): a new feed goes back a window and a
    lag before the change, reads the previous stage's last range, and the ranges read before
    the restart are the same batches, so they are not counted again."""
    store, _ = _store(tmp_path, RATE.format(extra=""))
    counts = {"on": (100.0, 1.0), "off": (900.0, 9.0)}
    answer: Answer = lambda q, v: counts[v][1 if "500" in q else 0]  # noqa: E731
    (record,) = _running(store)
    before = _feed(store, answer, [])
    before.poll([record], store.parsed_plan, START + timedelta(seconds=45))  # 09:00:30-09:01
    changed = START + timedelta(seconds=50)  # 09:01:20, then the feed stopped
    later = dataclasses.replace(record, stage=1, stage_entered_at=changed)
    after = _feed(store, answer, [])
    after.poll([later], store.parsed_plan, START + timedelta(minutes=2, seconds=10))
    minute = int(START.timestamp() // 60)
    assert _aggregates(store) == [
        (0, minute, False, 900, 9),
        (0, minute, True, 100, 1),
        (0, minute + 1, False, 900, 9),  # 09:01:00-09:01:20: missed before the restart
        (1, minute + 1, False, 900, 9),  # 09:01:20-09:02:00
        (0, minute + 1, True, 100, 1),
        (1, minute + 1, True, 100, 1),
    ]
