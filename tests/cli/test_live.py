"""The CLI against a real server process, and Ctrl-C: every command ends quietly with exit 130.

The server is the one tests/e2e starts (a ``rollwise server`` subprocess on loopback)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rollwise.cli import main
from tests._serving import server_client
from tests.e2e.test_server_process import ADMIN, Server

FLAGS = Path(__file__).resolve().parents[2] / "examples/checkout/flags.yaml"
PLAN = FLAGS.parent / "plan.yaml"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A live server with the checkout flags applied and a rollout of new-checkout running
    (the example plan: its first stage bakes for 30 minutes, so it stays running)."""
    folder = tmp_path_factory.mktemp("live")
    running = Server(f"sqlite:///{folder / 'live.db'}")
    running.start()
    try:
        with server_client(running.url, ADMIN) as admin:
            admin.put("/api/v1/flags", content=FLAGS.read_bytes()).raise_for_status()
            plan = admin.post("/api/v1/plans", content=PLAN.read_bytes())
            plan.raise_for_status()
            started = admin.post("/api/v1/rollouts", json={"plan_id": plan.json()["id"]})
            started.raise_for_status()
        yield running
    finally:
        running.stop()


def _cli(
    capsys: pytest.CaptureFixture[str], server: Server, *argv: str, token: str = ADMIN
) -> tuple[int, str, str]:
    code = main([*argv, "--url", server.url, "--token", token])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_flags_and_rollouts_are_listed(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    """flags list and rollout list --live show the server's flags and its running rollout."""
    code, out, _ = _cli(capsys, server, "flags", "list")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(rows) == {"new-checkout", "search-v2"}
    assert "1 running at stage 0" in rows["new-checkout"]
    code, out, _ = _cli(capsys, server, "rollout", "list", "--live")
    assert code == 0
    assert out.splitlines()[1].split()[:4] == ["1", "new-checkout", "running", "0"]


def test_flags_get_works_against_todays_server(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """flags get answers whether or not the server has GET /api/v1/flags/{key} yet."""
    code, out, _ = _cli(capsys, server, "flags", "get", "search-v2")
    assert code == 0
    assert out.splitlines()[:2] == [
        "search-v2: The new search ranking, tried on a share of EU users.",
        "  variants: control, treatment",
    ]


def test_kill_twice(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    """kill, then kill again: the second either says "already killed" (servers that report
    "changed") or repeats the kill; unkill lifts it."""
    code, out, _ = _cli(capsys, server, "kill", "search-v2")
    assert code == 0 and out.startswith("search-v2: killed: every SDK serves the safe default")
    code, out, _ = _cli(capsys, server, "kill", "search-v2")
    assert code == 0 and out.startswith(("search-v2: already killed", "search-v2: killed"))
    code, out, _ = _cli(capsys, server, "unkill", "search-v2")
    assert code == 0 and out.startswith("search-v2: kill switch lifted")


def test_an_invalid_token_is_one_line(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    """A token the server does not know: exit 2, one line naming the server."""
    code, _, err = _cli(capsys, server, "rollout", "list", token="rw_nope")
    assert code == 2
    assert err.startswith(f"rollwise: {server.url} refused the token (")
    assert len(err.splitlines()) == 1


# --- Ctrl-C ------------------------------------------------------------------------------


class Running:
    """A ``rollwise`` subprocess whose output is collected as it comes; a context manager that
    leaves no process or pipe behind."""

    def __init__(self, *argv: str, group: bool = False) -> None:
        #: With ``group``, it leads a process group of its own, and Ctrl-C goes to the whole
        #: group, as a terminal sends it.
        self.group = group
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rollwise.cli", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=group,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self.out.extend, args=(self.process.stdout,), daemon=True),
            threading.Thread(target=self.err.extend, args=(self.process.stderr,), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            if self.group:
                os.killpg(self.process.pid, signal.SIGKILL)
            else:
                self.process.kill()
        self._finish()

    def _finish(self) -> int:
        code = self.process.wait(timeout=30)
        for reader in self._readers:
            reader.join(timeout=5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code

    def wait_for(self, seen: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not seen():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"not seen; stdout {self.out!r}, stderr {self.err!r}")
            time.sleep(0.05)

    def interrupt(self) -> int:
        """Ctrl-C: SIGINT, then the exit code once it has ended."""
        if self.group:
            os.killpg(self.process.pid, signal.SIGINT)
        else:
            self.process.send_signal(signal.SIGINT)
        return self._finish()

    def children(self) -> list[str]:
        pid = self.process.pid
        path = Path(f"/proc/{pid}/task/{pid}/children")
        return path.read_text().split() if path.exists() else []

    @property
    def stderr(self) -> str:
        return "".join(self.err)


def test_ctrl_c_ends_status_watch_quietly(server: Server) -> None:
    """SIGINT to `rollout status FLAG --watch` on a running rollout: exit 130, one line."""
    argv = ["rollout", "status", "new-checkout", "--watch", "--url", server.url, "--token", ADMIN]
    with Running(*argv) as running:
        running.wait_for(lambda: any("rollout 1 running" in line for line in running.out))
        assert running.interrupt() == 130
    assert running.stderr == "rollwise: interrupted\n"


def test_ctrl_c_while_waiting_for_a_server_that_does_not_answer() -> None:
    """SIGINT while a request hangs on a server that accepted but never answers: exit 130."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        silent.settimeout(30)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with Running("flags", "list", "--url", url, "--token", "t") as running:
            connection, _ = silent.accept()  # the request is on its way
            with connection:
                time.sleep(0.2)
                assert running.interrupt() == 130
    assert running.stderr == "rollwise: interrupted\n"


def test_ctrl_c_stops_the_server_quietly(tmp_path: Path) -> None:
    """SIGINT to `rollwise server`: it shuts down gracefully and exits 130, no traceback."""
    with Running("server", "--port", "0", "--db", f"sqlite:///{tmp_path / 'r.db'}") as running:
        running.wait_for(lambda: "Application startup complete" in running.stderr)
        assert running.interrupt() == 130
    assert "Traceback" not in running.stderr
    assert running.err[-1] == "rollwise: interrupted\n"


def test_ctrl_c_stops_the_demo_quietly() -> None:
    """SIGINT to `rollwise demo` while it plays: server and traffic stop, exit 130."""
    with Running("demo", "--pace", "0.2") as running:
        running.wait_for(lambda: any("rollwise demo: server on" in line for line in running.out))
        time.sleep(1)
        assert running.interrupt() == 130
    assert "Traceback" not in running.stderr
    assert running.err[-1:] == ["rollwise: interrupted\n"]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc")
def test_ctrl_c_stops_simulate_and_its_workers_quietly(plan_path: Path, flags_path: Path) -> None:
    """Ctrl-C reaches simulate's worker processes too: none prints a traceback; exit 130."""
    argv = ["simulate", str(plan_path), "--flags", str(flags_path), "--runs", "400", "--jobs", "2"]
    with Running(*argv, group=True) as running:
        running.wait_for(lambda: len(running.children()) == 2)
        time.sleep(1)  # the workers are busy with runs
        assert running.interrupt() == 130
    assert running.stderr == "rollwise: interrupted\n"
