"""The OpenFeature community's own OFREP clients against a live rollwise server: the Python
``openfeature-provider-ofrep`` through ``openfeature-sdk``, and the JavaScript
``@openfeature/ofrep-provider`` through ``@openfeature/server-sdk`` run by Node (installed with
npm in ``tests/server/ofrep_js``; skipped, saying why, where Node or npm is absent). Each gets,
for every context, what the Python SDK evaluates locally."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode

from rollwise import Client
from rollwise.core import Reason
from rollwise.core._remote import OPENFEATURE_REASONS
from rollwise.store import _schema as t
from tests.server._ofrep_server import OfrepServer, ofrep_server
from tests.server.test_ofrep import FLAGS, _contexts, _local

JS = Path(__file__).resolve().parent / "ofrep_js"

#: The default each flag is asked with: its type decides the typed call.
DEFAULTS: dict[str, Any] = {
    "new-checkout": False,
    "search-v2": "none",
    "page-size": 0,
    "discount": 0.5,
}


#: The flags whose unit the targeting key supplies.
KEYED = frozenset({"page-size", "search-v2"})


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OfrepServer]:
    with ofrep_server(tmp_path) as live:
        yield live


def _expected(local: Client, flag: str, context: dict[str, Any]) -> dict[str, Any]:
    """What an OpenFeature client should report for ``context``, from the local SDK."""
    resolution = local.resolve(flag, _local(context))
    # page-size and search-v2 bucket by the targeting key (``key``, ``user``): without one, the
    # client is told; new-checkout buckets by tenant, and a context without one is no error.
    if resolution.reason is Reason.UNIT_MISSING and flag in KEYED:
        return {"value": DEFAULTS[flag], "errorCode": "TARGETING_KEY_MISSING"}
    return {
        "value": resolution.value,
        "variant": resolution.variant,
        "reason": OPENFEATURE_REASONS[resolution.reason],
        "errorCode": None,
    }


def _python_details(client: Any, flag: str, context: dict[str, Any]) -> dict[str, Any]:
    attributes = {name: value for name, value in context.items() if name != "targetingKey"}
    evaluation_context = EvaluationContext(context.get("targetingKey"), attributes)
    default = DEFAULTS[flag]
    typed = {
        bool: client.get_boolean_details,
        str: client.get_string_details,
        int: client.get_integer_details,
        float: client.get_float_details,
    }[type(default)]
    details = typed(flag, default, evaluation_context)
    code = details.error_code.value if details.error_code is not None else None
    return {
        "value": details.value,
        "variant": details.variant,
        "reason": str(details.reason.value) if details.reason is not None else None,
        "errorCode": code,
    }


def _matches(got: dict[str, Any], expected: dict[str, Any]) -> bool:
    return all(got.get(name) == value for name, value in expected.items())


def test_the_python_ofrep_provider(server: OfrepServer) -> None:
    api.set_provider(
        OFREPProvider(
            server.url, headers_factory=lambda: {"Authorization": f"Bearer {server.key}"}
        ),
        domain="rollwise-ofrep-test",
    )
    client = api.get_client("rollwise-ofrep-test")
    acme = EvaluationContext("u-1", {"tenant": "acme", "app_version": "2.5.0"})
    on = client.get_boolean_details("new-checkout", False, acme)
    assert (on.value, on.variant, on.reason, on.error_code) == (True, "on", "TARGETING_MATCH", None)
    assert on.flag_metadata["rollwise.reason"] == "rule_match"
    large = client.get_integer_details("page-size", 0, EvaluationContext("u", {"roles": ["admin"]}))
    assert large.value == 50
    assert client.get_float_value("discount", 0.5, EvaluationContext("u", {"age": 70})) == 0.15

    missing = client.get_boolean_details("nope", True, acme)
    assert (missing.value, missing.error_code) == (True, ErrorCode.FLAG_NOT_FOUND)
    no_key = client.get_integer_details("page-size", 7, EvaluationContext(None, {"tier": "pro"}))
    assert (no_key.value, no_key.error_code) == (7, ErrorCode.TARGETING_KEY_MISSING)
    mismatch = client.get_string_details("new-checkout", "x", acme)
    assert (mismatch.value, mismatch.error_code) == ("x", ErrorCode.TYPE_MISMATCH)

    with Client(server.url, server.key, flush_interval=60.0, startup_timeout=10.0) as local:
        contexts = _contexts(400, seed=21)
        mismatched = [
            (flag, context, got, expected)
            for index, context in enumerate(contexts)
            for flag in (FLAGS[index % len(FLAGS)],)
            if not _matches(
                got := _python_details(client, flag, context),
                expected := _expected(local, flag, context),
            )
        ]
    assert mismatched == []


def test_the_python_provider_waits_out_a_429(tmp_path: Path) -> None:
    with ofrep_server(tmp_path, ofrep_rate=1.0) as server:
        provider = OFREPProvider(server.url, headers_factory=lambda: {"X-API-Key": server.key})
        api.set_provider(provider, domain="rollwise-ofrep-429")
        client = api.get_client("rollwise-ofrep-429")
        context = EvaluationContext("u", {"age": 70})
        assert client.get_float_value("discount", 0.5, context) == 0.15
        limited = client.get_float_details("discount", 0.5, context)
        assert (limited.value, limited.error_code) == (0.5, ErrorCode.GENERAL)
        assert provider.retry_after is not None  # it read Retry-After, in seconds
        paused = client.get_float_details("discount", 0.5, context)
        assert "paused" in (paused.error_message or "")


def _node_script(script: str, *arguments: str) -> Any:
    """Run ``script`` of ``ofrep_js`` with Node, and read what it printed as JSON."""
    node = _node()
    ran = subprocess.run(
        [node, script, *arguments], cwd=JS, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    return json.loads(ran.stdout)


def _node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are needed to run the JavaScript OFREP provider")
    if not (JS / "node_modules" / "@openfeature" / "ofrep-provider").exists():
        installed = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert installed.returncode == 0, f"npm ci failed in {JS}:\n{installed.stderr[-2000:]}"
    return node


def test_the_javascript_ofrep_provider(server: OfrepServer, tmp_path: Path) -> None:
    contexts = _contexts(400, seed=31)
    cases = [
        {
            "flag": FLAGS[index % len(FLAGS)],
            "default": DEFAULTS[FLAGS[index % len(FLAGS)]],
            "context": context,
        }
        for index, context in enumerate(contexts)
    ]
    # The typed calls the README shows, and the errors a client must tell apart.
    cases += [
        {
            "flag": "new-checkout",
            "default": False,
            "context": {"targetingKey": "u", "tenant": "acme", "app_version": "2.5.0"},
        },
        {"flag": "nope", "default": True, "context": {"targetingKey": "u"}},
        {"flag": "new-checkout", "default": "text", "context": {"tenant": "acme"}},
    ]
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    results = _node_script("evaluate.mjs", server.url, server.key, str(path))
    assert len(results) == len(cases)
    on, missing, mismatch = results[-3:]
    assert (on["value"], on["variant"], on["reason"]) == (True, "on", "TARGETING_MATCH")
    assert (missing["value"], missing["errorCode"]) == (True, "FLAG_NOT_FOUND")
    assert (mismatch["value"], mismatch["errorCode"]) == ("text", "TYPE_MISMATCH")
    with Client(server.url, server.key, flush_interval=60.0, startup_timeout=10.0) as local:
        mismatched = [
            (case, got, expected)
            for case, got in zip(cases[:-3], results[:-3], strict=True)
            if not _matches(got, expected := _expected(local, case["flag"], case["context"]))
        ]
    assert mismatched == []


def test_a_node_service_reports_its_outcomes_with_the_documented_example(
    server: OfrepServer,
) -> None:
    """examples/ofrep/report-outcomes.mjs, as docs/ofrep.md shows it: the counts a Node service
    posts are what the store holds for the rollout, side by side."""
    sent = _node_script("outcomes.mjs", server.url, server.key, "300")
    assert sent["exposed"][0] > 50 and sent["baseline"][0] > 50  # 40 % of users exposed
    aggregates = t.aggregates
    with server.store.engine.connect() as connection:
        stored = {
            ("exposed" if exposed else "baseline"): [int(requests), int(events)]
            for exposed, requests, events in connection.execute(
                sa.select(
                    aggregates.c.exposed,
                    sa.func.sum(aggregates.c.requests),
                    sa.func.sum(aggregates.c.events),
                )
                .where(
                    aggregates.c.rollout_id == server.rollout,
                    aggregates.c.metric == "checkout.error",
                    aggregates.c.segment == "",
                )
                .group_by(aggregates.c.exposed)
            )
        }
    assert stored == sent
