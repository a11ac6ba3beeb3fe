"""Commands that talk to a server, against a stand-in (httpx.MockTransport): flags, tokens,
apply, rollout start and list, kill; what they send and what they print."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Ran, Stub, reply

FLAGS_FILE = "flags:\n  new-checkout:\n    variants: [off, on]\n"
PLAN = """flag: new-checkout
unit: user
guards:
  - {metric: checkout.error, kind: rate, tolerance: 10%}
stages:
  - {name: one, audience: {percent: 5}, bake: 1h}
  - {name: all, audience: {percent: 100}, holdback: 2%, bake: 1h}
"""
LISTED: dict[str, Any] = {
    "snapshot_version": 4,
    "flags": [
        {
            "key": "new-checkout",
            "description": "the new checkout flow",
            "variants": ["off", "on"],
            "killed": False,
            "rollout": None,
        },
        {
            "key": "search-v2",
            "description": "",
            "variants": ["off", "on"],
            "killed": True,
            "rollout": None,
        },
    ],
}
ROLLOUT = {
    "id": 9,
    "flag": "new-checkout",
    "plan_id": 5,
    "status": "running",
    "stage": 0,
    "stage_entered_at": "2026-03-02T10:00:00+00:00",
    "started_at": "2026-03-02T10:00:00+00:00",
    "ended_at": None,
    "version": 1,
    "approvals": [],
}


@pytest.fixture
def flags_file(tmp_path: Path) -> Path:
    path = tmp_path / "flags.yaml"
    path.write_text(FLAGS_FILE)
    return path


@pytest.fixture
def plan_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(PLAN)
    return path


# --- flags ---------------------------------------------------------------------------------


def test_flags_get_prints_the_definition(stub: Stub, cli: Callable[..., Ran]) -> None:
    """flags get asks GET /api/v1/flags/{key} and shows variants, kill switch and definition."""
    stub.on(
        "GET",
        "/api/v1/flags/new-checkout",
        reply(
            200,
            {
                **LISTED["flags"][0],
                "definition": {"variants": ["off", "on"], "rules": [{"serve": "on"}]},
            },
        ),
    )
    ran = cli("flags", "get", "new-checkout")
    assert ran.code == 0
    assert ran.out.splitlines()[:4] == [
        "new-checkout: the new checkout flow",
        "  variants: off, on",
        "  kill switch: off",
        "  rollout: —",
    ]
    assert "  definition:" in ran.out and "    - serve: 'on'" in ran.out


def test_flags_get_falls_back_to_the_list_on_an_older_server(
    stub: Stub, cli: Callable[..., Ran]
) -> None:
    """A server without GET /api/v1/flags/{key} (404) is asked for the list instead."""
    stub.on("GET", "/api/v1/flags", reply(200, LISTED))
    ran = cli("flags", "get", "search-v2", "--json")
    assert ran.code == 0
    assert json.loads(ran.out)["killed"] is True
    assert len(stub.asked("GET", "/api/v1/flags/search-v2")) == 1


def test_flags_get_unknown_flag_names_the_known_ones(stub: Stub, cli: Callable[..., Ran]) -> None:
    """An unknown flag exits 2 with one line listing the flags there are."""
    stub.on("GET", "/api/v1/flags", reply(200, LISTED))
    ran = cli("flags", "get", "nope")
    assert ran.code == 2
    assert ran.err == "rollwise: unknown flag 'nope'; flags: new-checkout, search-v2\n"


def test_flags_list_is_a_table(stub: Stub, cli: Callable[..., Ran]) -> None:
    """flags list: one row per flag under a header, the kill switch visible."""
    stub.on("GET", "/api/v1/flags", reply(200, LISTED))
    ran = cli("flags", "list")
    lines = ran.out.splitlines()
    assert ran.code == 0
    assert lines[0].split() == ["flag", "variants", "killed", "rollout", "description"]
    assert lines[2].startswith("search-v2") and "KILLED" in lines[2]


@pytest.mark.parametrize(
    ("command", "changed", "expected"),
    [
        ("kill", True, "new-checkout: killed: every SDK serves the safe default"),
        ("kill", False, "new-checkout: already killed"),
        ("unkill", True, "new-checkout: kill switch lifted"),
        ("unkill", False, "new-checkout: was not killed"),
    ],
)
def test_kill_says_when_nothing_changed(
    stub: Stub, cli: Callable[..., Ran], command: str, changed: bool, expected: str
) -> None:
    """kill/unkill read "changed": false as already killed / was not killed."""
    stub.on(
        "POST",
        f"/api/v1/flags/new-checkout/{command}",
        reply(200, {"flag": "new-checkout", "snapshot_version": 5, "changed": changed}),
    )
    ran = cli(command, "new-checkout")
    assert ran.code == 0
    assert ran.out == f"{expected} (snapshot version 5)\n"


# --- apply ---------------------------------------------------------------------------------

CHANGES = {
    "snapshot_version": 6,
    "changed": True,
    "dry_run": False,
    "changes": [
        {"flag": "new-search", "change": "added", "details": []},
        {
            "flag": "new-checkout",
            "change": "changed",
            "details": ["variant 'beta' added", "rule 1: 25% → 50%"],
        },
        {"flag": "old", "change": "removed", "details": []},
        {"kind": "segment", "name": "eu", "flag": "", "change": "removed", "details": []},
    ],
}


def test_apply_lists_each_change(stub: Stub, cli: Callable[..., Ran], flags_file: Path) -> None:
    """apply sends the file with dry_run/prune and prints one line per change."""
    stub.on("PUT", "/api/v1/flags", reply(200, CHANGES))
    ran = cli("apply", str(flags_file))
    assert ran.code == 0
    assert ran.out.splitlines() == [
        "+ flag new-search (added)",
        "~ flag new-checkout: variant 'beta' added",
        "~ flag new-checkout: rule 1: 25% → 50%",
        "- flag old (removed)",
        "- segment eu (removed)",
        f"applied {flags_file}: snapshot version 6",
    ]
    (sent,) = stub.asked("PUT", "/api/v1/flags")
    assert dict(sent.url.params) == {"dry_run": "false", "prune": "false"}
    assert sent.content.decode() == FLAGS_FILE


def test_apply_dry_run_and_prune_say_nothing_was_applied(
    stub: Stub, cli: Callable[..., Ran], flags_file: Path
) -> None:
    """--dry-run --prune asks for both and says that nothing was applied."""
    stub.on("PUT", "/api/v1/flags", reply(200, {**CHANGES, "dry_run": True}))
    ran = cli("apply", str(flags_file), "--dry-run", "--prune")
    assert ran.code == 0
    assert ran.out.splitlines()[-1] == "dry run: nothing was applied (snapshot version stays 6)"
    (sent,) = stub.asked("PUT", "/api/v1/flags")
    assert dict(sent.url.params) == {"dry_run": "true", "prune": "true"}


def test_apply_without_changes_says_so(
    stub: Stub, cli: Callable[..., Ran], flags_file: Path
) -> None:
    """changed: false prints "no changes"."""
    stub.on(
        "PUT",
        "/api/v1/flags",
        reply(200, {"snapshot_version": 6, "changed": False, "dry_run": False, "changes": []}),
    )
    ran = cli("apply", str(flags_file))
    assert ran.out.startswith("no changes")


def test_apply_on_an_older_server_prints_the_version(
    stub: Stub, cli: Callable[..., Ran], flags_file: Path
) -> None:
    """An answer without "changes" is printed as before."""
    stub.on("PUT", "/api/v1/flags", reply(200, {"snapshot_version": 3}))
    ran = cli("apply", str(flags_file))
    assert ran.out == f"applied {flags_file}: snapshot version 3\n"


def test_apply_dry_run_is_not_sent_to_a_server_that_would_ignore_it(
    stub: Stub, cli: Callable[..., Ran], flags_file: Path
) -> None:
    """If the server's OpenAPI document has no dry_run on PUT /api/v1/flags, nothing is sent."""
    stub.on(
        "GET",
        "/openapi.json",
        reply(200, {"paths": {"/api/v1/flags": {"put": {"summary": "Apply Flags"}}}}),
    )
    ran = cli("apply", str(flags_file), "--dry-run")
    assert ran.code == 2
    assert "does not support --dry-run" in ran.err and "nothing was sent" in ran.err
    assert stub.asked("PUT", "/api/v1/flags") == []


