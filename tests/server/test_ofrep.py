"""OFREP on a live server: the protocol's shapes, the same variant as the Python SDK for thousands
of contexts, remote evaluations in the exposure ledger, and the limits (429 with Retry-After in
seconds, body and context bounds)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from rollwise import Client
from rollwise.core import Reason, ledger_unit
from rollwise.core._remote import OPENFEATURE_REASONS
from rollwise.store import _schema as t
from tests._serving import server_client
from tests.server._ofrep_server import OfrepServer, ofrep_server

FLAGS = ("new-checkout", "search-v2", "page-size", "discount")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OfrepServer]:
    with ofrep_server(tmp_path) as live:
        yield live


@pytest.fixture
def ofrep(server: OfrepServer) -> Iterator[httpx.Client]:
    with server_client(f"{server.url}/ofrep/v1", server.key) as client:
        yield client


def _ledger(server: OfrepServer) -> list[Any]:
    with server.store.engine.connect() as connection:
        return list(
            connection.execute(
                sa.select(t.ledger.c.unit, t.ledger.c.exposed).where(
                    t.ledger.c.rollout_id == server.rollout
                )
            )
        )


def _until(condition: Any, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_single_evaluations_answer_in_the_protocols_shapes(ofrep: httpx.Client) -> None:
    on = ofrep.post(
        "/evaluate/flags/new-checkout", json={"context": {"tenant": "acme", "app_version": "2.5.0"}}
    )
    assert on.status_code == 200
    assert on.json() == {
        "key": "new-checkout",
        "value": True,
        "reason": "TARGETING_MATCH",
        "variant": "on",
        "metadata": {"rollwise.reason": "rule_match", "rollwise.version": 2, "rollwise.rule": 0},
    }
    old_app = ofrep.post(
        "/evaluate/flags/new-checkout", json={"context": {"tenant": "acme", "app_version": "2.0"}}
    ).json()
    assert (old_app["value"], old_app["reason"]) == (False, "TARGETING_MATCH")
    assert old_app["metadata"]["rollwise.reason"] == "version_below_minimum"

    # Numbers keep their JSON types: an integer and a float variant.
    large = ofrep.post(
        "/evaluate/flags/page-size", json={"context": {"targetingKey": "u", "roles": ["admin"]}}
    ).json()
    assert (large["value"], large["variant"]) == (50, "large")
    discount = ofrep.post(
        "/evaluate/flags/discount", json={"context": {"targetingKey": "u", "age": 70}}
    ).json()
    assert discount["value"] == 0.15 and isinstance(discount["value"], float)
    none = ofrep.post("/evaluate/flags/discount", json={"context": {"targetingKey": "u"}}).json()
    assert (none["value"], none["reason"]) == (0.0, "DEFAULT")

    # Attributes rollwise cannot read are left out, and named.
    nested = ofrep.post(
        "/evaluate/flags/discount",
        json={"context": {"targetingKey": "u", "age": 70, "profile": {"plan": "x"}}},
    ).json()
    assert nested["metadata"]["rollwise.ignored_attributes"] == "profile"


def test_failures_carry_the_protocols_error_codes(ofrep: httpx.Client, server: OfrepServer) -> None:
    missing = ofrep.post("/evaluate/flags/nope", json={"context": {"targetingKey": "u"}})
    assert missing.status_code == 404
    assert missing.json()["errorCode"] == "FLAG_NOT_FOUND"
    assert missing.json()["key"] == "nope"

    # page-size buckets by the targeting key: without one, the client must be told.
    no_key = ofrep.post("/evaluate/flags/page-size", json={"context": {"roles": ["viewer"]}})
    assert no_key.status_code == 400
    assert no_key.json()["errorCode"] == "TARGETING_KEY_MISSING"
    # new-checkout buckets by tenant: a context without one gets the safe default, no error.
    no_tenant = ofrep.post(
        "/evaluate/flags/new-checkout",
        json={"context": {"targetingKey": "u", "app_version": "2.5.0"}},
    )
    assert no_tenant.status_code == 200
    assert no_tenant.json()["reason"] == "DEFAULT"
    assert no_tenant.json()["metadata"]["rollwise.reason"] == "unit_missing"

    for body, code in (
        (b"{", "PARSE_ERROR"),
        (b"[1, 2]", "PARSE_ERROR"),
        (b'{"context": "acme"}', "INVALID_CONTEXT"),
        (b'{"context": {"targetingKey": 42}}', "INVALID_CONTEXT"),
    ):
        answer = ofrep.post("/evaluate/flags/discount", content=body)
        assert answer.status_code == 400, body
        assert answer.json()["errorCode"] == code, body
        assert answer.json()["errorDetails"], body
    wide = {"targetingKey": "u", **{f"a{i}": i for i in range(300)}}
    too_wide = ofrep.post("/evaluate/flags/discount", json={"context": wide})
    assert too_wide.status_code == 400
    assert "301 attributes" in too_wide.json()["errorDetails"]
    huge = ofrep.post(
        "/evaluate/flags/discount", json={"context": {"targetingKey": "u", "x": "y" * 70_000}}
    )
    assert huge.status_code == 413

    with server_client(f"{server.url}/ofrep/v1") as anonymous:
        assert anonymous.post("/evaluate/flags/discount", json={"context": {}}).status_code == 401
        wrong = anonymous.post(
            "/evaluate/flags/discount", json={"context": {}}, headers={"X-API-Key": "rw_nope"}
        )
        assert wrong.status_code == 401
        # A management token is not an SDK key; an SDK key works as X-API-Key too.
        admin = anonymous.post(
            "/evaluate/flags/discount",
            json={"context": {}},
            headers={"Authorization": "Bearer rw_admin_ofrep-test"},
        )
        assert admin.status_code == 403
        api_key = anonymous.post(
            "/evaluate/flags/discount",
            json={"context": {"targetingKey": "u"}},
            headers={"X-API-Key": server.key},
        )
        assert api_key.status_code == 200


def test_bulk_evaluation_with_an_etag_per_snapshot_and_context(
    ofrep: httpx.Client, server: OfrepServer
) -> None:
    context = {"targetingKey": "u-7", "tenant": "acme", "app_version": "2.5.0"}
    first = ofrep.post("/evaluate/flags", json={"context": context})
    assert first.status_code == 200
    body = first.json()
    assert [item["key"] for item in body["flags"]] == sorted(FLAGS)
    assert all("value" in item and "reason" in item for item in body["flags"])
    etag = first.headers["etag"]

    same = ofrep.post("/evaluate/flags", json={"context": context}, headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.content == b""
    assert same.headers["etag"] == etag
    other = ofrep.post(
        "/evaluate/flags",
        json={"context": {**context, "tenant": "globex"}},
        headers={"If-None-Match": etag},
    )
    assert other.status_code == 200 and other.headers["etag"] != etag

    # A kill switch changes the snapshot, so the same context is evaluated anew.
    with server.admin() as admin:
        admin.post("/api/v1/flags/new-checkout/kill").raise_for_status()
    killed = ofrep.post(
        "/evaluate/flags", json={"context": context}, headers={"If-None-Match": etag}
    )
    assert killed.status_code == 200 and killed.headers["etag"] != etag
    item = next(item for item in killed.json()["flags"] if item["key"] == "new-checkout")
    assert (item["value"], item["reason"]) == (False, "DISABLED")

    # A flag that cannot be evaluated for this context is a failure item, not a failed request.
    keyless = ofrep.post("/evaluate/flags", json={"context": {"tenant": "acme"}})
    assert keyless.status_code == 200
    page = next(item for item in keyless.json()["flags"] if item["key"] == "page-size")
    assert page["errorCode"] == "TARGETING_KEY_MISSING" and "value" not in page
    assert ofrep.post("/evaluate/flags", content=b"nope").json()["errorCode"] == "PARSE_ERROR"


def _contexts(count: int, seed: int) -> list[dict[str, Any]]:
    """OpenFeature contexts of every shape the flags read, and some they cannot."""
    rng = random.Random(seed)
    contexts = []
    for index in range(count):
        context: dict[str, Any] = {}
        if rng.random() < 0.9:
            context["targetingKey"] = f"user-{index}"
        for name, values in (
            ("tenant", ["acme", "globex", "initech", f"t-{index % 37}"]),
            ("region", ["eu-west", "eu-north", "us-east", "ap-south"]),
            ("tier", ["free", "pro", "enterprise"]),
            ("app_version", ["2.3.9", "2.4.0", "2.10.1", "3.0.0"]),
        ):
            if rng.random() < 0.8:
                context[name] = rng.choice(values)
        if rng.random() < 0.7:
            context["roles"] = rng.sample(["admin", "billing", "viewer"], rng.randint(0, 3))
        if rng.random() < 0.7:
            context["age"] = rng.choice([rng.randint(18, 90), rng.uniform(18, 90)])
        if rng.random() < 0.1:
            context["profile"] = {"plan": "x"}  # unreadable: left out on both paths
        contexts.append(context)
    return contexts


def _local(context: dict[str, Any]) -> dict[str, Any]:
    """The plain dict a Python application would pass for the same context."""
    local = {name: value for name, value in context.items() if not isinstance(value, dict)}
    if "targetingKey" in local:
        local["key"] = local.pop("targetingKey")
    return local


def _agrees(answer: dict[str, Any], status: int, resolution: Any) -> bool:
    if status == 400:
        return bool(
            answer["errorCode"] == "TARGETING_KEY_MISSING"
            and resolution.reason is Reason.UNIT_MISSING
        )
    return bool(
        status == 200
        and answer["variant"] == resolution.variant
        and answer["value"] == resolution.value
        and answer["reason"] == OPENFEATURE_REASONS[resolution.reason]
    )


def test_ofrep_serves_what_the_python_sdk_evaluates_locally(
    ofrep: httpx.Client, server: OfrepServer
) -> None:
    """3,000 contexts × one flag each through the single endpoint, and 500 × every flag through
    the bulk one: each answer equals the local SDK's resolution of the same context."""
    with Client(server.url, server.key, flush_interval=60.0, startup_timeout=10.0) as local:
        assert local.stats().snapshot_version == 2
        agreed = checked = 0
        variants: set[tuple[str, str]] = set()
        for index, context in enumerate(_contexts(3000, seed=11)):
            flag = FLAGS[index % len(FLAGS)]
            answer = ofrep.post(f"/evaluate/flags/{flag}", json={"context": context})
            resolution = local.resolve(flag, _local(context))
            checked += 1
            agreed += _agrees(answer.json(), answer.status_code, resolution)
            variants.add((flag, resolution.variant))
        for context in _contexts(500, seed=12):
            items = ofrep.post("/evaluate/flags", json={"context": context}).json()["flags"]
            for item in items:
                resolution = local.resolve(item["key"], _local(context))
                checked += 1
                agreed += _agrees(item, 400 if "errorCode" in item else 200, resolution)
    assert checked == 3000 + 500 * len(FLAGS)
    assert agreed == checked
    # The contexts reach every variant of every flag, so the agreement is not all defaults.
    assert len(variants) == 2 * len(FLAGS)


