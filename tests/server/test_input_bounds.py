"""Bounded, typed input everywhere: one error body, body limits, the SDK batch's ranges and
types, the OpenAPI document's promises, and what /readyz tells whom."""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from starlette.requests import ClientDisconnect

from rollwise.control import ManualClock
from rollwise.core import InputError
from rollwise.core.judgement import LATENCY_BUCKETS
from rollwise.server import create_app
from rollwise.server._batch_models import MAX_BATCH_BYTES
from rollwise.server._errors import (
    MAX_MANAGEMENT_BYTES,
    BodyLimit,
    error_response,
    install_error_handlers,
)
from rollwise.store import ConflictError, Role, StaleVersionError, Store, StoreError

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (ROOT / "examples/checkout/flags.yaml").read_text()
# Small, so that storing and starting it stays quick (the example plan is linted at length).
PLAN = """
flag: new-checkout
unit: tenant
max_stage_duration: 2d
guards:
  - {metric: checkout.error, kind: rate, tolerance: 50%}
  - {metric: checkout.latency, kind: latency, quantile: 0.95, tolerance: 50ms}
  - {metric: payments.queue_depth, kind: gauge, max: 1000, on_regression: pause}
stages:
  - name: canary
    audience: {percent: 5}
    bake: 30m
    min_samples: 300
  - {name: all, audience: {percent: 100}}
"""
ADMIN = "rw_admin_bounds-secret"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
NOW_MINUTE = int(START.timestamp() // 60)
POSTGRES_URL = os.environ.get("ROLLWISE_TEST_POSTGRES_URL", "")
ERROR_KEYS = {"error", "message", "details"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'bounds.db'}")
    yield opened
    opened.close()


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    app = create_app(store, ManualClock(START), controller=False, admin_token=ADMIN)
    with TestClient(app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {ADMIN}"
        yield test_client


def _token(client: TestClient, role: Role) -> dict[str, str]:
    response = client.post("/api/v1/tokens", json={"name": role.value, "role": role.value})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['secret']}"}


def _start(client: TestClient) -> int:
    assert client.put("/api/v1/flags", content=FLAGS).status_code == 200
    saved = client.post("/api/v1/plans", content=PLAN)
    assert saved.status_code == 201, saved.text
    started = client.post("/api/v1/rollouts", json={"plan_id": saved.json()["id"]})
    assert started.status_code == 201, started.text
    return int(started.json()["id"])


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is the one error body with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and "\n" not in body["message"]
    assert isinstance(body["details"], dict)
    return body  # type: ignore[no-any-return]


def _rows(store: Store) -> dict[str, int]:
    """How many rows the tables an event batch writes to hold."""
    with store.engine.connect() as connection:
        return {
            table: connection.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("aggregates", "ledger", "gauges", "batches")
        }


def _state(client: TestClient) -> tuple[int, int]:
    """The snapshot version and the length of the audit log: unchanged if nothing was stored."""
    version = client.get("/api/v1/flags").json()["snapshot_version"]
    audit = client.get("/api/v1/audit", params={"limit": 1000}).json()
    return int(version), len(audit)


# --- the one error body ---------------------------------------------------------------------


def test_auth_errors_use_the_error_body_and_keep_their_headers(client: TestClient) -> None:
    """401 keeps WWW-Authenticate; 403 says which role it needs."""
    missing = client.get("/api/v1/flags", headers={"Authorization": ""})
    _error(missing, 401, "unauthorized")
    assert missing.headers["www-authenticate"] == "Bearer"
    viewer = _token(client, Role.VIEWER)
    refused = _error(client.put("/api/v1/flags", content=FLAGS, headers=viewer), 403, "forbidden")
    assert "needs an operator token" in refused["message"]


def test_not_found_conflict_and_unknown_routes_use_the_error_body(client: TestClient) -> None:
    """A store's NotFoundError and ConflictError, and Starlette's own 404 and 405."""
    assert _error(client.get("/api/v1/rollouts/999"), 404, "not_found")["message"]
    _start(client)
    saved = client.post("/api/v1/plans", content=PLAN).json()
    second = client.post("/api/v1/rollouts", json={"plan_id": saved["id"]})
    assert "already has a live rollout" in _error(second, 409, "conflict")["message"]
    _error(client.get("/api/v1/nowhere"), 404, "not_found")
    _error(client.delete("/healthz"), 405, "method_not_allowed")


def test_an_invalid_flags_file_names_path_line_and_source(client: TestClient) -> None:
    """InputError: 422 invalid, with path, line and source in the details; nothing applied."""
    before = _state(client)
    response = client.put("/api/v1/flags", content="flags:\n  f:\n    variants: [only]\n")
    body = _error(response, 422, "invalid")
    assert body["details"] == {"path": "flags.f.variants", "line": 3, "source": "api"}
    assert "flags.f.variants" in body["message"] and "line" not in body["details"]["path"]
    unreadable = _error(client.put("/api/v1/flags", content="flags: [\n"), 422, "invalid")
    assert unreadable["message"].startswith("api:") and "invalid YAML" in unreadable["message"]
    assert _state(client) == before


def test_request_validation_names_the_first_bad_field_without_echoing_it(
    client: TestClient,
) -> None:
    """RequestValidationError: the message names the field; details.errors has loc, msg and
    type, and never the input itself."""
    secret = "s3cr3t" * 1000
    response = client.post("/api/v1/rollouts", json={"plan_id": secret})
    body = _error(response, 422, "invalid")
    assert body["message"].startswith("body.plan_id: ")
    (first,) = body["details"]["errors"]
    assert set(first) == {"loc", "msg", "type"} and first["loc"] == ["body", "plan_id"]
    assert secret not in response.text
    not_json = _error(
        client.post("/api/v1/rollouts", content=b"{", headers={"Content-Type": "application/json"}),
        422,
        "invalid",
    )
    assert not_json["message"].startswith("body")


def _tiny_app(raise_: Callable[[], None]) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> None:
        raise_()

    return app


@pytest.mark.parametrize(
    ("exception", "status", "code", "details"),
    [
        (
            HTTPException(
                418, {"error": "teapot", "message": "short and stout", "details": {"cups": 2}}
            ),
            418,
            "teapot",
            {"cups": 2},
        ),
        (HTTPException(413, "too big"), 413, "too_large", {}),
        (HTTPException(409, "busy"), 409, "conflict", {}),
        (ConflictError("taken", details={"flag": "f"}), 409, "conflict", {"flag": "f"}),
        (StaleVersionError("changed"), 409, "changed_meanwhile", {}),
        (InputError("bad", path="a.b", line=2, source="x"), 422, "invalid", None),
        (ClientDisconnect(), 400, "client_disconnected", {}),
    ],
)
def test_each_kind_of_refusal_maps_to_its_status_and_code(
    exception: Exception, status: int, code: str, details: dict[str, Any] | None
) -> None:
    """HTTPException (a dict detail used as is), store errors by class, InputError, and a
    client that left (not logged as a failure)."""

    def raise_() -> None:
        raise exception

    with TestClient(_tiny_app(raise_)) as client:
        body = _error(client.get("/boom"), status, code)
    if details is not None:
        assert body["details"] == details


def test_an_unexpected_error_is_a_500_that_leaks_nothing_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The catch-all: 500 internal, no exception text in the body, the traceback in the log."""

    def raise_() -> None:
        raise RuntimeError("password=hunter2 at db.internal:5432")

    with (
        caplog.at_level(logging.ERROR, logger="rollwise.server"),
        TestClient(_tiny_app(raise_), raise_server_exceptions=False) as client,
    ):
        response = client.get("/boom")
    _error(response, 500, "internal")
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    logged = [r for r in caplog.records if r.name == "rollwise.server" and r.exc_info]
    assert logged and "hunter2" in str(logged[0].exc_info[1])  # type: ignore[index]


def test_a_store_error_without_a_status_is_a_500_with_its_code() -> None:
    """A StoreError says what failed (raised on purpose), as a 500 with its code."""

    def raise_() -> None:
        raise StoreError("the store could not do it")

    with TestClient(_tiny_app(raise_)) as client:
        body = _error(client.get("/boom"), 500, "store_error")
    assert body["message"] == "the store could not do it"


def test_error_response_keeps_one_line() -> None:
    """A message with newlines becomes one line."""
    response = error_response(400, "bad_request", "first\nsecond\n\nthird")
    assert json.loads(bytes(response.body))["message"] == "first second third"


# --- the OpenAPI document -------------------------------------------------------------------


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_openapi_document_declares_auth_and_every_error(client: TestClient) -> None:
    """Bearer on /api/v1, /sdk/v1, /ofrep/v1 and /judge/v1 (not health), and
    401/403/404/409/413/422 with the one Error schema where they can happen (OFREP's 400 and
    404 are its own); every $ref resolves."""
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearer"]["description"],
    }
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    assert set(spec["components"]["schemas"]["Error"]["required"]) == ERROR_KEYS
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if not path.startswith(("/api/v1/", "/sdk/v1/", "/ofrep/v1/", "/judge/v1/")):
                assert "security" not in operation, path
                continue
            assert operation["security"] == [{"bearer": []}], (method, path)
            # OFREP answers its own 400 and 404 bodies (open-feature/protocol), never 422.
            ofrep = path.startswith("/ofrep/v1/")
            expected = {"401", "403"} if ofrep else {"401", "403", "422"}
            if "{" in path and not ofrep:
                expected.add("404")
            if method in ("post", "put", "delete") and path.startswith("/api/v1/"):
                expected.add("409")
            if "requestBody" in operation:
                expected.add("413")
            assert expected <= set(responses), (method, path, sorted(responses))
            for status in expected:
                assert responses[status]["content"] == error, (method, path, status)
    names = set(spec["components"]["schemas"])
    assert "HTTPValidationError" not in names
    for ref in _refs(spec):
        assert ref.removeprefix("#/components/schemas/") in names, ref
    events = spec["paths"]["/sdk/v1/events"]["post"]["requestBody"]
    assert events["content"]["application/json"]["schema"]["title"] == "Batch"


# --- body limits ----------------------------------------------------------------------------


def test_a_management_body_over_1_mib_is_refused_before_parsing(client: TestClient) -> None:
    """413 too_large by Content-Length, and by counting a body sent without one; nothing
    applied. A body of exactly the limit is read (and judged on its content)."""
    before = _state(client)
    oversized = b"#" * (MAX_MANAGEMENT_BYTES + 1)
    body = _error(client.put("/api/v1/flags", content=oversized), 413, "too_large")
    assert body["details"] == {"limit_bytes": MAX_MANAGEMENT_BYTES}
    chunked = client.post("/api/v1/plans", content=iter([oversized[:1000], oversized[1000:]]))
    _error(chunked, 413, "too_large")
    at_limit = client.put("/api/v1/flags", content=b"#" * MAX_MANAGEMENT_BYTES)
    assert at_limit.status_code == 422, at_limit.text
    assert _state(client) == before


def test_the_body_limit_stops_reading_a_stream_at_the_limit() -> None:
    """A chunked body is refused at the first chunk past the limit; the rest is never read."""
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 400, "more_body": True}

    async def reader(scope: Any, receive_: Any, send: Any) -> None:
        while True:
            await receive_()

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    import anyio

    scope = {"type": "http", "path": "/api/v1/plans", "headers": [], "method": "POST"}
    anyio.run(BodyLimit(reader, {"/api/v1": 1000}), scope, receive, send)
    assert pulled == 3
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["error"] == "too_large"


def test_an_event_batch_keeps_its_own_larger_limit(client: TestClient, store: Store) -> None:
    """An SDK batch may exceed 1 MiB (up to MAX_BATCH_BYTES); over that it is a 413."""
    sdk = _token(client, Role.SDK)
    rollout = _start(client)
    aggregate = _aggregate(rollout)
    rows = MAX_MANAGEMENT_BYTES // len(json.dumps(aggregate)) + 10
    big = {"batch": str(uuid.uuid4()), "aggregates": [aggregate] * rows}
    assert len(json.dumps(big)) > MAX_MANAGEMENT_BYTES
    assert client.post("/sdk/v1/events", json=big, headers=sdk).status_code == 202
    before = _rows(store)
    huge = b'{"batch": "' + b"x" * MAX_BATCH_BYTES + b'"}'
    _error(client.post("/sdk/v1/events", content=huge, headers=sdk), 413, "too_large")
    assert _rows(store) == before


# --- the SDK batch: ranges and types --------------------------------------------------------


def _aggregate(rollout: int, **changes: Any) -> dict[str, Any]:
    return {
        "rollout": rollout,
        "stage": 0,
        "window": NOW_MINUTE,
        "exposed": True,
        "segment": "",
        "metric": "checkout.error",
        "requests": 100,
        "events": 1,
        **changes,
    }


def _batch(rollout: int) -> dict[str, Any]:
    return {
        "batch": str(uuid.uuid4()),
        "sdk": "rollwise-python/test",
        "aggregates": [
            _aggregate(rollout),
            _aggregate(
                rollout,
                metric="checkout.latency",
                events=0,
                histogram=[0] * (LATENCY_BUCKETS - 1) + [100],
            ),
        ],
        "exposures": [
            {
                "rollout": rollout,
                "unit": "acme",
                "stage": 0,
                "exposed": True,
                "at": START.isoformat(),
            }
        ],
        "gauges": [{"metric": "payments.queue_depth", "value": 12.5, "at": START.isoformat()}],
    }


def _set(batch: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``aggregates.0.requests`` ← value."""
    *parents, last = path.split(".")
    node: Any = batch
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return batch


far_past = (START - timedelta(days=2, minutes=1)).isoformat()
far_future = (START + timedelta(days=2, minutes=1)).isoformat()


@pytest.mark.parametrize(
    ("path", "value", "field", "says"),
    [
        ("aggregates.0.rollout", 2**31, "body.aggregates[0].rollout", "less than or equal"),
        ("aggregates.0.rollout", 0, "body.aggregates[0].rollout", "greater than or equal"),
        ("aggregates.0.stage", -1, "body.aggregates[0].stage", "greater than or equal"),
        ("aggregates.0.stage", 2**31, "body.aggregates[0].stage", "less than or equal"),
        ("aggregates.0.window", NOW_MINUTE - 2 * 1440 - 1, "body.aggregates[0].window", "2 days"),
        ("aggregates.0.window", NOW_MINUTE + 2 * 1440 + 1, "body.aggregates[0].window", "2 days"),
        ("aggregates.0.window", 2**70, "body.aggregates[0].window", "2 days"),
        ("aggregates.0.requests", "10", "body.aggregates[0].requests", "valid integer"),
        ("aggregates.0.requests", 10.0, "body.aggregates[0].requests", "valid integer"),
        ("aggregates.0.requests", True, "body.aggregates[0].requests", "valid integer"),
        ("aggregates.0.requests", 2**53 + 1, "body.aggregates[0].requests", "less than"),
        ("aggregates.0.events", -1, "body.aggregates[0].events", "greater than or equal"),
        ("aggregates.0.events", 101, "body.aggregates[0].events", "must not exceed requests"),
        ("aggregates.0.exposed", "true", "body.aggregates[0].exposed", "valid boolean"),
        ("aggregates.0.metric", "a\x00b", "body.aggregates[0].metric", "control characters"),
        ("aggregates.0.segment", "tenant=\x01", "body.aggregates[0].segment", "control"),
        ("aggregates.1.histogram", [1, 2, 3], "body.aggregates[1].histogram", "at least"),
        (
            "aggregates.1.histogram",
            [0] * (LATENCY_BUCKETS + 1),
            "body.aggregates[1].histogram",
            "at most",
        ),
        ("aggregates.1.histogram.5", -1, "body.aggregates[1].histogram[5]", "greater than"),
        ("aggregates.1.histogram.5", "1", "body.aggregates[1].histogram[5]", "valid integer"),
        ("aggregates.1.histogram.5", 2**53 + 1, "body.aggregates[1].histogram[5]", "less than"),
        ("exposures.0.rollout", 2**31, "body.exposures[0].rollout", "less than or equal"),
        ("exposures.0.unit", "acme\n", "body.exposures[0].unit", "control characters"),
        ("exposures.0.at", "2026-01-05T09:00:00", "body.exposures[0].at", "timezone"),
        ("exposures.0.at", far_past, "body.exposures[0].at", "within 2 days"),
        ("exposures.0.at", far_future, "body.exposures[0].at", "within 2 days"),
        ("exposures.0.at", 1767603600, "body.exposures[0].at", "valid datetime"),
        ("gauges.0.at", far_past, "body.gauges[0].at", "within 2 days"),
        ("gauges.0.value", "1.5", "body.gauges[0].value", "valid number"),
        ("gauges.0.metric", "q\x7f", "body.gauges[0].metric", "control characters"),
        ("sdk", "python\x00", "body.sdk", "control characters"),
        ("batch", "abcdefgh\x00", "body.batch", "control characters"),
    ],
)
def test_a_batch_out_of_bounds_is_refused_whole(
    client: TestClient, store: Store, path: str, value: Any, field: str, says: str
) -> None:
    """422 invalid naming the first bad field and why; no row stored, and the batch id stays
    unused (the corrected batch is then applied)."""
    sdk = _token(client, Role.SDK)
    rollout = _start(client)
    good = _batch(rollout)
    before = _rows(store)
    bad = _set(json.loads(json.dumps(good)), path, value)
    body = _error(client.post("/sdk/v1/events", json=bad, headers=sdk), 422, "invalid")
    assert body["message"].startswith(f"{field}: "), body["message"]
    assert says in body["message"], body["message"]
    assert body["details"]["errors"][0]["loc"][0] == "body"
    assert _rows(store) == before
    assert client.post("/sdk/v1/events", json=good, headers=sdk).status_code == 202


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_gauge_value_must_be_finite(client: TestClient, store: Store, literal: str) -> None:
    """NaN, ±Infinity and overflowing numbers are not gauge readings."""
    sdk = _token(client, Role.SDK)
    rollout = _start(client)
    text = json.dumps(_batch(rollout)).replace("12.5", literal)
    before = _rows(store)
    response = client.post(
        "/sdk/v1/events",
        content=text,
        headers={**sdk, "Content-Type": "application/json"},
    )
    body = _error(response, 422, "invalid")
    assert body["message"].startswith("body.gauges[0].value: "), body["message"]
    assert _rows(store) == before


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "not valid JSON"),
        (b"[]", "body: "),
        (b'{"batch": "abcdefgh", "aggregates": {}}', "body.aggregates: "),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_a_batch_that_is_not_a_batch_is_refused(
    client: TestClient, store: Store, content: bytes, says: str
) -> None:
    """Not JSON, not an object, the wrong shape: 422 invalid naming where."""
    sdk = _token(client, Role.SDK)
    before = _rows(store)
    body = _error(client.post("/sdk/v1/events", content=content, headers=sdk), 422, "invalid")
    assert says in body["message"], body["message"]
    assert _rows(store) == before


