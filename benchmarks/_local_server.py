"""A real rollwise server process on loopback, for the benchmarks that need one."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ROOT / "examples" / "checkout" / "flags.yaml"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def local_server(
    admin_token: str,
    *,
    controller: bool = True,
    options: Sequence[str] = (),
    started: list[int] | None = None,
) -> Iterator[str]:
    """Start ``rollwise server`` (with ``options``) on a temporary SQLite database, wait until it
    is ready, apply the example flags, and yield its URL; stop it afterwards. ``started``, if
    given, is told the server's process id (for ``cpu_seconds``)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as directory:
        command = [
            sys.executable,
            "-m",
            "rollwise.cli",
            "server",
            "--db",
            f"sqlite:///{directory}/bench.db",
            "--port",
            str(port),
        ]
        if not controller:
            command.append("--no-controller")
        command += options
        server = subprocess.Popen(
            command,
            env={**os.environ, "ROLLWISE_ADMIN_TOKEN": admin_token},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if started is not None:
            started.append(server.pid)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            headers = {"Authorization": f"Bearer {admin_token}"}
            with httpx.Client(base_url=url, headers=headers) as admin:
                admin.put("/api/v1/flags", content=FLAGS.read_bytes()).raise_for_status()
            yield url
        finally:
            server.terminate()
            server.wait(timeout=10)


def sdk_key(url: str, admin_token: str) -> str:
    """A new SDK key from the server."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}) as admin:
        response = admin.post("/api/v1/tokens", json={"name": "bench", "role": "sdk"})
        response.raise_for_status()
        return str(response.json()["secret"])


def cpu_seconds(pid: int) -> float | None:
    """CPU time used so far by process ``pid`` and its children (``rollwise server --workers
    N`` runs N), every thread included, ended ones too: Linux's CPU clock of a process,
    ``clock_getcpuclockid``'s id ((~pid << 3) | CPUCLOCK_SCHED), to the nanosecond rather
    than the clock tick of /proc/PID/stat. None where it cannot be read."""
    try:
        pids = [pid]
        for task in Path(f"/proc/{pid}/task").iterdir():
            pids += [int(child) for child in (task / "children").read_text().split()]
        return sum(time.clock_gettime((~each << 3) | 2) for each in pids)
    except (OSError, ValueError):
        return None
