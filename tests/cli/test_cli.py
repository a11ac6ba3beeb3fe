"""The rollwise command: lint and evaluate, exit codes, JSON, and no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rollwise.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_lint_example_exits_zero(
    capsys: pytest.CaptureFixture[str], plan_path: Path, flags_path: Path
) -> None:
    """The shipped plan lints without errors against its flags; its one warning is RW020
    (whole tenants compared with other tenants)."""
    code, out, _ = _run(capsys, "lint", str(plan_path), "--flags", str(flags_path))
    assert code == 0
    assert "plan ok (0 errors, 1 warning, 0 infos)" in out
    assert "RW020" in out


def test_lint_errors_exit_one_with_code_line_and_docs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A plan with design errors exits 1 and prints each finding with its line and docs link."""
    plan = tmp_path / "plan.yaml"
    plan.write_text("flag: f\nunit: user\nstages:\n  - name: all\n    audience: {percent: 100}\n")
    code, out, _ = _run(capsys, "lint", str(plan))
    assert code == 1
    assert f"{plan}:1: error RW001 no-guards: guards: the plan has no guard" in out
    assert f"{plan}:4: error RW003 single-stage" in out
    assert "why: docs/lint.md#rw010-no-holdback" in out
    assert "plan rejected" in out


def test_lint_warnings_only_exit_zero(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Warnings alone do not fail the lint."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "flag: f\nunit: user\nmax_stage_duration: 2d\n"
        "guards: [{metric: e, kind: rate, tolerance: 10%}]\n"
        "stages:\n  - {name: a, audience: {percent: 1}}\n  - {name: b, audience: {percent: 100}, holdback: 2%}\n"
    )
    code, out, _ = _run(capsys, "lint", str(plan), "--json")
    document = json.loads(out)
    assert code == 0 and document["ok"] is True
    assert {f["code"] for f in document["findings"]} == {"RW005", "RW018"}
    finding = next(f for f in document["findings"] if f["code"] == "RW005")
    assert finding == {
        "code": "RW005",
        "name": "expands-on-time-alone",
        "severity": "warning",
        "path": "stages[0]",
        "line": 6,
        "message": finding["message"],
        "docs": "docs/lint.md#rw005-expands-on-time-alone",
    }


def test_malformed_yaml_exits_two_with_the_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Unreadable input exits 2 with file and line, and no traceback."""
    plan = tmp_path / "plan.yaml"
    plan.write_text("flag: f\nunit: user\nstages:\n  - name: a\n   audience: x\n")
    code, out, err = _run(capsys, "lint", str(plan))
    assert code == 2 and out == ""
    assert err.startswith(f"rollwise: {plan}:5: invalid YAML")
    assert "Traceback" not in err


def test_invalid_field_and_missing_file_exit_two(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A field that does not validate, or a file that is not there, exits 2 with a clear reason."""
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "flag: f\nunit: user\nstages:\n  - {name: a, audience: {percent: 5}, bake: soon}\n"
    )
    code, _, err = _run(capsys, "lint", str(plan))
    assert code == 2
    assert f"{plan}:4: stages[0].bake: expected a duration" in err
    code, _, err = _run(capsys, "lint", str(tmp_path / "missing.yaml"))
    assert code == 2 and "cannot read" in err and "missing.yaml" in err


def test_evaluate_explains_the_bucket(capsys: pytest.CaptureFixture[str], flags_path: Path) -> None:
    """evaluate prints the variant, the reason and the bucket test that decided it."""
    code, out, _ = _run(
        capsys,
        "evaluate",
        str(flags_path),
        "new-checkout",
        "--context",
        "key=u-2",
        "tenant=globex",
        "app_version=2.5.0",
    )
    assert code == 0
    assert out.startswith("new-checkout → off  (fallthrough)")
    assert "tenant 'globex' is in bucket 41,267 of 100,000: outside the first 25,000" in out


def test_evaluate_json_types_values(capsys: pytest.CaptureFixture[str], flags_path: Path) -> None:
    """--json gives the resolution and the steps; numbers in the context are typed."""
    code, out, _ = _run(
        capsys,
        "evaluate",
        str(flags_path),
        "new-checkout",
        "--json",
        "--context",
        "key=7",
        "tenant=acme",
        "app_version=2.4.0",
        "seats=12",
    )
    document = json.loads(out)
    assert code == 0
    assert (document["variant"], document["reason"], document["rule"]) == ("on", "rule_match", 0)
    assert document["context"] == {
        "key": "7",
        "tenant": "acme",
        "app_version": "2.4.0",
        "seats": 12,
    }


def test_evaluate_unknown_flag_and_bad_context(
    capsys: pytest.CaptureFixture[str], flags_path: Path
) -> None:
    """An unknown flag or a malformed --context pair exits 2 naming the problem."""
    code, _, err = _run(capsys, "evaluate", str(flags_path), "old-checkout")
    assert code == 2 and "unknown flag 'old-checkout'; flags: new-checkout, search-v2" in err
    code, _, err = _run(capsys, "evaluate", str(flags_path), "new-checkout", "--context", "tenant")
    assert code == 2 and "expected NAME=VALUE" in err


def test_installed_command_runs(plan_path: Path, flags_path: Path) -> None:
    """python -m rollwise.cli works as a process, with the documented exit code."""
    done = subprocess.run(
        [sys.executable, "-m", "rollwise.cli", "lint", str(plan_path), "--flags", str(flags_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "plan ok" in done.stdout


@pytest.mark.parametrize(
    ("pair", "expected"),
    [
        ("n=12", 12),
        ("n=-3", -3),
        ("n=0", 0),
        ("n=007", "007"),
        ("n=--5", "--5"),
        ("n=²", "²"),
        ("n=2.5", "2.5"),
        ("n=true", True),
    ],
)
def test_context_values_are_typed_only_when_unambiguous(pair: str, expected: object) -> None:
    """Whole numbers and true/false are typed; anything else stays text and never crashes."""
    from rollwise.cli._evaluate import parse_context

    assert parse_context(["key=u", pair]).attributes["n"] == expected