def test_a_batch_at_the_edges_of_every_range_is_applied(client: TestClient) -> None:
    """The largest counts, the edges of the time window and a full histogram are accepted."""
    sdk = _token(client, Role.SDK)
    rollout = _start(client)
    batch = _batch(rollout)
    batch["aggregates"][0].update(requests=2**53, events=2**53, window=NOW_MINUTE - 2 * 1440)
    batch["aggregates"][1].update(histogram=[2**53] * LATENCY_BUCKETS, window=NOW_MINUTE + 2880)
    batch["exposures"][0]["at"] = (START - timedelta(days=2)).isoformat()
    batch["gauges"][0]["at"] = (
        (START + timedelta(days=2))
        .astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
        .isoformat()
    )
    response = client.post("/sdk/v1/events", json=batch, headers=sdk)
    assert response.status_code == 202, response.text


def _postgres_url() -> str:
    if not POSTGRES_URL:
        pytest.skip("needs ROLLWISE_TEST_POSTGRES_URL")
    import psycopg

    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    return POSTGRES_URL


@pytest.fixture
def postgres_client() -> Iterator[tuple[TestClient, Store]]:
    import psycopg

    base = _postgres_url()
    schema = f"rw_bounds_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in base else "?"
    store = Store.open(f"{base}{separator}options=-csearch_path%3D{schema}")
    try:
        app = create_app(store, ManualClock(START), controller=False, admin_token=ADMIN)
        with TestClient(app) as test_client:
            test_client.headers["Authorization"] = f"Bearer {ADMIN}"
            yield test_client, store
    finally:
        store.close()
        with psycopg.connect(base, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_the_largest_ids_and_counts_fit_postgresql(
    postgres_client: tuple[TestClient, Store],
) -> None:
    """On PostgreSQL (INTEGER ids, BIGINT counts): the largest rollout id is an unknown
    rollout (404), not a database error; the largest counts are stored; NUL never reaches it."""
    client, store = postgres_client
    sdk = _token(client, Role.SDK)
    rollout = _start(client)
    unknown = _batch(rollout)
    for row in unknown["aggregates"]:
        row.update(rollout=2**31 - 1, stage=2**31 - 1)
    _error(client.post("/sdk/v1/events", json=unknown, headers=sdk), 404, "not_found")
    biggest = _batch(rollout)
    biggest["aggregates"][0].update(requests=2**53, events=2**53)
    assert client.post("/sdk/v1/events", json=biggest, headers=sdk).status_code == 202
    before = _rows(store)
    with_nul = _set(_batch(rollout), "aggregates.0.metric", "checkout\x00error")
    _error(client.post("/sdk/v1/events", json=with_nul, headers=sdk), 422, "invalid")
    _error(client.get("/api/v1/audit", params={"target": "a\x00b"}), 422, "invalid")
    assert _rows(store) == before


# --- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/v1/audit?target=a%00b", "query.target"),
        ("/api/v1/audit?target=%1b%5b31m", "query.target"),
        ("/api/v1/flags/new%00checkout/kill", "path"),
    ],
)
def test_control_characters_in_a_url_are_refused(client: TestClient, url: str, field: str) -> None:
    """A NUL or an escape in a path or query parameter: 422 invalid naming where."""
    before = _state(client)
    response = client.post(url) if url.endswith("/kill") else client.get(url)
    body = _error(response, 422, "invalid")
    assert body["message"].startswith(f"{field}: control characters are not allowed")
    assert _state(client) == before


