"""rollwise simulate: the JSON report and the plot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from rollwise.cli import main


def test_simulate_json_and_plot(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, plan_path: Path, flags_path: Path
) -> None:
    """--json reports outcomes, timing and blast radius; --plot writes a PNG."""
    plot = tmp_path / "runs.png"
    code = main(
        [
            "simulate",
            str(plan_path),
            "--flags",
            str(flags_path),
            "--traffic",
            "200/s",
            "--regression",
            "checkout.error x2",
            "--runs",
            "6",
            "--jobs",
            "1",
            "--json",
            "--plot",
            str(plot),
        ]
    )
    document = json.loads(capsys.readouterr().out)
    assert code == 0
    assert document["runs"] == 6 and document["outcomes"]["rolled_back"] == 6
    assert document["rolled_back_share"] == 1.0
    assert document["blast_radius"]["exposed_requests"]["median"] > 0
    assert document["time_to_rollback_s"]["p90"] >= document["time_to_rollback_s"]["median"]
    assert document["scenario"]["stage_exposure"]["internal"] == pytest.approx(0.02, abs=0.005)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_refuses_bad_options(
    capsys: pytest.CaptureFixture[str], plan_path: Path, flags_path: Path
) -> None:
    """Bad traffic or a regression on an unguarded metric exit 2 with the reason."""
    assert main(["simulate", str(plan_path), "--flags", str(flags_path), "--traffic", "fast"]) == 2
    assert "expected a rate like '50/s'" in capsys.readouterr().err
    assert (
        main(["simulate", str(plan_path), "--flags", str(flags_path), "--regression", "refunds x2"])
        == 2
    )
    assert "no guard on 'refunds'" in capsys.readouterr().err


def _run(plan_path: Path, flags_path: Path, *extra: str) -> int:
    return main(
        ["simulate", str(plan_path), "--flags", str(flags_path), "--traffic", "200/s",
         "--regression", "checkout.error x3", "--runs", "8", "--json", *extra]
    )  # fmt: skip


def test_simulate_shows_progress_on_a_terminal_only(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    plan_path: Path,
    flags_path: Path,
) -> None:
    """On a terminal, stderr shows a progress bar that reaches every run and is cleared at the
    end; when stderr is not a terminal (a pipe, a file), nothing is written to it. The report
    is the same either way, with one process or two."""
    assert _run(plan_path, flags_path, "--jobs", "1") == 0
    plain = capsys.readouterr()
    assert plain.err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert _run(plan_path, flags_path, "--jobs", "2") == 0
    shown = capsys.readouterr()
    assert "simulating [" in shown.err and "8/8 runs" in shown.err
    assert shown.err.endswith("\r")  # the line is cleared: the report starts clean
    first, second = json.loads(plain.out), json.loads(shown.out)
    first.pop("wall_seconds"), second.pop("wall_seconds")
    assert first == second
