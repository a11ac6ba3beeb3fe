"""What ``rollwise server`` says when it starts: where the dashboard is, and how to get a first
admin token when none exists."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

#: uvicorn's last start-up line: from then on its own handler takes SIGINT. Sent earlier (the
#: admin-token hint is printed before uvicorn starts), Python's default handler raises
#: KeyboardInterrupt wherever the main thread is — inside a garbage-collection callback, it is
#: printed as "Exception ignored" and lost, and the server runs on.
STARTED = "Application startup complete"


def _start_lines(tmp_path: Path, env: dict[str, str], until: str) -> str:
    """Run the server until ``until`` and uvicorn's start-up line have appeared on stderr (or
    60 s pass), then interrupt it; return what it said."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rollwise.cli",
            "server",
            "--db",
            f"sqlite:///{tmp_path / 's.db'}",
            "--port",
            "0",
        ],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    said = ""
    deadline = time.monotonic() + 60
    try:
        assert process.stderr is not None
        while not (until in said and STARTED in said) and time.monotonic() < deadline:
            ready, _, _ = select.select([process.stderr], [], [], 1.0)
            if not ready:
                continue
            line = process.stderr.readline()
            if not line:
                break
            said += line
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()  # not left running into the next tests
            process.communicate()
            raise
    return said


def test_without_any_admin_token_the_server_says_how_to_get_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "ROLLWISE_ADMIN_TOKEN"}
    said = _start_lines(tmp_path, env, "no admin token")
    assert "dashboard: http://127.0.0.1:" in said
    assert "no admin token exists: restart with ROLLWISE_ADMIN_TOKEN" in said
    assert "Traceback" not in said


@pytest.mark.parametrize("token", ["rw_admin_configured-secret"])
def test_with_an_admin_token_there_is_no_hint(tmp_path: Path, token: str) -> None:
    env = {**os.environ, "ROLLWISE_ADMIN_TOKEN": token}
    said = _start_lines(tmp_path, env, STARTED)
    assert "dashboard: http://127.0.0.1:" in said
    assert "no admin token" not in said
    assert token not in said
