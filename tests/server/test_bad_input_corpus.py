"""The bad-input corpus: every ordinary mistake an operator, a script or an SDK can send is
answered with the right status, the one error body with its code and a message that says what
is wrong — and stores nothing at all (no audit entry, snapshot version, plan, rollout, token,
aggregate, ledger entry or gauge reading).

File-shaped cases (flags files, plans) live under tests/corpus/ with their expected answers in
tests/corpus/cases.yaml; request-shaped ones are the table below.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import pytest
import yaml
from fastapi.testclient import TestClient

from rollwise.control import ManualClock
from rollwise.core import RolloutAction
from rollwise.core.judgement import LATENCY_BUCKETS
from rollwise.server import create_app
from rollwise.store import Store

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests/corpus"
FLAGS = (ROOT / "examples/checkout/flags.yaml").read_text()
ADMIN = "rw_admin_corpus-secret"
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
MIB = 1024 * 1024
#: The plan every rollout of the corpus runs: canary (a segment), half (approval), all.
PLAN = """
flag: new-checkout
unit: tenant
variant: on
guards:
  - {metric: checkout.error, kind: rate, tolerance: 10%}
stages:
  - {name: canary, audience: {segments: [pilot-tenants]}, bake: 10m, min_samples: 1000}
  - {name: half, audience: {percent: 50}, bake: 10m, min_samples: 1000, approval: required}
  - {name: all, audience: {percent: 100}, holdback: 2%}
