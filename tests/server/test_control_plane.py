"""The control plane against ordinary mistakes: every write is checked against what is running,
in the transaction that writes it, and a refused one changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rollwise.control import ManualClock
from rollwise.core import RolloutAction
from rollwise.core.judgement import RolloutStatus
from rollwise.server import create_app
from rollwise.store import ConflictError, StaleVersionError, Store

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (ROOT / "examples/checkout/flags.yaml").read_text()
# The example plan without its declared traffic: RW019 (which simulates it, ~2 s a lint) is
# tested in tests/core; here every test stores plans.
PLAN = "\n".join(
    line
    for line in (ROOT / "examples/checkout/plan.yaml").read_text().splitlines()
    if not line.startswith("traffic:")
)
ADMIN = "rw_admin_control-plane-test"
START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'control.db'}")
    yield opened
    opened.close()


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    app = create_app(store, ManualClock(START), controller=False, admin_token=ADMIN)
    with TestClient(app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {ADMIN}"
        _sdk(test_client)  # made first: a token made later would count as a change
        yield test_client


def _started(client: TestClient) -> dict[str, object]:
    assert client.put("/api/v1/flags", content=FLAGS).status_code == 200
    started = client.post("/api/v1/rollouts", json={"plan": PLAN})
    assert started.status_code == 201, started.text
    return started.json()  # type: ignore[no-any-return]


def _state(client: TestClient) -> tuple[object, ...]:
    """Everything a refused request must leave as it was."""
    flags = client.get("/api/v1/flags").json()
    return (
        flags["snapshot_version"],
        len(client.get("/api/v1/audit", params={"limit": 1000}).json()),
        [
            (r["id"], r["status"], r["stage"], r["version"])
            for r in client.get("/api/v1/rollouts").json()
        ],
        client.get("/sdk/v1/snapshot", headers=_sdk(client)).content,
    )


_SDK: dict[int, dict[str, str]] = {}


def _sdk(client: TestClient) -> dict[str, str]:
    key = id(client)
    if key not in _SDK:
        made = client.post("/api/v1/tokens", json={"name": "sdk", "role": "sdk"})
        _SDK[key] = {"Authorization": f"Bearer {made.json()['secret']}"}
    return _SDK[key]


BREAKING = {
    "the variant the rollout serves is renamed": FLAGS.replace(
        "variants: [off, on]", "variants: [off, beta]"
    ).replace("serve: on", "serve: beta"),
    "a segment a stage uses is dropped": FLAGS.replace("  internal-team:", "  internal-staff:"),
    "the flag's unit changes": FLAGS.replace("    unit: tenant", "    unit: user"),
    "the flag with the live rollout is deleted": FLAGS.replace(
        "  new-checkout:", "  newer-checkout:"
    ),
    "every flag is deleted (with prune)": "flags: {}\n",
}


@pytest.mark.parametrize("breaking", list(BREAKING), ids=list(BREAKING))
def test_a_flags_file_that_breaks_a_live_rollout_is_refused_and_sdks_keep_their_snapshot(
    client: TestClient, breaking: str
) -> None:
    """409 naming the conflict; nothing stored; the SDK API still answers 200 with the
    previous version."""
    _started(client)
    text = BREAKING[breaking]
    assert text != FLAGS
    before = _state(client)
    refused = client.put("/api/v1/flags", content=text, params={"prune": "true"})
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["error"] == "conflict" and body["details"]["conflicts"]
    assert any("new-checkout" in c or "internal-team" in c for c in body["details"]["conflicts"])
    assert _state(client) == before
    snapshot = client.get("/sdk/v1/snapshot", headers=_sdk(client))
    assert snapshot.status_code == 200 and snapshot.json()["version"] == before[0]


def test_the_conflict_names_the_variant_the_rollout_and_its_stage(client: TestClient) -> None:
    rollout = _started(client)
    refused = client.put(
        "/api/v1/flags", content=BREAKING["the variant the rollout serves is renamed"]
    )
    assert (
        f"flag new-checkout: variant 'on' is served by rollout {rollout['id']} at stage 'internal'"
        in refused.json()["details"]["conflicts"]
    )


def test_an_identical_file_is_a_no_op_and_a_dry_run_stores_nothing(client: TestClient) -> None:
    _started(client)
    before = _state(client)
    same = client.put("/api/v1/flags", content=FLAGS)
    assert same.status_code == 200
    assert (same.json()["changed"], same.json()["changes"]) == (False, [])
    assert same.json()["snapshot_version"] == before[0]
    edited = FLAGS.replace("description: The new checkout flow.", "description: The new flow.")
    dry = client.put("/api/v1/flags", content=edited, params={"dry_run": "true"})
    assert dry.status_code == 200 and dry.json()["dry_run"] and dry.json()["changed"]
    assert dry.json()["changes"] == [
        {
            "kind": "flag",
            "name": "new-checkout",
            "flag": "new-checkout",
            "change": "changed",
            "details": ["description changed"],
        }
    ]
    assert _state(client) == before
    applied = client.put("/api/v1/flags", content=edited)
    assert applied.json()["snapshot_version"] == before[0] + 1  # type: ignore[operator]


def test_deleting_a_flag_needs_prune(client: TestClient) -> None:
    """A file that leaves a flag out is refused unless prune is asked for; with prune, a flag
    without a live rollout goes."""
    _started(client)
    without_search = FLAGS[: FLAGS.index("  search-v2:")] if "  search-v2:" in FLAGS else None
    assert without_search is not None
    before = _state(client)
    refused = client.put("/api/v1/flags", content=without_search)
    assert refused.status_code == 409 and "prune" in refused.json()["message"]
    assert refused.json()["details"]["conflicts"] == ["flag search-v2: would be deleted"]
    assert _state(client) == before
    pruned = client.put("/api/v1/flags", content=without_search, params={"prune": "true"})
    assert pruned.status_code == 200
    assert {
        "kind": "flag",
        "name": "search-v2",
        "flag": "search-v2",
        "change": "removed",
        "details": [],
    } in pruned.json()["changes"]


def test_a_second_start_is_refused_and_stores_no_plan(client: TestClient) -> None:
    _started(client)
    before = _state(client)
    again = client.post("/api/v1/rollouts", json={"plan": PLAN})
    assert again.status_code == 409 and "already has a live rollout" in again.json()["message"]
    assert _state(client) == before
    assert client.get("/api/v1/plans/2").status_code == 404


@pytest.mark.parametrize(
    ("edit", "code"),
    [
        (lambda p: p[: p.index("guards:")] + p[p.index("stages:") :], "RW001"),
        (lambda p: p.replace("unit: tenant", "unit: user"), "RW021"),
        (lambda p: p.replace("flag: new-checkout", "flag: old-checkout"), "RW015"),
    ],
    ids=["no guards", "unit differs from the flag's", "unknown flag"],
)
def test_the_server_lints_every_plan_it_stores(client: TestClient, edit, code: str) -> None:  # type: ignore[no-untyped-def]
    assert client.put("/api/v1/flags", content=FLAGS).status_code == 200
    before = _state(client)
    for request in (
        lambda: client.post("/api/v1/plans", content=edit(PLAN)),
        lambda: client.post("/api/v1/rollouts", json={"plan": edit(PLAN)}),
    ):
        refused = request()
        assert refused.status_code == 422, refused.text
        findings = refused.json()["details"]["findings"]
        assert code in {f["code"] for f in findings if f["severity"] == "error"}
        assert _state(client) == before


def test_warnings_are_stored_and_shown(client: TestClient) -> None:
    assert client.put("/api/v1/flags", content=FLAGS).status_code == 200
    saved = client.post("/api/v1/plans", content=PLAN)
    assert saved.status_code == 201
    assert [f["code"] for f in saved.json()["findings"]] == ["RW020"]
    shown = client.get(f"/api/v1/plans/{saved.json()['id']}").json()
    assert [f["code"] for f in shown["findings"]] == ["RW020"]
    (entry,) = [e for e in client.get("/api/v1/audit").json() if e["action"] == "plan.save"]
    assert [f["code"] for f in entry["details"]["findings"]] == ["RW020"]


def test_approve_accepts_only_the_next_stage_that_needs_it(client: TestClient) -> None:
    rollout = _started(client)
    path = f"/api/v1/rollouts/{rollout['id']}/approve"
    stages = client.get(f"/api/v1/rollouts/{rollout['id']}").json()["plan"]["stages"]
    assert stages[1]["approval"] and not stages[2]["approval"]
    before = _state(client)
    for stage, why in (
        (stages[0]["name"], "was entered already"),
        (stages[-1]["name"], "is not next"),
    ):
        refused = client.post(path, json={"stage": stage})
        assert refused.status_code == 409 and why in refused.json()["message"], refused.text
    assert client.post(path, json={"stage": "nope"}).status_code == 422
    assert _state(client) == before
    assert client.post(path, json={"stage": stages[1]["name"]}).status_code == 200
    approved = _state(client)
    twice = client.post(path, json={"stage": stages[1]["name"]})
    assert twice.status_code == 409 and "approved already" in twice.json()["message"]
    assert _state(client) == approved


def test_kill_and_unkill_are_idempotent(client: TestClient) -> None:
    _started(client)
    first = client.post("/api/v1/flags/new-checkout/kill").json()
    before = _state(client)
    again = client.post("/api/v1/flags/new-checkout/kill").json()
    assert (first["changed"], again["changed"], again["message"]) == (True, False, "already killed")
    assert again["snapshot_version"] == first["snapshot_version"]
    assert _state(client) == before
    client.post("/api/v1/flags/new-checkout/unkill")
    lifted = _state(client)
    not_killed = client.post("/api/v1/flags/new-checkout/unkill").json()
    assert (not_killed["changed"], not_killed["message"]) == (False, "was not killed")
    assert _state(client) == lifted


def test_a_pause_racing_a_rollback_resolves_to_the_rollback(store: Store) -> None:
    """The operator read the rollout running; the controller rolled it back meanwhile: the
    pause is refused (stale), and re-read it is refused by the table — never re-served."""
    store.apply_flags(FLAGS, "flags.yaml", "alice", START)
    rollout = store.start_rollout(None, "alice", START, text=PLAN)
    seen_by_operator = store.rollout(rollout.id)
    store.transition(rollout, action=RolloutAction.ROLLBACK, actor="controller", now=START)
    audit = len(store.audit_log(limit=1000))
    with pytest.raises(StaleVersionError):
        store.transition(seen_by_operator, action=RolloutAction.PAUSE, actor="op", now=START)
    with pytest.raises(ConflictError, match="cannot pause a rollout that is rolled_back"):
        store.transition(
            store.rollout(rollout.id), action=RolloutAction.PAUSE, actor="op", now=START
        )
    assert store.rollout(rollout.id).status is RolloutStatus.ROLLED_BACK
    assert len(store.audit_log(limit=1000)) == audit


def test_tokens_can_be_listed_revoked_and_expire(client: TestClient) -> None:
    made = client.post(
        "/api/v1/tokens",
        json={
            "name": "ci",
            "role": "viewer",
            "expires_at": (START + timedelta(days=1)).isoformat(),
        },
    )
    assert made.status_code == 201, made.text
    headers = {"Authorization": f"Bearer {made.json()['secret']}"}
    assert client.get("/api/v1/flags", headers=headers).status_code == 200
    listed = [t for t in client.get("/api/v1/tokens").json() if t["role"] != "sdk"]
    assert [(t["name"], t["role"], t["revoked_at"]) for t in listed] == [("ci", "viewer", None)]
    assert "secret" not in listed[0] and listed[0]["expires_at"].startswith("2026-12-01")
    revoked = client.delete(f"/api/v1/tokens/{made.json()['id']}")
    assert revoked.status_code == 200 and revoked.json()["changed"] is True
    assert client.delete(f"/api/v1/tokens/{made.json()['id']}").json()["changed"] is False
    refused = client.get("/api/v1/flags", headers=headers)
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    past = client.post(
        "/api/v1/tokens",
        json={
            "name": "old",
            "role": "viewer",
            "expires_at": (START - timedelta(days=1)).isoformat(),
        },
    )
    assert past.status_code == 422


def test_an_expired_token_is_refused(store: Store) -> None:
    clock = ManualClock(START)
    app = create_app(store, clock, controller=False, admin_token=ADMIN)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {ADMIN}"
        made = client.post(
            "/api/v1/tokens",
            json={
                "name": "ci",
                "role": "viewer",
                "expires_at": (START + timedelta(hours=1)).isoformat(),
            },
        ).json()
        headers = {"Authorization": f"Bearer {made['secret']}"}
        assert client.get("/api/v1/flags", headers=headers).status_code == 200
        clock.advance(timedelta(hours=1))
        assert client.get("/api/v1/flags", headers=headers).status_code == 401


def test_the_bootstrap_token_is_honoured_only_while_it_is_configured(store: Store) -> None:
    """After a restart with another ROLLWISE_ADMIN_TOKEN the old one no longer works, and it
    was never stored."""
    with TestClient(
        create_app(store, ManualClock(START), controller=False, admin_token=ADMIN)
    ) as first:
        assert (
            first.get("/api/v1/flags", headers={"Authorization": f"Bearer {ADMIN}"}).status_code
            == 200
        )
    rotated = "rw_admin_rotated"
    with TestClient(
        create_app(store, ManualClock(START), controller=False, admin_token=rotated)
    ) as second:
        assert (
            second.get("/api/v1/flags", headers={"Authorization": f"Bearer {ADMIN}"}).status_code
            == 401
        )
        assert (
            second.get("/api/v1/flags", headers={"Authorization": f"Bearer {rotated}"}).status_code
            == 200
        )
    assert store.tokens() == []


def test_after_a_rollback_the_flag_can_change_and_sdks_are_still_served(client: TestClient) -> None:
    """Once the rollout ended, its variant may go; the snapshot still builds (200), and the
    rolled-back flag keeps serving its safe default until it is rolled out again."""
    rollout = _started(client)
    client.post(f"/api/v1/rollouts/{rollout['id']}/rollback", json={"reason": "test"})
    served = client.get("/sdk/v1/snapshot", headers=_sdk(client)).json()
    assert served["flags"]["flags"]["new-checkout"]["rules"] == []
    renamed = BREAKING["the variant the rollout serves is renamed"]
    assert client.put("/api/v1/flags", content=renamed).status_code == 200
    snapshot = client.get("/sdk/v1/snapshot", headers=_sdk(client))
    assert snapshot.status_code == 200
    flag = snapshot.json()["flags"]["flags"]["new-checkout"]
    assert list(flag["variants"]) == ["off", "beta"]
    assert flag["rules"] == []  # the rolled-back flag still serves its safe default
