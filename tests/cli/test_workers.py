"""``rollwise server --workers N``: N processes serve one port and one database; the workers are
started again when they die and die with the first process, however it dies."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; workers die with the server on Linux"
)

ADMIN = "rw_admin_workers-test"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started, from any of its threads."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_text().split("\0")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _eventually(check: Callable[[], bool], seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


class Server:
    def __init__(self, tmp_path: Path, workers: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "server.log"
        db = f"sqlite:///{tmp_path / 'w.db'}"
        with self.log.open("wb") as log:
            command = [sys.executable, "-m", "rollwise.cli", "server", "--db", db]
            command += ["--port", str(self.port), "--workers", str(workers)]
            self.process = subprocess.Popen(
                command,
                env={**os.environ, "ROLLWISE_ADMIN_TOKEN": ADMIN},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        assert _eventually(self._ready, 60), self.log.read_text()
        assert _eventually(lambda: self.started() == workers, 60), self.log.read_text()

    def started(self) -> int:
        return self.log.read_text().count("Application startup complete")

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def workers(self) -> list[int]:
        return [pid for pid in _children(self.process.pid) if _alive(pid)]

    def serving(self, pids: list[int]) -> set[int]:
        """Which of ``pids`` hold an established connection on the port (/proc/net/tcp)."""
        port = f"{self.port:04X}"
        inodes = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port}") and fields[3] == "01":
                inodes.add(fields[9])
        found = set()
        for pid in pids:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    found.add(pid)
        return found


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path, workers=3)
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


@contextlib.contextmanager
def spread(server: Server) -> Iterator[list[httpx.Client]]:
    """Keep-alive clients whose connections more than one of the server's processes hold."""
    processes = [server.process.pid, *server.workers()]
    clients: list[httpx.Client] = []
    try:
        for _ in range(200):
            client = httpx.Client(base_url=server.url, timeout=10)
            clients.append(client)
            assert client.get("/readyz").status_code == 200
            if len(clients) >= 20 and len(server.serving(processes)) > 1:
                break
        assert len(server.serving(processes)) > 1
        yield clients
    finally:
        for client in clients:
            client.close()


def test_the_workers_serve_the_port_without_the_database_url_on_their_command_line(
    server: Server,
) -> None:
    """Two workers besides the first process, told no controller and no database URL (it goes
    in their environment, where other users cannot read a password); connections reach more
    than one process, and each answers."""
    workers = server.workers()
    for pid in workers:
        command = _cmdline(pid)
        assert "--no-controller" in command and "--worker" in command
        assert "--db" not in command and not any("w.db" in part for part in command)
    with spread(server) as clients:
        assert all(client.get("/readyz").status_code == 200 for client in clients)


def test_a_worker_that_dies_is_started_again(server: Server) -> None:
    (first, second) = server.workers()
    os.kill(first, signal.SIGKILL)
    assert _eventually(lambda: server.started() == 4), server.log.read_text()
    assert len(server.workers()) == 2 and first not in server.workers()
    assert second in server.workers()
    assert "exited with -9; starting it again" in server.log.read_text()


def test_the_workers_die_with_a_kill_9_of_the_server(server: Server) -> None:
    workers = server.workers()
    os.kill(server.process.pid, signal.SIGKILL)
    server.process.wait()
    assert _eventually(lambda: not any(_alive(pid) for pid in workers), 10)


def test_a_sigterm_stops_the_workers_cleanly(server: Server) -> None:
    """The first process stops its workers (each finishes what it holds) before it exits."""
    workers = server.workers()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 128 + signal.SIGTERM
    assert not any(_alive(pid) for pid in workers)
    said = server.log.read_text()
    assert said.count("Finished server process") == 3, said
    assert "Traceback" not in said


def test_a_bad_number_of_workers_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rollwise.cli", "server", "--workers", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--workers: must be between 1 and 64, got 0" in done.stderr
    assert not list(tmp_path.iterdir())  # no database file


def test_metrics_add_up_every_process_whichever_answers(server: Server) -> None:
    """Batches posted over connections that several processes hold; /metrics, asked over each
    of them, counts them all each time."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    key = httpx.post(
        f"{server.url}/api/v1/tokens", json={"name": "app", "role": "sdk"}, headers=admin
    )
    key.raise_for_status()
    sdk = {"Authorization": f"Bearer {key.json()['secret']}"}
    with spread(server) as clients:
        for number, client in enumerate(clients):
            posted = client.post(
                "/sdk/v1/events", json={"batch": f"empty-{number:04d}"}, headers=sdk
            )
            assert posted.status_code == 202, posted.text
        for client in clients:
            text = client.get("/metrics").text
            assert f'rollwise_event_batches_total{{result="applied"}} {len(clients)}.0' in text
            assert "rollwise_snapshot_version " in text
