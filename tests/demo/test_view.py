"""The live terminal view: what one frame says, and the plain lines printed to a log."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console

from rollwise.demo import Progress
from rollwise.demo._service import Served, Traffic
from rollwise.demo._view import LiveView, render

NOW = datetime(2026, 11, 27, 2, 40, tzinfo=UTC)


def _progress(status: str = "running") -> Progress:
    return Progress(
        now=NOW,
        speed=600.0,
        status=status,
        stage=2,
        stage_names=("internal", "pilot-tenant", "five-percent", "quarter", "all"),
        stage_entered_at=NOW - timedelta(minutes=10),
        started_at=NOW - timedelta(hours=6, minutes=40),
        gates=({"name": "bake", "met": False, "sentence": "baked 10m of 6h"},),
        verdicts=(
            {
                "metric": "checkout.error",
                "kind": "rate",
                "verdict": "pending",
                "estimate": 0.95,
                "lower": 0.7,
                "upper": 1.2,
                "tolerance": "50%",
            },
        ),
        segments=(
            {
                "metric": "checkout.error",
                "kind": "rate",
                "verdict": "harm",
                "segment": ["tenant", "harbor-lights"],
                "estimate": 9.0,
                "lower": 1.6,
                "upper": 29.4,
                "tolerance": "50%",
            },
        ),
        traffic=Traffic({"acme": Served(requests=100, exposed=40, exposed_failed=1)}),
        events=("Fri 02:30 controller expanded to five-percent",),
        wall_seconds=50.0,
    )


def test_a_frame_shows_stage_guards_harmed_segments_and_events() -> None:
    """The frame names the current stage, each guard with its estimate, bounds and tolerance,
    a harmed tenant, the latest event and the dashboard link."""
    console = Console(file=io.StringIO(), width=140, record=True)
    console.print(render(_progress(), "http://127.0.0.1:1/dashboard/"))
    text = console.export_text()
    assert "▶ five-percent" in text and "✓ pilot-tenant" in text
    assert "checkout.error" in text and "0.95×" in text and "[0.70×, 1.20×]" in text
    assert "tenant=harbor-lights" in text and "harm" in text
    assert "controller expanded to five-percent" in text
    assert "40 served the new checkout (40.0%)" in text
    assert "http://127.0.0.1:1/dashboard/" in text


def test_a_log_gets_each_event_once_and_status_lines() -> None:
    """Without a terminal the view prints the link, each event once and a status line."""
    stream = io.StringIO()
    with LiveView("http://127.0.0.1:1/dashboard/", stream) as view:
        view(_progress())
        view(_progress())
    lines = stream.getvalue().splitlines()
    assert lines[0] == "dashboard: http://127.0.0.1:1/dashboard/"
    assert lines.count("Fri 02:30 controller expanded to five-percent") == 1
    assert any(line.startswith("Fri 02:40 running in five-percent") for line in lines)