# --- YAML through the API -------------------------------------------------------------------


BILLION_LAUGHS = (
    "flags:\n"
    "  a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    "  b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "  c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    "  d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "  e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
    "  f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
)


@pytest.mark.parametrize(
    ("endpoint", "text", "says"),
    [
        ("/api/v1/flags", "[" * 100_000 + "]" * 100_000, "nests deeper than 64 levels"),
        ("/api/v1/plans", "- " * 100_000 + "x", "nests deeper than 64 levels"),
        ("/api/v1/flags", BILLION_LAUGHS, "more than 100000 values"),
        ("/api/v1/flags", "flags:\n  f:\n    description: a\x00b\n", "U+0000"),
        ("/api/v1/plans", "flag: new-checkout\nunit: \x1b[31m\n", "U+001B"),
        ("/api/v1/plans", PLAN.replace("bake: 30m", "bake: 99999999999d"), "at most 365d"),
        ("/api/v1/plans", PLAN.replace("bake: 30m", "bake: 366d"), "at most 365d"),
        ("/api/v1/plans", PLAN.replace("min_samples: 300", "min_samples: " + "9" * 5000), "±2^63"),
    ],
)
def test_yaml_past_a_limit_is_a_clean_422(
    client: TestClient, endpoint: str, text: str, says: str
) -> None:
    """Deep nesting, alias bombs, control characters, absurd durations and numbers: 422
    invalid naming the limit, never a 500; nothing stored."""
    assert client.put("/api/v1/flags", content=FLAGS).status_code == 200
    before = _state(client)
    send = client.put if endpoint == "/api/v1/flags" else client.post
    body = _error(send(endpoint, content=text.encode()), 422, "invalid")
    assert says in body["message"], body["message"]
    assert _state(client) == before