def test_remote_evaluations_feed_the_exposure_ledger(
    ofrep: httpx.Client, server: OfrepServer
) -> None:
    """search-v2 runs a rollout (40 % of users): every user OFREP evaluated it for is in the
    ledger once, hashed, on the side it was served; killed evaluations add nobody."""
    served: dict[str, bool] = {}
    for index in range(300):
        user = f"remote-{index}"
        for _ in range(2 if index % 3 == 0 else 1):  # repeats are one exposure
            answer = ofrep.post(
                "/evaluate/flags/search-v2", json={"context": {"targetingKey": user}}
            )
            served[user] = answer.json()["variant"] == "treatment"
    assert 60 < sum(served.values()) < 180  # about 40 % exposed
    expected = {
        ledger_unit(server.rollout, user, hashed=True): side for user, side in served.items()
    }
    assert _until(lambda: len(_ledger(server)) == len(expected))
    assert dict(_ledger(server)) == expected

    with server.admin() as admin:
        admin.post("/api/v1/flags/search-v2/kill").raise_for_status()
    for index in range(50):
        killed = ofrep.post(
            "/evaluate/flags/search-v2", json={"context": {"targetingKey": f"killed-{index}"}}
        )
        assert killed.json()["reason"] == "DISABLED"
    time.sleep(2.5)  # more than two writes of the exposures
    assert len(_ledger(server)) == len(expected)