def test_apply_conflicts_are_listed_one_per_line(
    stub: Stub, cli: Callable[..., Ran], flags_file: Path
) -> None:
    """A 409 prints the message, then each of details.conflicts on its own line."""
    stub.on(
        "PUT",
        "/api/v1/flags",
        reply(
            409,
            {
                "error": "conflict",
                "message": "the flags file conflicts with running rollouts",
                "details": {
                    "conflicts": [
                        "new-checkout: rollout 9 serves variant 'on', which the file removes",
                        "search-v2: rollout 4 is running; --prune would remove the flag",
                    ]
                },
            },
        ),
    )
    ran = cli("apply", str(flags_file))
    assert ran.code == 2
    assert ran.err.splitlines() == [
        "rollwise: PUT /api/v1/flags: 409 the flags file conflicts with running rollouts",
        "  new-checkout: rollout 9 serves variant 'on', which the file removes",
        "  search-v2: rollout 4 is running; --prune would remove the flag",
    ]


def test_apply_dry_run_of_a_plan_lints_here_and_sends_nothing(
    stub: Stub, cli: Callable[..., Ran], plan_file: Path
) -> None:
    """--dry-run on a plan lints it locally and stores nothing (no request at all)."""
    ran = cli("apply", str(plan_file), "--dry-run")
    assert ran.code == 0
    assert "dry run, nothing stored" in ran.out
    assert stub.requests == []