max_stage_duration: 2d
rollback: {to: off}
"""


class Response(Protocol):
    """What the test client answers (httpx's or httpx2's response)."""

    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...

    def json(self) -> Any: ...


# --- the server and what it holds ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Given:
    """What a case's request may name: the rollout and plan set up, tokens of each kind."""

    rollout: int | None
    tokens: Mapping[str, str]
    revoked: str
    now: datetime


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated database, copied for each case (migrating anew costs more)."""
    path = tmp_path_factory.mktemp("corpus") / "migrated.db"
    Store.open(f"sqlite:///{path}").close()
    return path


@pytest.fixture
def server(migrated: Path, tmp_path: Path) -> Iterator[tuple[TestClient, Store, ManualClock]]:
    shutil.copyfile(migrated, tmp_path / "corpus.db")
    store = Store.open(f"sqlite:///{tmp_path / 'corpus.db'}")
    clock = ManualClock(START)
    app = create_app(store, clock, controller=False, admin_token=ADMIN)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN}"
        yield client, store, clock
    store.close()


def _ok(response: Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _given(client: TestClient, store: Store, clock: ManualClock, state: str) -> Given:
    """Bring a fresh server into ``state`` (one of the ``given`` names of the corpus)."""
    tokens = {
        role: _ok(client.post("/api/v1/tokens", json={"name": role, "role": role}), 201)["secret"]
        for role in ("operator", "viewer", "sdk")
    }
    revoked = _ok(client.post("/api/v1/tokens", json={"name": "gone", "role": "admin"}), 201)
    _ok(client.delete(f"/api/v1/tokens/{revoked['id']}"))
    tokens["revoked"] = revoked["secret"]
    soon = (START + timedelta(hours=1)).isoformat()
    expiring = {"name": "brief", "role": "admin", "expires_at": soon}
    tokens["expired"] = _ok(client.post("/api/v1/tokens", json=expiring), 201)["secret"]
    clock.advance(timedelta(hours=2))
    rollout = None
    if state != "an empty server":
        _ok(client.put("/api/v1/flags", content=FLAGS))
    if state == "a killed flag":
        _ok(client.post("/api/v1/flags/new-checkout/kill"))
    if state.endswith(("rollout", "stage")):
        plan = _ok(client.post("/api/v1/plans", content=PLAN), 201)
        rollout = _ok(client.post("/api/v1/rollouts", json={"plan_id": plan["id"]}), 201)["id"]
        path = f"/api/v1/rollouts/{rollout}"
        if state == "a paused rollout":
            _ok(client.post(f"{path}/pause", json={"reason": "corpus"}))
        elif state == "a rolled-back rollout":
            _ok(client.post(f"{path}/rollback", json={"reason": "corpus"}))
        elif state in ("an approved stage", "a rollout at its second stage"):
            _ok(client.post(f"{path}/approve", json={"stage": "half"}))
        if state in ("a completed rollout", "a rollout at its second stage"):
            # The controller's moves, made directly: what it would do with enough evidence.
            expand = state == "a rollout at its second stage"
            store.transition(
                store.rollout(rollout),
                action=RolloutAction.EXPAND if expand else RolloutAction.COMPLETE,
                actor="controller",
                now=clock.now(),
                stage=1 if expand else None,
            )
    known = {
        "an empty server",
        "applied flags",
        "a killed flag",
        "a running rollout",
        "a paused rollout",
        "a rolled-back rollout",
        "a completed rollout",
        "an approved stage",
        "a rollout at its second stage",
    }
    assert state in known, f"unknown state {state!r}"
    return Given(rollout, tokens, revoked["id"], clock.now())


def _stored(client: TestClient, store: Store) -> dict[str, Any]:
    """Everything a request could have stored, read through the API (and, for SDK data that
    the API shows only in part, from the store)."""
    rollouts = _ok(client.get("/api/v1/rollouts"))
    ids = [r["id"] for r in rollouts]
    return {
        "audit": _ok(client.get("/api/v1/audit", params={"limit": 1000})),
        "flags": _ok(client.get("/api/v1/flags")),
        "flags_text": store.flags_text(),
        "rollouts": rollouts,
        # The plans set up, and the next id (a refused start from text must not store one).
        "plans": [client.get(f"/api/v1/plans/{i}").status_code for i in range(1, 4)],
        "tokens": _ok(client.get("/api/v1/tokens")),
        "ledgers": [_ok(client.get(f"/api/v1/rollouts/{i}/ledger")) for i in ids],
        "aggregates": store.data_fingerprints(ids),
        "gauges": store.gauge_versions(),
    }


# --- cases -------------------------------------------------------------------------------------

#: A request body: bytes as they are, JSON (a value, or built from what was set up), or None.
Body = bytes | Callable[[Given], bytes] | None
Payload = object


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    given: str
    request: str
    status: int
    error: str | None = None
    message: str = ""
    body: Body = None
    payload: Payload = None
    #: Whose token: admin, operator, viewer, sdk, revoked, expired, none, basic.
    auth: str = "admin"
    findings: tuple[str, ...] | None = None
    expect: Mapping[str, object] = field(default_factory=dict)
    chunked: bool = False
    content_type: str | None = None
    xfail: str | None = None


_AUTH = {"none": "", "basic": "Basic YWRtaW46YWRtaW4="}


def _send(client: TestClient, case: Case, given: Given) -> Response:
    method, _, target = case.request.partition(" ")
    url = target.format(rollout=given.rollout, revoked=given.revoked)
    headers = {}
    if case.auth in _AUTH:
        headers["Authorization"] = _AUTH[case.auth]
    elif case.auth != "admin":
        headers["Authorization"] = f"Bearer {given.tokens[case.auth]}"
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    body = case.body(given) if callable(case.body) else case.body
    if case.payload is not None:
        payload = case.payload(given) if callable(case.payload) else case.payload
        return client.request(method, url, json=payload, headers=headers)
    if body is not None and case.chunked:
        chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
        return client.request(method, url, content=chunks, headers=headers)
    return client.request(method, url, content=body, headers=headers)


def _answers_as_expected(case: Case, response: Response) -> None:
    assert response.status_code == case.status, response.text
    body = response.json()
    if case.error is not None:
        assert set(body) == {"error", "message", "details"}, body
        assert body["error"] == case.error, body
        assert "\n" not in body["message"]
        assert case.message in body["message"], body["message"]
        assert isinstance(body["details"], dict)
    elif case.message:
        assert case.message in body.get("message", ""), body
    if case.findings is not None:
        errors = [f["code"] for f in body["details"]["findings"] if f["severity"] == "error"]
        assert sorted(errors) == sorted(case.findings), body["details"]["findings"]
    for key, value in case.expect.items():
        assert body[key] == value, body


def _corpus() -> list[Case]:
    """The file-shaped cases of tests/corpus/cases.yaml; each plan twice (stored, and started
    from its text)."""
    index = yaml.safe_load((CORPUS / "cases.yaml").read_text())
    cases = []
    for entry in index["flags"]:
        cases.append(
            Case(
                id=entry["id"],
                given=entry["given"],
                request=entry["request"],
                status=entry["status"],
                error=entry.get("error"),
                message=entry.get("message", ""),
                body=(CORPUS / entry["file"]).read_bytes(),
                expect=entry.get("expect", {}),
            )
        )
    for entry in index["plans"]:
        text = (CORPUS / entry["file"]).read_bytes()
        findings = tuple(entry["findings"]) if "findings" in entry else None
        shared: dict[str, Any] = {
            "given": "applied flags",
            "status": entry["status"],
            "error": entry["error"],
            "message": entry["message"],
            "findings": findings,
        }
        cases.append(Case(id=entry["id"], request="POST /api/v1/plans", body=text, **shared))
        cases.append(
            Case(
                id=f"{entry['id']}, when started from its text",
                request="POST /api/v1/rollouts",
                payload={"plan": text.decode()},
                **shared,
            )
        )
    return cases


def _batch(given: Given, **changes: object) -> dict[str, Any]:
    """A good event batch for the running rollout, with ``changes`` to its first aggregate
    (``exposure.…`` and ``gauge.…`` keys change the exposure or the gauge reading)."""
    minute = int(given.now.timestamp() // 60)
    aggregate: dict[str, Any] = {
        "rollout": given.rollout,
        "stage": 0,
        "window": minute,
        "exposed": True,
        "segment": "",
        "metric": "checkout.error",
        "requests": 100,
        "events": 1,
    }
    exposure: dict[str, Any] = {
        "rollout": given.rollout,
        "unit": "acme",
        "stage": 0,
        "exposed": True,
        "at": given.now.isoformat(),
    }
    gauge: dict[str, Any] = {
        "metric": "payments.queue_depth",
        "value": 12.5,
        "at": given.now.isoformat(),
    }
    for key, value in changes.items():
        target, _, name = key.rpartition("__")
        {"": aggregate, "exposure": exposure, "gauge": gauge}[target][name] = value
    return {
        "batch": f"corpus-{uuid.uuid4()}",
        "aggregates": [aggregate],
        "exposures": [exposure],
        "gauges": [gauge],
    }


def _events(**changes: object) -> Callable[[Given], dict[str, Any]]:
    return lambda given: _batch(given, **changes)


def _events_with(literal: str) -> Callable[[Given], bytes]:
    """A batch whose gauge value is written as ``literal`` (what json.dumps will not write)."""
    return lambda given: json.dumps(_batch(given)).replace("12.5", literal).encode()


def _without_events(given: Given) -> dict[str, Any]:
    """An aggregate that says ``errors`` where the field is ``events``."""
    batch = _batch(given, requests=1000)
    aggregate = batch["aggregates"][0]
    aggregate["errors"] = aggregate.pop("events") * 400
    return batch


def _deep(opening: str, closing: str, depth: int = 100_000) -> bytes:
    return (opening * depth + "x" + closing * depth).encode()


_RUNNING = "a running rollout"
_FLAGS = "applied flags"
_OVER_A_MIB = b"# padding\n" * (MIB // 10 + 1)
_2_31, _2_63, _2_64 = 2**31, 2**63, 2**64

# fmt: off
REQUESTS = [
    # --- a second rollout, approvals, operator actions out of turn ---------------------------
    Case("a second start of a running flag from its stored plan is a conflict naming the live rollout", _RUNNING, "POST /api/v1/rollouts", 409, "conflict", "flag 'new-checkout' already has a live rollout (1, running)", payload={"plan_id": 1}),
    Case("a second start of a running flag from plan text is a conflict and stores no plan version", _RUNNING, "POST /api/v1/rollouts", 409, "conflict", "already has a live rollout (1, running)", payload={"plan": PLAN}),
    Case("a second start of a paused flag is a conflict: paused is live", "a paused rollout", "POST /api/v1/rollouts", 409, "conflict", "already has a live rollout (1, paused)", payload={"plan_id": 1}),
    Case("a start of a plan that does not exist is not found", _FLAGS, "POST /api/v1/rollouts", 404, "not_found", "no plan 999", payload={"plan_id": 999}),
    Case("approving a stage that needs no approval is a conflict saying so", "a rollout at its second stage", "POST /api/v1/rollouts/{rollout}/approve", 409, "conflict", "stage 'all' does not require approval", payload={"stage": "all"}),
    Case("approving the stage already running is a conflict", _RUNNING, "POST /api/v1/rollouts/{rollout}/approve", 409, "conflict", "stage 'canary' was entered already", payload={"stage": "canary"}),
    Case("approving a stage already left behind is a conflict", "a rollout at its second stage", "POST /api/v1/rollouts/{rollout}/approve", 409, "conflict", "stage 'half' was entered already; the rollout is at stage 'half'", payload={"stage": "half"}),
    Case("approving a stage twice is a conflict", "an approved stage", "POST /api/v1/rollouts/{rollout}/approve", 409, "conflict", "stage 'half' is approved already", payload={"stage": "half"}),
    Case("approving a stage beyond the next one is a conflict naming the next", _RUNNING, "POST /api/v1/rollouts/{rollout}/approve", 409, "conflict", "stage 'all' is not next: the rollout is at 'canary', next is 'half'", payload={"stage": "all"}),
    Case("approving on a completed rollout is a conflict", "a completed rollout", "POST /api/v1/rollouts/{rollout}/approve", 409, "conflict", "cannot approve a rollout that is completed", payload={"stage": "half"}),
    Case("approving on a rolled-back rollout is a conflict", "a rolled-back rollout", "POST /api/v1/rollouts/{rollout}/approve", 409, "conflict", "cannot approve a rollout that is rolled_back; it must be paused or running", payload={"stage": "half"}),
    Case("approving a stage the plan does not have is refused naming the plan's stages", _RUNNING, "POST /api/v1/rollouts/{rollout}/approve", 422, "refused", "the plan has no stage 'nope'; stages: canary, half, all", payload={"stage": "nope"}),
    Case("approving a stage name holding a NUL byte is refused", _RUNNING, "POST /api/v1/rollouts/{rollout}/approve", 422, "refused", "the plan has no stage", payload={"stage": "ha\x00lf"}),
    Case("approving an empty stage name is invalid", _RUNNING, "POST /api/v1/rollouts/{rollout}/approve", 422, "invalid", "body.stage: String should have at least 1 character", payload={"stage": ""}),
    Case("approving without naming a stage is invalid", _RUNNING, "POST /api/v1/rollouts/{rollout}/approve", 422, "invalid", "body.stage: Field required", payload={}),
    Case("approving a stage given as a number is invalid", _RUNNING, "POST /api/v1/rollouts/{rollout}/approve", 422, "invalid", "body.stage: Input should be a valid string", payload={"stage": 1}),
    Case("approving on a rollout that does not exist is not found", _RUNNING, "POST /api/v1/rollouts/77/approve", 404, "not_found", "no rollout 77", payload={"stage": "half"}),
    Case("pausing a paused rollout is a conflict saying it must be running", "a paused rollout", "POST /api/v1/rollouts/{rollout}/pause", 409, "conflict", "cannot pause a rollout that is paused; it must be running", payload={}),
    Case("resuming a running rollout is a conflict saying it must be paused", _RUNNING, "POST /api/v1/rollouts/{rollout}/resume", 409, "conflict", "cannot resume a rollout that is running; it must be paused", payload={}),
    Case("rolling back a rolled-back rollout is a conflict", "a rolled-back rollout", "POST /api/v1/rollouts/{rollout}/rollback", 409, "conflict", "cannot rollback a rollout that is rolled_back; it must be paused or running", payload={"reason": "again"}),
    Case("rolling back a completed rollout is a conflict", "a completed rollout", "POST /api/v1/rollouts/{rollout}/rollback", 409, "conflict", "cannot rollback a rollout that is completed", payload={}),
    Case("pausing a completed rollout is a conflict", "a completed rollout", "POST /api/v1/rollouts/{rollout}/pause", 409, "conflict", "cannot pause a rollout that is completed", payload={}),
    Case("resuming a rolled-back rollout is a conflict: it comes back only as a new rollout", "a rolled-back rollout", "POST /api/v1/rollouts/{rollout}/resume", 409, "conflict", "cannot resume a rollout that is rolled_back; it must be paused", payload={}),
    Case("pausing a rollout that does not exist is not found", _RUNNING, "POST /api/v1/rollouts/77/pause", 404, "not_found", "no rollout 77", payload={}),
    Case("a pause with an unknown field is invalid naming it", _RUNNING, "POST /api/v1/rollouts/{rollout}/pause", 422, "invalid", "body.why: Extra inputs are not permitted", payload={"reason": "look", "why": "typo"}),
    Case("a pause whose reason is a number is invalid", _RUNNING, "POST /api/v1/rollouts/{rollout}/pause", 422, "invalid", "body.reason: Input should be a valid string", payload={"reason": 5}),
    Case("a pause whose reason is over 1000 characters is invalid", _RUNNING, "POST /api/v1/rollouts/{rollout}/pause", 422, "invalid", "body.reason: String should have at most 1000 characters", payload={"reason": "x" * 1001}),
    Case("a pause without a body is invalid", _RUNNING, "POST /api/v1/rollouts/{rollout}/pause", 422, "invalid", "body: Field required"),
    Case("a pause whose reason holds a NUL byte is invalid, like every other name the API keeps", _RUNNING, "POST /api/v1/rollouts/{rollout}/pause", 422, "invalid", "control character", payload={"reason": "disk\x00full"}),
    Case("a rollback whose reason holds a terminal escape is invalid, so the audit log cannot repaint a terminal", _RUNNING, "POST /api/v1/rollouts/{rollout}/rollback", 422, "invalid", "control character", payload={"reason": "\x1b[2J\x1b[Hall good"}),
    # --- ids out of range --------------------------------------------------------------------
    Case("a rollout id of 2^31 is invalid, naming the largest id", _RUNNING, f"GET /api/v1/rollouts/{_2_31}", 422, "invalid", "path.rollout_id: Input should be less than or equal to 2147483647"),
    Case("a rollout id of 2^63 is invalid", _RUNNING, f"GET /api/v1/rollouts/{_2_63}", 422, "invalid", "less than or equal to 2147483647"),
    Case("pausing rollout 2^63 is invalid, not a database error", _RUNNING, f"POST /api/v1/rollouts/{_2_63}/pause", 422, "invalid", "path.rollout_id", payload={}),
    Case("approving on rollout 2^64 is invalid", _RUNNING, f"POST /api/v1/rollouts/{_2_64}/approve", 422, "invalid", "path.rollout_id", payload={"stage": "half"}),
    Case("a plan id of 2^31 is invalid", _RUNNING, f"GET /api/v1/plans/{_2_31}", 422, "invalid", "path.plan_id: Input should be less than or equal to 2147483647"),
    Case("a negative rollout id is invalid", _RUNNING, "GET /api/v1/rollouts/-1", 422, "invalid", "path.rollout_id: Input should be greater than or equal to 1"),
    Case("rolling back rollout -1 is invalid", _RUNNING, "POST /api/v1/rollouts/-1/rollback", 422, "invalid", "greater than or equal to 1", payload={}),
    Case("plan id 0 is invalid", _RUNNING, "GET /api/v1/plans/0", 422, "invalid", "path.plan_id: Input should be greater than or equal to 1"),
    Case("a fractional rollout id is invalid", _RUNNING, "GET /api/v1/rollouts/1.5/decisions", 422, "invalid", "path.rollout_id: Input should be a valid integer"),
    Case("a rollout id that is a word is invalid", _RUNNING, "GET /api/v1/rollouts/abc/ledger", 422, "invalid", "path.rollout_id: Input should be a valid integer"),
    Case("starting plan 2^31 is invalid", _FLAGS, "POST /api/v1/rollouts", 422, "invalid", "body.plan_id: Input should be less than or equal to 2147483647", payload={"plan_id": _2_31}),
    Case("starting plan 2^63 is invalid", _FLAGS, "POST /api/v1/rollouts", 422, "invalid", "body.plan_id: Input should be less than or equal to 2147483647", payload={"plan_id": _2_63}),
    Case("starting plan -1 is invalid", _FLAGS, "POST /api/v1/rollouts", 422, "invalid", "body.plan_id: Input should be greater than or equal to 1", payload={"plan_id": -1}),
    # --- strict types and shapes -----------------------------------------------------------------
    Case("a plan id given as a string is invalid: types are strict", _FLAGS, "POST /api/v1/rollouts", 422, "invalid", "body.plan_id: Input should be a valid integer", payload={"plan_id": "10"}),
    Case("a plan id given as true is invalid", _FLAGS, "POST /api/v1/rollouts", 422, "invalid", "body.plan_id: Input should be a valid integer", payload={"plan_id": True}),
    Case("a plan id given as 1.0 is invalid", _FLAGS, "POST /api/v1/rollouts", 422, "invalid", "body.plan_id: Input should be a valid integer", payload={"plan_id": 1.0}),
    Case("a start naming neither a plan id nor a plan is invalid", _FLAGS, "POST /api/v1/rollouts", 422, "invalid", "give exactly one of plan_id (a stored plan) or plan (its YAML)", payload={}),
    Case("a start naming both a plan id and a plan is invalid", _FLAGS, "POST /api/v1/rollouts", 422, "invalid", "give exactly one of plan_id", payload={"plan_id": 1, "plan": PLAN}),
    Case("a start with a null plan id is invalid", _FLAGS, "POST /api/v1/rollouts", 422, "invalid", "give exactly one of plan_id", payload={"plan_id": None}),
    Case("a start with an unknown field is invalid naming it", _FLAGS, "POST /api/v1/rollouts", 422, "invalid", "body.force: Extra inputs are not permitted", payload={"plan": PLAN, "force": True}),
    Case("a start whose body is a JSON list is invalid", _FLAGS, "POST /api/v1/rollouts", 422, "invalid", "body: Input should be a valid dictionary", payload=[1]),
    Case("a start whose body claims to be JSON but is YAML is invalid JSON", _FLAGS, "POST /api/v1/rollouts", 422, "invalid", "body: not valid JSON", body=b"plan_id: 1\n", content_type="application/json"),
    Case("a start whose body is YAML without a content type is not an object", _FLAGS, "POST /api/v1/rollouts", 422, "invalid", "body: Input should be a valid dictionary", body=b"plan_id: 1\n"),
    Case("a start with an empty plan text is invalid", _FLAGS, "POST /api/v1/rollouts", 422, "invalid", "body.plan: String should have at least 1 character", payload={"plan": ""}),
    Case("a start with the plan as a JSON object rather than its text is invalid", _FLAGS, "POST /api/v1/rollouts", 422, "invalid", "body.plan: Input should be a valid string", payload={"plan": {"flag": "new-checkout"}}),
    # --- kill switches ---------------------------------------------------------------------------
    Case("killing a killed flag changes nothing and says so", "a killed flag", "POST /api/v1/flags/new-checkout/kill", 200, message="already killed", expect={"changed": False, "killed": True}),
    Case("lifting a kill switch that is off changes nothing and says so", _FLAGS, "POST /api/v1/flags/new-checkout/unkill", 200, message="was not killed", expect={"changed": False, "killed": False}),
    Case("killing a flag that does not exist is not found", _FLAGS, "POST /api/v1/flags/nope/kill", 404, "not_found", "unknown flag 'nope'"),
    Case("lifting the kill switch of a flag that does not exist is not found", _FLAGS, "POST /api/v1/flags/nope/unkill", 404, "not_found", "unknown flag 'nope'"),
    Case("a NUL byte in a flag key in the URL is invalid", _FLAGS, "POST /api/v1/flags/new%00checkout/kill", 422, "invalid", "path: control characters are not allowed (found U+0000)"),
    Case("a flag key over 200 characters in the URL is invalid", _FLAGS, "POST /api/v1/flags/" + "x" * 201 + "/kill", 422, "invalid", "path.key: String should have at most 200 characters"),
    Case("reading a flag that does not exist is not found", _FLAGS, "GET /api/v1/flags/nope", 404, "not_found", "unknown flag 'nope'"),
    # --- bodies that are not a flags file or a plan ------------------------------------------------
    Case("a dry_run that is not a boolean is invalid", _FLAGS, "PUT /api/v1/flags?dry_run=maybe", 422, "invalid", "query.dry_run: Input should be a valid boolean", body=FLAGS.encode()),
    Case("a NUL byte in a query parameter is invalid", _FLAGS, "PUT /api/v1/flags?prune=%00", 422, "invalid", "query.prune: control characters are not allowed", body=FLAGS.encode()),
    Case("an empty flags body is invalid, saying what to send", _FLAGS, "PUT /api/v1/flags", 422, "invalid", "send the flags file as the request body (YAML)", body=b""),
    Case("a plan body of only whitespace is invalid, saying what to send", _FLAGS, "POST /api/v1/plans", 422, "invalid", "send the plan as the request body (YAML)", body=b"  \n\t\n"),
    Case("a plan in Latin-1 is refused as not UTF-8", _FLAGS, "POST /api/v1/plans", 422, "invalid", "the plan must be UTF-8 text", body=PLAN.replace("canary", "canäry").encode("latin-1")),
    Case("a flags file over 1 MiB is too large, naming the limit", _FLAGS, "PUT /api/v1/flags", 413, "too_large", "the request body is larger than 1048576 bytes", body=_OVER_A_MIB),
    Case("a flags file over 1 MiB sent in chunks without a length is too large", _FLAGS, "PUT /api/v1/flags", 413, "too_large", "larger than 1048576 bytes", body=_OVER_A_MIB, chunked=True),
    Case("a plan over 1 MiB is too large", _FLAGS, "POST /api/v1/plans", 413, "too_large", "larger than 1048576 bytes", body=_OVER_A_MIB),
    Case("a start whose JSON is over 1 MiB is too large", _FLAGS, "POST /api/v1/rollouts", 413, "too_large", "larger than 1048576 bytes", payload={"plan": "#" * MIB}),
    Case("flow sequences nested 100,000 deep are refused at the nesting limit, never a 500", _FLAGS, "PUT /api/v1/flags", 422, "invalid", "nests deeper than 64 levels", body=_deep("[", "]")),
    Case("flow mappings nested 100,000 deep are refused at the nesting limit", _FLAGS, "PUT /api/v1/flags", 422, "invalid", "nests deeper than 64 levels", body=_deep("{a: ", "}")),
    Case("block sequences nested 100,000 deep are refused at the nesting limit", _FLAGS, "POST /api/v1/plans", 422, "invalid", "nests deeper than 64 levels", body=("- " * 100_000 + "x").encode()),
    Case("an empty flags mapping sent as JSON is judged as YAML: a conflict naming the flags", _FLAGS, "PUT /api/v1/flags", 409, "conflict", "the file leaves out 2 applied flag(s)", payload={"flags": {}}),
    # --- tokens ----------------------------------------------------------------------------------
    Case("a token expiring in the past is invalid", _FLAGS, "POST /api/v1/tokens", 422, "invalid", "expires_at must lie in the future", payload={"name": "ci", "role": "viewer", "expires_at": "2020-01-01T00:00:00Z"}),
    Case("a token expiring now is invalid", _FLAGS, "POST /api/v1/tokens", 422, "invalid", "expires_at must lie in the future", payload=lambda given: {"name": "ci", "role": "viewer", "expires_at": given.now.isoformat()}),
    Case("a token expiry without a time zone is invalid", _FLAGS, "POST /api/v1/tokens", 422, "invalid", "body.expires_at: Input should have timezone info", payload={"name": "ci", "role": "viewer", "expires_at": "2026-06-01T00:00:00"}),
    Case("a token expiring in ten years is invalid", _FLAGS, "POST /api/v1/tokens", 422, "invalid", "at most five years ahead", payload={"name": "ci", "role": "viewer", "expires_at": "2036-01-01T00:00:00Z"}),
    Case("a token expiry that is not a time is invalid", _FLAGS, "POST /api/v1/tokens", 422, "invalid", "body.expires_at: Input should be a valid datetime", payload={"name": "ci", "role": "viewer", "expires_at": "tomorrow"}),
    Case("a token expiry given as epoch seconds is invalid, as SDK times are", _FLAGS, "POST /api/v1/tokens", 422, "invalid", "body.expires_at", payload={"name": "ci", "role": "viewer", "expires_at": 1_800_000_000}),
    Case("a token of an unknown role is invalid naming the roles", _FLAGS, "POST /api/v1/tokens", 422, "invalid", "body.role: Input should be 'admin', 'operator', 'viewer' or 'sdk'", payload={"name": "ci", "role": "root"}),
    Case("a token whose name holds a NUL byte is invalid", _FLAGS, "POST /api/v1/tokens", 422, "invalid", "body.name: String should match pattern", payload={"name": "c\x00i", "role": "viewer"}),
    Case("a token with an empty name is invalid", _FLAGS, "POST /api/v1/tokens", 422, "invalid", "body.name: String should have at least 1 character", payload={"name": "", "role": "viewer"}),
    Case("a token with an unknown field is invalid naming it", _FLAGS, "POST /api/v1/tokens", 422, "invalid", "body.scopes: Extra inputs are not permitted", payload={"name": "ci", "role": "viewer", "scopes": ["all"]}),
    Case("an operator may not create tokens", _FLAGS, "POST /api/v1/tokens", 403, "forbidden", "needs an admin token, this is an operator token", payload={"name": "ci", "role": "admin"}, auth="operator"),
    Case("revoking a token that does not exist is not found", _FLAGS, "DELETE /api/v1/tokens/deadbeef", 404, "not_found", "no token 'deadbeef'"),
    Case("revoking the bootstrap token is not found, saying how to retire it", _FLAGS, "DELETE /api/v1/tokens/bootstrap", 404, "not_found", "unset or change ROLLWISE_ADMIN_TOKEN"),
    Case("revoking a revoked token changes nothing and says so", _FLAGS, "DELETE /api/v1/tokens/{revoked}", 200, expect={"changed": False}),
    Case("a token id with characters no id has is invalid", _FLAGS, "DELETE /api/v1/tokens/ABC!", 422, "invalid", "path.token_id: String should match pattern"),
    Case("a token id over 32 characters is invalid", _FLAGS, "DELETE /api/v1/tokens/" + "a" * 33, 422, "invalid", "path.token_id: String should have at most 32 characters"),
    # --- who may do what -----------------------------------------------------------------------
    Case("a revoked token cannot kill a flag", _FLAGS, "POST /api/v1/flags/new-checkout/kill", 401, "unauthorized", "unknown, revoked or expired token", auth="revoked"),
    Case("an expired token cannot apply flags", _FLAGS, "PUT /api/v1/flags", 401, "unauthorized", "unknown, revoked or expired token", auth="expired", body=b"flags: {}\n"),
    Case("no token cannot pause a rollout", _RUNNING, "POST /api/v1/rollouts/{rollout}/pause", 401, "unauthorized", "send 'Authorization: Bearer <token>'", auth="none", payload={}),
    Case("basic credentials are not a bearer token", _FLAGS, "POST /api/v1/flags/new-checkout/kill", 401, "unauthorized", "send 'Authorization: Bearer <token>'", auth="basic"),
    Case("an SDK key cannot read the management API", _FLAGS, "GET /api/v1/flags", 403, "forbidden", "needs a viewer token", auth="sdk"),
    Case("an SDK key cannot kill a flag", _FLAGS, "POST /api/v1/flags/new-checkout/kill", 403, "forbidden", "needs an operator token", auth="sdk"),
    Case("an SDK key cannot apply flags", _FLAGS, "PUT /api/v1/flags", 403, "forbidden", "needs an operator token", auth="sdk", body=b"flags: {}\n"),
    Case("an SDK key cannot list tokens", _FLAGS, "GET /api/v1/tokens", 403, "forbidden", "needs an admin token", auth="sdk"),
    Case("a viewer cannot roll back", _RUNNING, "POST /api/v1/rollouts/{rollout}/rollback", 403, "forbidden", "needs an operator token, this is a viewer token", auth="viewer", payload={}),
    Case("an admin token is not an SDK key", _RUNNING, "POST /sdk/v1/events", 403, "forbidden", "this endpoint is for SDK keys", payload=_events()),
    Case("no token cannot post events", _RUNNING, "POST /sdk/v1/events", 401, "unauthorized", "send 'Authorization: Bearer <token>'", auth="none", payload=_events()),
    # --- SDK event batches -----------------------------------------------------------------------
    Case("a latency histogram of 3 buckets is invalid, naming how many it needs", _RUNNING, "POST /sdk/v1/events", 422, "invalid", f"body.aggregates[0].histogram: List should have at least {LATENCY_BUCKETS} items", auth="sdk", payload=_events(histogram=[1, 2, 3])),
    Case("more events than requests is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.aggregates[0].events: must not exceed requests (100), got 101", auth="sdk", payload=_events(events=101)),
    Case("a NaN gauge reading is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.gauges[0].value: Input should be a finite number", auth="sdk", body=_events_with("NaN")),
    Case("an infinite gauge reading is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.gauges[0].value: Input should be a finite number", auth="sdk", body=_events_with("Infinity")),
    Case("a window two centuries ahead is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.aggregates[0].window: must be within 2 days of the server's clock", auth="sdk", payload=lambda given: _batch(given, window=int(given.now.timestamp() // 60) + 200 * 525_960)),
    Case("an exposure two centuries ahead is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.exposures[0].at: must be within 2 days", auth="sdk", payload=_events(exposure__at="2226-01-05T09:00:00+00:00")),
    Case("a stage number of 2^31 is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.aggregates[0].stage: Input should be less than or equal to 2147483647", auth="sdk", payload=_events(stage=_2_31)),
    Case("an exposure stage of 2^63 is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.exposures[0].stage: Input should be less than or equal to 2147483647", auth="sdk", payload=_events(exposure__stage=_2_63)),
    Case("a rollout id of 2^63 in a batch is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.aggregates[0].rollout: Input should be less than or equal to 2147483647", auth="sdk", payload=_events(rollout=_2_63)),
    Case("request counts given as strings are invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.aggregates[0].requests: Input should be a valid integer", auth="sdk", payload=_events(requests="100")),
    Case("event counts given as strings are invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.aggregates[0].events: Input should be a valid integer", auth="sdk", payload=_events(events="1")),
    Case("a negative request count is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.aggregates[0].requests: Input should be greater than or equal to 0", auth="sdk", payload=_events(requests=-1)),
    Case("a fractional request count is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.aggregates[0].requests: Input should be a valid integer", auth="sdk", payload=_events(requests=100.5)),
    Case("a NUL byte in an exposed unit is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.exposures[0].unit: must not hold control characters", auth="sdk", payload=_events(exposure__unit="ac\x00me")),
    Case("a gauge time without a time zone is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.gauges[0].at: Input should have timezone info", auth="sdk", payload=_events(gauge__at="2026-01-05T11:00:00")),
    Case("a batch naming a rollout that does not exist is not found, and none of it is applied", _RUNNING, "POST /sdk/v1/events", 404, "not_found", "the batch names unknown rollout(s): 999", auth="sdk", payload=_events(exposure__rollout=999)),
    Case("a batch id under 8 characters is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.batch: String should have at least 8 characters", auth="sdk", payload=lambda given: {**_batch(given), "batch": "b1"}),
    Case("an empty batch body is invalid JSON", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body: not valid JSON", auth="sdk", body=b""),
    Case("a batch that is not UTF-8 is invalid JSON", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "not valid JSON", auth="sdk", body=b'{"batch": "\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8"}'),
    Case("a batch that is a JSON list is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body: ", auth="sdk", body=b"[]"),
    Case("a batch over 8 MiB is too large, naming the limit", _RUNNING, "POST /sdk/v1/events", 413, "too_large", "larger than 8388608 bytes", auth="sdk", body=b'{"batch": "' + b"x" * (8 * MIB) + b'"}'),
    Case("an aggregate saying errors where the field is events is invalid, not counted as zero events", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "errors", auth="sdk", payload=_without_events),
    Case("a batch with an unknown top-level field is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "body.gauge", auth="sdk", payload=lambda given: { **_batch(given), "gauge": [{"metric": "payments.queue_depth", "value": 5000}], }),
    Case("an aggregate for a stage the rollout's plan does not have is invalid", _RUNNING, "POST /sdk/v1/events", 422, "invalid", "stage", auth="sdk", payload=_events(stage=7, exposure__stage=7)),
]
# fmt: on


def _params() -> list[Any]:
    params = []
    for case in [*_corpus(), *REQUESTS]:
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


CASES = _params()


def test_the_corpus_holds_at_least_100_cases_with_distinct_ids() -> None:
    """Every case has its own sentence for an id, and there are at least 100 of them."""
    ids = [param.id for param in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 100, len(ids)


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_answered_and_stores_nothing(
    server: tuple[TestClient, Store, ManualClock], case: Case
) -> None:
    """The status, the error code and a message saying what is wrong; nothing stored (audit,
    snapshot version, flags, plans, rollouts, tokens, aggregates, ledger, gauges unchanged)."""
    client, store, clock = server
    given = _given(client, store, clock, case.given)
    before = _stored(client, store)
    response = _send(client, case, given)
    _answers_as_expected(case, response)
    assert _stored(client, store) == before


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("checkout/new-flow", id="a flag key with a slash"),
        pytest.param("k" * 201, id="a flag key of 201 characters"),
    ],
)
def test_every_flag_the_api_accepts_can_be_killed_through_it(
    server: tuple[TestClient, Store, ManualClock], key: str
) -> None:
    """A flag key the flags file accepts is one the kill switch can reach (or the file is
    refused): there is no flag that cannot be stopped."""
    client, _, _ = server
    applied = client.put("/api/v1/flags", content=f'flags:\n  "{key}":\n    variants: [off, on]\n')
    if applied.status_code == 422:
        return  # refused at the door: fine
    assert applied.status_code == 200, applied.text
    killed = client.post(f"/api/v1/flags/{quote(key, safe='')}/kill")
    assert killed.status_code == 200, killed.text
    assert client.get("/api/v1/flags").json()["flags"][0]["killed"]
