"""rollwise as the judge of Argo Rollouts and Flagger, asked with the exact requests those tools
send (Argo's ``web`` metric with a ``jsonBody``, Flagger's webhook payload from its docs), against
a Prometheus whose answers are made by hand per side and window (httpx's MockTransport; the
queries themselves run against a real Prometheus in tests/sources/)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from rollwise.control import ManualClock
from rollwise.core import InputError
from rollwise.core._judgements import load_judgements
from rollwise.server import create_app
from rollwise.sources import Analyses, PrometheusFeed
from rollwise.store import Store

ADMIN = "rw_admin_judge-test"
START = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)
JUDGEMENTS = """
judgements:
  podinfo:
    stratum: 1m
    guards:
      - metric: podinfo.error
        kind: rate
        tolerance: 50%
        source:
          prometheus:
            url: http://prometheus.test
            requests: sum(increase(http_requests_total{pod=~"{variant}.*"}[{window}]))
            events: sum(increase(http_requests_total{pod=~"{variant}.*",code=~"5.."}[{window}]))
            lag: 5s
            failures: 2
"""
CANARY, STABLE = "podinfo-5f9c8d7b4", "podinfo-primary-6d8f7c9a1"


@dataclass
class Fake:
    """Prometheus, answering per side: requests and failures per window (None: down)."""

    rates: dict[str, tuple[int, float]] = field(
        default_factory=lambda: {CANARY: (3000, 0.02), STABLE: (7000, 0.02)}
    )
    down: bool = False
    asked: int = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.asked += 1
        if self.down:  # nothing listens
            raise httpx.ConnectError("connection refused", request=request)
        query = parse_qs(urlsplit(str(request.url)).query)["query"][0]
        side = CANARY if CANARY in query else STABLE
        requests, failing = self.rates[side]
        value = requests * failing if "5.." in query else requests
        result = [{"metric": {}, "value": [0, str(value)]}]
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "vector", "result": result}}
        )


@dataclass
class Judge:
    client: TestClient
    clock: ManualClock
    prometheus: Fake
    viewer: str
    sdk: str


@pytest.fixture
def judge(tmp_path: Path) -> Iterator[Judge]:
    store = Store.open(f"sqlite:///{tmp_path / 'judge.db'}")
    clock = ManualClock(START)
    app = create_app(store, clock, controller=False, admin_token=ADMIN)
    fake = Fake()
    client = httpx.Client(transport=httpx.MockTransport(fake.handler))
    app.state.analyses = Analyses(load_judgements(JUDGEMENTS), PrometheusFeed(store, client=client))
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        viewer = http.post("/api/v1/tokens", json={"name": "argo", "role": "viewer"})
        sdk = http.post("/api/v1/tokens", json={"name": "app", "role": "sdk"})
        yield Judge(http, clock, fake, viewer.json()["secret"], sdk.json()["secret"])
    store.close()


def _argo(judge: Judge, analysis: str = "podinfo-rollout-5f9c8d7b4") -> httpx.Response:
    """What an AnalysisTemplate's web metric sends (examples/argo/analysis-template.yaml)."""
    return judge.client.post(
        "/judge/v1/judgements/podinfo",
        headers={"Authorization": f"Bearer {judge.viewer}", "Content-Type": "application/json"},
        json={"analysis": analysis, "canary": CANARY, "stable": STABLE},
    )


def _flagger(judge: Judge, hook: str, **metadata: str) -> httpx.Response:
    """The payload of Flagger's webhooks, as its docs show it, with the judge's metadata."""
    payload = {
        "name": "podinfo",
        "namespace": "test",
        "phase": "Progressing",
        "checksum": "85d557f47b",
        "metadata": {
            "judgement": "podinfo",
            "canary": CANARY,
            "stable": STABLE,
            "token": judge.viewer,
            **metadata,
        },
    }
    return judge.client.post(
        f"/judge/v1/flagger/{hook}", json=payload, headers={"Authorization": ""}
    )


def test_argo_asks_every_few_seconds_and_the_analysis_stays_one_sequence(judge: Judge) -> None:
    first = _argo(judge)
    assert first.status_code == 200
    assert first.json()["verdict"] == "pending" and first.json()["windows"] == 0
    # The regression: 30 % of the canary's requests fail, 2 % of the stable's.
    judge.prometheus.rates[CANARY] = (3000, 0.30)
    judge.clock.advance(timedelta(minutes=1, seconds=5))
    harm = _argo(judge).json()
    assert harm["verdict"] == "harm" and harm["windows"] == 1
    assert harm["evidence"][0]["exposed"] == [3000, 900]
    assert harm["evidence"][0]["baseline"] == [7000, 140]
    assert "podinfo.error is worse than tolerated" in harm["reasons"][0]
    # Asked again and again within the window: nothing is read again, the answer is the same.
    asked = judge.prometheus.asked
    for _ in range(20):
        again = _argo(judge).json()
        assert (again["verdict"], again["windows"]) == ("harm", 1)
    assert judge.prometheus.asked == asked