def test_a_control_character_is_refused_with_its_line(client: TestClient) -> None:
    """The error names the line of the character."""
    body = _error(
        client.put("/api/v1/flags", content="flags:\n  f:\n    description: a\x07b\n"),
        422,
        "invalid",
    )
    assert body["details"]["line"] == 3


# --- /readyz --------------------------------------------------------------------------------


def test_readyz_tells_why_only_to_a_known_token(
    client: TestClient,
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A failing store: 503 unavailable; the driver's text only with a valid token of any
    role, and always in the server's log."""
    viewer = _token(client, Role.VIEWER)

    def failing() -> int:
        raise RuntimeError("could not connect to db.internal:5432 as rollwise")

    monkeypatch.setattr(store, "snapshot_version", failing)
    with caplog.at_level(logging.ERROR, logger="rollwise.server"):
        anonymous = client.get("/readyz", headers={"Authorization": ""})
        stranger = client.get("/readyz", headers={"Authorization": "Bearer nope"})
        known = client.get("/readyz", headers=viewer)
    assert anonymous.status_code == stranger.status_code == known.status_code == 503
    assert anonymous.json() == stranger.json() == {"status": "unavailable"}
    assert "db.internal" in known.json()["detail"]
    assert any("db.internal" in record.getMessage() for record in caplog.records)


def test_only_a_request_with_a_body_is_counted() -> None:
    """An HTTP/1.1 request without a body (no Content-Length, no Transfer-Encoding: an event
    stream's GET) reaches the route with the server's own receive and send, unwrapped: every
    write of a stream would otherwise go through the counter. A chunked body, a declared one,
    and any request of another HTTP version are counted."""
    import anyio

    seen: list[tuple[Any, Any]] = []

    async def route(scope: Any, receive_: Any, send_: Any) -> None:
        seen.append((receive_, send_))

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        pass

    def scope(version: str, *headers: tuple[bytes, bytes]) -> dict[str, Any]:
        path = "/sdk/v1/stream"
        return {"type": "http", "path": path, "headers": list(headers), "http_version": version}

    limit = BodyLimit(route, {"/sdk/v1": 1000})
    for request in (
        scope("1.1"),
        scope("1.0", (b"content-length", b"0")),
        scope("1.1", (b"transfer-encoding", b"chunked")),
        scope("1.1", (b"content-length", b"10")),
        scope("2", (b"accept", b"text/event-stream")),
    ):
        anyio.run(limit, request, receive, send)
    unwrapped = [r is receive and s is send for r, s in seen]
    assert unwrapped == [True, True, False, False, False]
