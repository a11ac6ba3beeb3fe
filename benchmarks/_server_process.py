"""A ``rollwise server`` process on loopback that a benchmark can start, ``kill -9`` and start
again on the same database, with its log kept in a file to count errors in afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


class ServerProcess:
    """One replica: ``rollwise server --db <url> --port <port> [--no-controller]``."""

    def __init__(
        self,
        db: str,
        port: int,
        admin_token: str,
        log: Path,
        *,
        controller: bool = True,
        workers: int = 1,
        options: Sequence[str] = (),
    ) -> None:
        self.db = db
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.admin_token = admin_token
        self.log = log
        self.controller = controller
        self.workers = workers
        #: More ``rollwise server`` options (``--ofrep-rate 0``).
        self.options = tuple(options)
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> None:
        """Start the process and wait until ``/readyz`` answers 200."""
        command = [sys.executable, "-m", "rollwise.cli", "server", "--db", self.db]
        command += ["--port", str(self.port)]
        if not self.controller:
            command.append("--no-controller")
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        command += self.options
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"\n=== start {self.starts} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                command,
                env={**os.environ, "ROLLWISE_ADMIN_TOKEN": self.admin_token},
                stdout=subprocess.DEVNULL,  # the access log: one line per request
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}: {self.log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the server did not get ready in {timeout:g}s: {self.log}")

    def kill9(self) -> None:
        """``kill -9``: no shutdown, no flush, no goodbye."""
        if self.process is not None:
            workers = self._children()
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            # Its --workers processes die with it (SIGKILL from the kernel): wait until they
            # no longer hold the port.
            deadline = time.monotonic() + 10
            while any(Path(f"/proc/{pid}").exists() for pid in workers):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers {workers} outlived the server's kill -9")
                time.sleep(0.01)

    def pids(self) -> list[int]:
        """The server's process and its workers' (``--workers``)."""
        return [] if self.process is None else [self.process.pid, *self._children()]

    def _children(self) -> list[int]:
        return [] if self.process is None else children(self.process.pid)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill9()

    def cpu_seconds(self) -> float:
        """CPU time the process and its workers used so far, every thread included, ended
        ones too: Linux's CPU clock of each process (``clock_getcpuclockid``'s id,
        (~pid << 3) | CPUCLOCK_SCHED), to the nanosecond rather than the 10-ms clock tick of
        /proc/PID/stat (a kill switch costs the server a few of those). A process already
        gone counts nothing."""
        total = 0.0
        for pid in self.pids():
            try:
                total += time.clock_gettime((~pid << 3) | 2)
            except OSError:
                continue
        return total

    def count_in_log(self, text: str) -> int:
        return self.log.read_text(errors="replace").count(text) if self.log.exists() else 0


def children(pid: int) -> list[int]:
    """The processes ``pid`` started, from any of its threads (Linux /proc)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found
