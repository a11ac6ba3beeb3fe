"""rollout status: human times, labelled bounds, and --watch as a CI gate (0/1/2)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from rollwise.cli._watch import bounds, render_status
from tests.cli.conftest import Ran, Stub, reply

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

ROLLOUT: dict[str, Any] = {
    "id": 7,
    "flag": "new-checkout",
    "plan_id": 3,
    "status": "running",
    "stage": 1,
    "stage_entered_at": "2026-03-02T10:30:00+00:00",
    "started_at": "2026-03-02T09:57:00+00:00",
    "ended_at": None,
    "version": 4,
    "approvals": [],
    "plan": {
        "unit": "tenant",
        "variant": "on",
        "stages": [
            {"name": "internal", "percent": None, "segments": ["internal-team"]},
            {"name": "pilot-tenant", "percent": None, "segments": ["pilot-tenants"]},
            {"name": "five-percent", "percent": 5, "segments": []},
        ],
    },
    "decision": None,
    "current": {
        "at": "2026-03-02T12:00:00+00:00",
        "move": "hold",
        "reasons": ["baked 1h30m of 4h", "the rollout waits for evidence"],
        "evidence": {
            "verdicts": [
                {
                    "metric": "checkout.error",
                    "kind": "rate",
                    "verdict": "pending",
                    "sentence": "checkout.error: not conclusive yet",
                    "estimate": 1.2,
                    "lower": 0.9,
                    "upper": 1.6,
                    "threshold": 1.5,
                    "tolerance": "50%",
                },
                {
                    "metric": "checkout.latency",
                    "kind": "latency",
                    "verdict": "safe",
                    "sentence": "checkout.latency p95 is within tolerance",
                    "estimate": 8.0,
                    "lower": -2.5,
                    "upper": 15.0,
                    "threshold": None,
                    "tolerance": "50ms",
                },
                {
                    "metric": "payments.queue_depth",
                    "kind": "gauge",
                    "verdict": "safe",
                    "sentence": "payments.queue_depth is within its limits (830)",
                    "estimate": 830.0,
                    "lower": None,
                    "upper": None,
                    "threshold": 1000.0,
                    "tolerance": "",
                },
            ],
            "segments": [],
            "gates": [
                {
                    "name": "bake",
                    "met": False,
                    "sentence": "baked 1h30m of 4h",
                    "current": 5400.0,
                    "required": 14400.0,
                },
                {"name": "min_samples", "met": True, "sentence": "400 of 300 exposed samples"},
            ],
            "trigger": None,
        },
    },
}


def _with(status: str, **changes: Any) -> dict[str, Any]:
    rollout = copy.deepcopy(ROLLOUT)
    rollout.update(status=status, **changes)
    return rollout


def test_status_shows_human_times_and_labelled_bounds() -> None:
    """Times read as '2h 3m ago' / 'ends in 2h 30m', and every bound says what it is."""
    text = render_status(ROLLOUT, NOW)
    lines = text.splitlines()
    assert lines[0] == "new-checkout: rollout 7 running (unit tenant), started 2h 3m ago"
    assert lines[1] == "  ✓ internal         internal-team"
    assert lines[2] == "  ▶ pilot-tenant     pilot-tenants  entered 1h 30m ago"
    assert lines[3] == "    five-percent     5%"
    assert "  now: hold" in lines
    assert "estimate 1.2× [lower 0.9×, upper 1.6×] tolerance 50% (threshold 1.5×)" in text
    assert "estimate +8 ms [lower -2.5 ms, upper +15 ms] tolerance 50ms" in text
    assert "value 830 limit 1,000" in text
    assert "waiting for: baked 1h30m of 4h (ends in 2h 30m)" in text
    # Reasons that repeat a gate shown above are not repeated; the others are.
    assert lines[-1] == "  · the rollout waits for evidence"
    assert "  · baked 1h30m of 4h" not in lines


def test_status_of_an_ended_rollout_says_when_it_ended() -> None:
    """A finished rollout shows its last decision with its age, not 'now'."""
    ended = _with(
        "rolled_back",
        ended_at="2026-03-02T11:55:00+00:00",
        current=None,
        decision={
            "at": "2026-03-02T11:55:00+00:00",
            "move": "rollback",
            "reasons": ["checkout.error is worse than tolerated"],
            "evidence": {"verdicts": [], "segments": [], "gates": []},
        },
    )
    text = render_status(ended, NOW)
    assert text.splitlines()[0].endswith("started 2h 3m ago, ended 5m ago")
    assert "  last decision, 5m ago: rollback" in text


@pytest.mark.parametrize(
    ("verdict", "expected"),
    [
        ({"kind": "rate", "estimate": 0.98}, "estimate 0.98×"),
        (
            {"kind": "rate", "estimate": 1.0, "lower": 0.0, "upper": float("inf")},
            "estimate 1× [lower 0×, upper ∞×]",
        ),
        ({"kind": "rate", "lower": 0.001, "upper": 1000.0}, "[lower 0×, upper ∞×]"),
        ({"kind": "gauge", "estimate": 1234.0, "threshold": 1000.0}, "value 1,234 limit 1,000"),
        ({"kind": "gauge", "estimate": 12.0}, "value 12"),
        ({"kind": "latency", "estimate": None, "tolerance": "20%"}, "tolerance 20%"),
    ],
)
def test_bounds_show_only_what_the_evidence_has(verdict: dict[str, Any], expected: str) -> None:
    """Missing numbers are left out; unbounded ends read as ∞, not as 1e+308."""
    assert bounds(verdict) == expected


@pytest.mark.parametrize(("end", "code"), [("completed", 0), ("rolled_back", 1), ("paused", 2)])
def test_watch_exits_with_how_the_rollout_ended(
    stub: Stub, cli: Callable[..., Ran], end: str, code: int
) -> None:
    """--watch refreshes while the rollout runs and exits 0 completed, 1 rolled back, 2 paused."""
    stub.on(
        "GET",
        "/api/v1/flags",
        reply(200, {"snapshot_version": 1, "flags": [{"key": "new-checkout", "rollout": ROLLOUT}]}),
    )
    stub.on("GET", "/api/v1/rollouts/7", reply(200, ROLLOUT), reply(200, _with(end, current=None)))
    ran = cli("rollout", "status", "new-checkout", "--watch", "--interval", "0.5")
    assert ran.code == code
    assert len(stub.asked("GET", "/api/v1/rollouts/7")) == 2
    assert f"rollout 7 {end}" in ran.out


def test_watch_json_prints_one_document_per_line(stub: Stub, cli: Callable[..., Ran]) -> None:
    """--watch --json is JSON Lines: each refresh one parseable document."""
    stub.on(
        "GET",
        "/api/v1/flags",
        reply(200, {"snapshot_version": 1, "flags": [{"key": "new-checkout", "rollout": ROLLOUT}]}),
    )
    stub.on("GET", "/api/v1/rollouts/7", reply(200, ROLLOUT), reply(200, _with("completed")))
    ran = cli("rollout", "status", "new-checkout", "--watch", "--interval", "0.5", "--json")
    documents = [json.loads(line) for line in ran.out.splitlines()]
    assert [d["status"] for d in documents] == ["running", "completed"]
    assert ran.code == 0


def test_status_without_watch_exits_zero_whatever_the_state(
    stub: Stub, cli: Callable[..., Ran]
) -> None:
    """Without --watch, a rolled-back rollout is shown, not failed on."""
    stub.on(
        "GET",
        "/api/v1/flags",
        reply(200, {"snapshot_version": 1, "flags": [{"key": "new-checkout", "rollout": ROLLOUT}]}),
    )
    stub.on("GET", "/api/v1/rollouts/7", reply(200, _with("rolled_back", current=None)))
    assert cli("rollout", "status", "new-checkout").code == 0


@pytest.mark.parametrize("interval", ["0.1", "0", "-1", "nan", "soon"])
def test_interval_below_half_a_second_is_refused(cli: Callable[..., Ran], interval: str) -> None:
    """--interval under 0.5 s (or not a number) is an argparse error in one line, exit 2."""
    ran = cli("rollout", "status", "f", "--interval", interval, remote=False)
    assert ran.code == 2
    assert "argument --interval" in ran.err
    assert len(ran.err.strip().splitlines()) == 1