def test_apply_prune_on_a_plan_is_refused(
    stub: Stub, cli: Callable[..., Ran], plan_file: Path
) -> None:
    """--prune makes no sense for a plan: one line, exit 2, nothing sent."""
    ran = cli("apply", str(plan_file), "--prune")
    assert ran.code == 2
    assert "--prune applies to flags files" in ran.err
    assert stub.requests == []


# --- rollout start and list ----------------------------------------------------------------


def test_rollout_start_sends_the_plan_in_one_request(
    stub: Stub, cli: Callable[..., Ran], plan_file: Path
) -> None:
    """POST /api/v1/rollouts carries the plan's text: one request, no separate plan call."""
    stub.on("POST", "/api/v1/rollouts", reply(201, ROLLOUT))
    ran = cli("rollout", "start", "new-checkout", "--plan", str(plan_file))
    assert ran.code == 0
    assert ran.out == "started rollout 9 of new-checkout at stage 'one'\n"
    (sent,) = stub.requests
    assert stub.body(sent) == {"plan": PLAN}


def test_a_refused_start_stores_no_plan(
    stub: Stub, cli: Callable[..., Ran], plan_file: Path
) -> None:
    """A 409 on start is reported as is; no plan is stored on the side."""
    stub.on(
        "POST",
        "/api/v1/rollouts",
        reply(409, {"error": "conflict", "message": "new-checkout already has a live rollout"}),
    )
    ran = cli("rollout", "start", "new-checkout", "--plan", str(plan_file))
    assert ran.code == 2
    assert "409 new-checkout already has a live rollout" in ran.err
    assert stub.asked("POST", "/api/v1/plans") == []


def test_rollout_start_falls_back_to_two_calls_on_an_older_server(
    stub: Stub, cli: Callable[..., Ran], plan_file: Path
) -> None:
    """A server that wants plan_id (422 from validation) gets the plan stored, then started."""
    missing = {"detail": [{"type": "missing", "loc": ["body", "plan_id"], "msg": "Field required"}]}
    stub.on("POST", "/api/v1/rollouts", reply(422, missing), reply(201, ROLLOUT))
    stub.on("POST", "/api/v1/plans", reply(201, {"id": 5, "version": 1, "flag": "new-checkout"}))
    ran = cli("rollout", "start", "new-checkout", "--plan", str(plan_file))
    assert ran.code == 0
    starts = stub.asked("POST", "/api/v1/rollouts")
    assert [stub.body(r) for r in starts] == [{"plan": PLAN}, {"plan_id": 5}]
    assert stub.asked("POST", "/api/v1/plans")[0].content.decode() == PLAN


def test_rollout_start_checks_the_flag_before_sending(
    stub: Stub, cli: Callable[..., Ran], plan_file: Path
) -> None:
    """A plan for another flag is refused locally."""
    ran = cli("rollout", "start", "search-v2", "--plan", str(plan_file))
    assert ran.code == 2
    assert "is a plan for 'new-checkout', not 'search-v2'" in ran.err
    assert stub.requests == []


def test_rollout_list_is_a_table_newest_first(stub: Stub, cli: Callable[..., Ran]) -> None:
    """rollout list --live asks for live ones and shows id, flag, status, stage and times."""
    now = datetime.now(UTC)
    older = {
        **ROLLOUT,
        "id": 3,
        "status": "rolled_back",
        "started_at": (now - timedelta(days=2, hours=1)).isoformat(),
        "ended_at": (now - timedelta(days=1, minutes=10)).isoformat(),
    }
    newer = {**ROLLOUT, "started_at": (now - timedelta(minutes=3, seconds=20)).isoformat()}
    stub.on("GET", "/api/v1/rollouts", reply(200, [older, newer]))
    ran = cli("rollout", "list", "--live")
    lines = ran.out.splitlines()
    assert lines[0].split() == ["id", "flag", "status", "stage", "started", "ended"]
    assert lines[1].split() == ["9", "new-checkout", "running", "0", "3m", "20s", "ago", "—"]
    assert lines[2].split()[:3] == ["3", "new-checkout", "rolled_back"]
    assert "2d 1h ago" in lines[2] and "1d ago" in lines[2]
    (sent,) = stub.requests
    assert sent.url.params["live"] == "true"


