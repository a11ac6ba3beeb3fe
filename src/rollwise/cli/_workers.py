"""``rollwise server --workers N``: more processes serving the same port and database.

One Python process serves HTTP on one core at most (the GIL): 1,000 SDKs' batches keep it busy
while the machine's other cores idle. With ``--workers N`` the server starts N - 1 more
processes, each a ``rollwise server --no-controller`` on the listening socket the first one
bound (passed as a file descriptor; the kernel hands each new connection to one of them). The
first process keeps the controller and the webhooks; every process serves every API, follows
the snapshot version in the database like any replica (docs/operations.md, "Several
replicas"), and writes SDK batches through its own writer (on SQLite the writers take turns at
the database's write lock; each rests between transactions, ``server/_writer.py``).

The workers live and die with the first process: Linux delivers them SIGKILL when it dies,
however it dies (``kill -9`` included), so nothing keeps serving the port alone; on a clean
stop they get SIGTERM and finish what they hold. A worker that exits while the server runs is
started again.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

logger = logging.getLogger("rollwise.server")

#: How long a clean stop waits for the workers before killing them.
STOP_SECONDS = 15.0
#: A worker that exits is started again after this long (so a worker that cannot start does
#: not spin).
RESTART_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """In a worker: be killed when the process that started it dies (Linux), and exit now if
    it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


class Workers:
    """The N - 1 extra processes of ``--workers N``: ``start``, then ``stop`` at shutdown."""

    def __init__(
        self, count: int, listener: socket.socket, options: Sequence[str], *, db: str
    ) -> None:
        self.count = count
        self.listener = listener
        self.env = {**os.environ, "ROLLWISE_DB": db}
        #: The options every worker gets besides its socket and number.
        self.options = list(options)
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None

    def _command(self, number: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "rollwise.cli",
            "server",
            *self.options,
            "--no-controller",
            "--listen-fd",
            str(self.listener.fileno()),
            "--worker",
            str(number),
            "--parent",
            str(os.getpid()),
        ]

    def _spawn(self, number: int) -> None:
        self._processes[number] = subprocess.Popen(
            self._command(number), pass_fds=(self.listener.fileno(),), env=self.env
        )

    def start(self) -> None:
        self._watcher = threading.Thread(target=self._run, name="rollwise-workers", daemon=True)
        self._watcher.start()
        logger.info("%d worker processes serve the port besides this one", self.count - 1)

    def _run(self) -> None:
        # One thread starts, watches and stops every worker: Linux kills a worker when the
        # thread that started it ends, so that thread lives as long as the workers do.
        try:
            for number in range(1, self.count):
                self._spawn(number)
            while not self._stopping.wait(0.5):
                for number, process in list(self._processes.items()):
                    code = process.poll()
                    if code is None or self._stopping.is_set():
                        continue
                    logger.error("worker %d exited with %s; starting it again", number, code)
                    _forget_gauges(process.pid)
                    if not self._stopping.wait(RESTART_SECONDS):
                        self._spawn(number)
        finally:
            self._stop_all()

    def _stop_all(self) -> None:
        for process in self._processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + STOP_SECONDS
        for process in self._processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop(self) -> None:
        """SIGTERM to every worker (each finishes its requests and writes what it queued),
        SIGKILL to any still running after ``STOP_SECONDS``; returns once they are gone."""
        self._stopping.set()
        if self._watcher is not None:
            self._watcher.join()


def _forget_gauges(pid: int) -> None:
    """A dead worker's gauges leave /metrics (its counts stay in the sums)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