def test_too_many_evaluations_are_answered_429_with_retry_after_in_seconds(
    tmp_path: Path,
) -> None:
    """A key may make ``ofrep_rate`` evaluations a second, in bursts of as many: what is
    answered 200 never exceeds that, and the rest is 429 with a whole number of seconds."""
    rate = 2.0
    with (
        ofrep_server(tmp_path, ofrep_rate=rate) as server,
        server_client(server.url, headers={"X-API-Key": server.key}) as client,
    ):
        started = time.monotonic()
        answers = [
            client.post(
                "/ofrep/v1/evaluate/flags/discount", json={"context": {"targetingKey": "u"}}
            )
            for _ in range(20)
        ]
        elapsed = time.monotonic() - started
    codes = [answer.status_code for answer in answers]
    assert set(codes) <= {200, 429}
    assert codes[:2] == [200, 200]  # the burst
    allowed = codes.count(200)
    assert allowed <= rate + rate * elapsed + 1, (allowed, elapsed)
    refused = [answer for answer in answers if answer.status_code == 429]
    assert refused, f"20 evaluations in {elapsed:.1f} s at {rate:g}/s: none refused"
    for answer in refused:
        assert int(answer.headers["Retry-After"]) >= 1
        assert answer.json()["errorCode"] == "GENERAL"