def test_a_healthy_canary_becomes_safe_window_by_window(judge: Judge) -> None:
    verdicts = []
    for _ in range(30):
        verdicts.append(_argo(judge, "healthy").json()["verdict"])
        if verdicts[-1] == "safe":
            break
        judge.clock.advance(timedelta(minutes=1))
    assert "harm" not in verdicts
    assert verdicts[0] == "pending" and verdicts[-1] == "safe"


def test_flagger_hooks_answer_by_the_verdict(judge: Judge) -> None:
    # Pending: no promotion, no rollback, the analysis goes on.
    assert _flagger(judge, "confirm-promotion").status_code == 409
    assert _flagger(judge, "rollback").status_code == 409
    assert _flagger(judge, "rollout").status_code == 200
    judge.prometheus.rates[CANARY] = (3000, 0.30)
    judge.clock.advance(timedelta(minutes=1, seconds=5))
    rollback = _flagger(judge, "rollback")
    assert rollback.status_code == 200
    body = rollback.json()
    assert body["verdict"] == "harm" and body["analysis"] == "flagger:test/podinfo:85d557f47b"
    assert _flagger(judge, "confirm-promotion").status_code == 409
    assert _flagger(judge, "rollout").status_code == 409  # a failed check for Flagger


def test_flagger_promotes_only_when_safe(judge: Judge) -> None:
    for _ in range(30):
        answer = _flagger(judge, "confirm-promotion", checksum="healthy")
        if answer.status_code == 200:
            break
        assert answer.json()["verdict"] == "pending"
        judge.clock.advance(timedelta(minutes=1))
    assert answer.status_code == 200 and answer.json()["verdict"] == "safe"


def test_failing_queries_are_an_error_after_failures_in_a_row(judge: Judge) -> None:
    _argo(judge)
    judge.prometheus.down = True
    judge.clock.advance(timedelta(minutes=1, seconds=5))
    once = _argo(judge)
    assert once.status_code == 200 and "ConnectError" in once.json()["error"]
    twice = _argo(judge)
    assert twice.status_code == 502  # failures: 2 in a row; Argo counts it as an Error
    judge.prometheus.down = False
    recovered = _argo(judge)
    assert recovered.status_code == 200 and recovered.json()["windows"] == 1


def test_bad_questions_are_refused_and_change_nothing(judge: Judge) -> None:
    unknown = judge.client.post(
        "/judge/v1/judgements/nope",
        headers={"Authorization": f"Bearer {judge.viewer}"},
        json={"analysis": "a", "canary": CANARY, "stable": STABLE},
    )
    assert unknown.status_code == 404 and "judgements: podinfo" in unknown.json()["message"]
    _argo(judge, "a")
    moved = judge.client.post(
        "/judge/v1/judgements/podinfo",
        headers={"Authorization": f"Bearer {judge.viewer}"},
        json={"analysis": "a", "canary": "other", "stable": STABLE},
    )
    assert moved.status_code == 409 and "name a new analysis" in moved.json()["message"]
    assert _flagger(judge, "rollback", judgement="").status_code == 422
    # A selector cannot end the PromQL string it is pasted into.
    escape = 'x"} or vector(1) #'
    assert _flagger(judge, "rollback", canary=escape).status_code == 422
    injected = judge.client.post(
        "/judge/v1/judgements/podinfo",
        headers={"Authorization": f"Bearer {judge.viewer}"},
        json={"analysis": "b", "canary": escape, "stable": STABLE},
    )
    assert injected.status_code == 422
    assert _flagger(judge, "rollback", token="rw_wrong").status_code == 401
    assert _flagger(judge, "rollback", token=judge.sdk).status_code == 403
    assert (
        judge.client.post(
            "/judge/v1/judgements/podinfo",
            headers={"Authorization": ""},
            json={"analysis": "a", "canary": CANARY, "stable": STABLE},
        ).status_code
        == 401
    )
    assert (
        judge.client.post(
            "/judge/v1/judgements/podinfo",
            headers={"Authorization": f"Bearer {judge.viewer}"},
            json={"analysis": "a\u0000b", "canary": CANARY, "stable": STABLE},
        ).status_code
        == 422
    )