# --- tokens --------------------------------------------------------------------------------


def test_token_create_with_expiry_sends_a_utc_timestamp(
    stub: Stub, cli: Callable[..., Ran]
) -> None:
    """--expires 30d becomes expires_at, an ISO-8601 UTC time 30 days from now."""

    stub.on(
        "POST",
        "/api/v1/tokens",
        reply(
            201,
            {
                "id": 4,
                "name": "ci",
                "role": "operator",
                "secret": "rw_op_x",
                "expires_at": "2026-04-01T00:00:00+00:00",
            },
        ),
    )
    ran = cli("token", "create", "--role", "operator", "--name", "ci", "--expires", "30d")
    assert ran.code == 0 and "rw_op_x" in ran.out and ran.err == ""
    body = stub.body(stub.requests[0])
    assert set(body) == {"name", "role", "expires_at"}
    expires = datetime.fromisoformat(body["expires_at"])
    assert expires.utcoffset() == timedelta(0)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=30))) < timedelta(minutes=1)


def test_token_create_warns_when_the_server_ignores_the_expiry(
    stub: Stub, cli: Callable[..., Ran]
) -> None:
    """An older server creates a token that never expires: the CLI says so on stderr."""
    stub.on(
        "POST",
        "/api/v1/tokens",
        reply(201, {"id": 4, "name": "ci", "role": "sdk", "secret": "rw_sdk_x"}),
    )
    ran = cli("token", "create", "--role", "sdk", "--name", "ci", "--expires", "1w")
    assert ran.code == 0
    assert "the server ignored --expires" in ran.err


def test_token_create_refuses_a_bad_duration(cli: Callable[..., Ran]) -> None:
    """--expires soon is an argparse error naming the accepted forms."""
    ran = cli("token", "create", "--role", "sdk", "--name", "x", "--expires", "soon")
    assert ran.code == 2 and "argument --expires" in ran.err and "'30m'" in ran.err


def test_token_list_shows_expiry_and_revocation(stub: Stub, cli: Callable[..., Ran]) -> None:
    """token list: a table whose state column says active, expires in …, or revoked … ago."""
    now = datetime.now(UTC)
    stub.on(
        "GET",
        "/api/v1/tokens",
        reply(
            200,
            [
                {
                    "id": 1,
                    "name": "bootstrap",
                    "role": "admin",
                    "created_at": (now - timedelta(days=3)).isoformat(),
                    "expires_at": None,
                    "revoked_at": None,
                },
                {
                    "id": 2,
                    "name": "ci",
                    "role": "operator",
                    "created_at": (now - timedelta(hours=2)).isoformat(),
                    "expires_at": (now + timedelta(days=29, hours=23, minutes=59)).isoformat(),
                    "revoked_at": None,
                },
                {
                    "id": 3,
                    "name": "old",
                    "role": "sdk",
                    "created_at": (now - timedelta(days=9)).isoformat(),
                    "expires_at": None,
                    "revoked_at": (now - timedelta(days=1)).isoformat(),
                },
            ],
        ),
    )
    ran = cli("token", "list")
    lines = ran.out.splitlines()
    assert lines[0].split() == ["id", "name", "role", "created", "state"]
    assert lines[1].split()[-3:] == ["3d", "ago", "active"]
    assert lines[2].endswith("active, expires in 29d 23h")
    assert lines[3].endswith("revoked 1d ago")


@pytest.mark.parametrize(("changed", "said"), [(True, "revoked"), (False, "already revoked")])
def test_token_revoke(stub: Stub, cli: Callable[..., Ran], changed: bool, said: str) -> None:
    """token revoke ID sends DELETE /api/v1/tokens/ID and says whether it changed anything."""
    stub.on(
        "DELETE",
        "/api/v1/tokens/7fc07a00",
        reply(
            200, {"id": "7fc07a00", "revoked_at": "2026-03-02T10:00:00+00:00", "changed": changed}
        ),
    )
    ran = cli("token", "revoke", "7fc07a00")
    assert ran.code == 0
    assert ran.out == f"token 7fc07a00: {said}\n"