def test_a_flags_rollout_is_judged_for_argo_too(judge: Judge) -> None:
    flags = "flags:\n  new-search: {variants: [off, on]}\n"
    plan = (
        "flag: new-search\nunit: user\nguards: [{metric: search.error, kind: rate, "
        "tolerance: 50%}]\nstages: [{name: some, audience: {percent: 10}}, "
        "{name: all, audience: {percent: 100}}]\n"
    )
    judge.client.put(
        "/api/v1/flags", content=flags + "metrics:\n  search.error: {kind: rate}\n"
    ).raise_for_status()
    started = judge.client.post("/api/v1/rollouts", json={"plan": plan})
    viewer = {"Authorization": f"Bearer {judge.viewer}"}
    pending = judge.client.get("/judge/v1/flags/new-search", headers=viewer).json()
    assert (pending["verdict"], pending["rollout"], pending["stage"]) == (
        "pending",
        started.json()["id"],
        0,
    )
    rollback = f"/api/v1/rollouts/{started.json()['id']}/rollback"
    judge.client.post(rollback, json={"reason": "by hand"}).raise_for_status()
    assert (
        judge.client.get("/judge/v1/flags/new-search", headers=viewer).json()["verdict"] == "harm"
    )
    assert judge.client.get("/judge/v1/flags/nope", headers=viewer).status_code == 404


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("        source:\n", "        xsource:\n"), "xsource"),
        (("kind: rate", "kind: gauge"), "a gauge's limits|no gauges|max"),
        (("  podinfo:", "  'pod info':"), "may hold only letters"),
    ],
)
def test_bad_judgements_files_are_refused_with_the_line(
    edit: tuple[str, str], message: str
) -> None:
    with pytest.raises(InputError) as refused:
        load_judgements(JUDGEMENTS.replace(*edit, 1), "judgements.yaml")
    assert any(part in str(refused.value) for part in message.split("|")), str(refused.value)
    assert "judgements.yaml" in str(refused.value)


def test_a_guard_without_a_source_is_refused() -> None:
    text = JUDGEMENTS.replace(JUDGEMENTS[JUDGEMENTS.index("        source:") :], "")
    with pytest.raises(InputError, match="needs a Prometheus source"):
        load_judgements(text)


def test_the_example_manifests_ask_what_the_endpoints_answer() -> None:
    """examples/argo and examples/flagger call the routes above with the fields they read, and
    examples/judgements.yaml is a judgements file the server takes."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    text = (examples / "judgements.yaml").read_text()
    assert list(load_judgements(text, "examples/judgements.yaml")) == ["podinfo"]
    template = next(yaml.safe_load_all((examples / "argo" / "analysis-template.yaml").read_text()))
    (metric,) = template["spec"]["metrics"]
    web = metric["provider"]["web"]
    assert web["method"] == "POST" and web["url"].endswith("/judge/v1/judgements/podinfo")
    assert set(web["jsonBody"]) == {"analysis", "canary", "stable"}
    assert metric["successCondition"] == 'result.verdict == "safe"'
    assert metric["failureCondition"] == 'result.verdict == "harm"'
    canary = yaml.safe_load((examples / "flagger" / "canary.yaml").read_text())
    hooks = {hook["type"]: hook for hook in canary["spec"]["analysis"]["webhooks"]}
    assert set(hooks) == {"rollout", "confirm-promotion", "rollback"}
    for kind, hook in hooks.items():
        assert hook["url"].endswith(f"/judge/v1/flagger/{kind}")
        assert {"judgement", "canary", "stable", "token"} <= set(hook["metadata"])


def test_a_judgement_split_by_tenant_calls_harm_for_one_tenant(tmp_path: Path) -> None:
    """One tenant of ten regresses on the canary (10 % vs 1 %), too little to move the whole
    traffic past the tolerance: the tenant's segment is judged harm, so the analysis is."""
    text = JUDGEMENTS.replace("kind: rate", "kind: rate\n        by: [tenant]", 1)
    tenants = [f"t{index}" for index in range(10)]

    def handler(request: httpx.Request) -> httpx.Response:
        query = parse_qs(urlsplit(str(request.url)).query)["query"][0]
        canary = CANARY in query
        result = []
        for tenant in tenants:
            requests = 300 if canary else 700
            failing = 0.10 if canary and tenant == "t3" else 0.01
            value = requests * failing if "5.." in query else requests
            result.append({"metric": {"tenant": tenant}, "value": [0, str(value)]})
        body = {"status": "success", "data": {"resultType": "vector", "result": result}}
        return httpx.Response(200, json=body)

    store = Store.open(f"sqlite:///{tmp_path / 'tenants.db'}")
    feed = PrometheusFeed(store, client=httpx.Client(transport=httpx.MockTransport(handler)))
    analyses = Analyses(load_judgements(text), feed)
    verdicts = []
    for minute in range(10):
        now = START + timedelta(minutes=minute, seconds=5)
        judged = analyses.judge("podinfo", "tenants", CANARY, STABLE, now)
        verdicts.append(judged.verdict.value)
        if judged.verdict.value == "harm":
            break
    store.close()
    assert verdicts[-1] == "harm", verdicts
    (whole,) = judged.decision.verdicts
    assert whole.verdict.value != "harm"  # the whole traffic alone would not have said so
    harmed = [v for v in judged.decision.segment_verdicts if v.verdict.value == "harm"]
    assert [v.segment for v in harmed] == [("tenant", "t3")]
