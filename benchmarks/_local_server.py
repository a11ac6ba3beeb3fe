"""A real rollwise server process on loopback, for the benchmarks that need one."""

from __future__ import annotations

import contextlib
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from _server_process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ROOT / "examples" / "checkout" / "flags.yaml"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def local_server_process(
    admin_token: str, *, controller: bool = True, options: Sequence[str] = ()
) -> Iterator[ServerProcess]:
    """Start ``rollwise server`` (with ``options``) on a temporary SQLite database, wait until it
    is ready, apply the example flags, and yield the process; stop it afterwards."""
    with tempfile.TemporaryDirectory() as directory:
        server = ServerProcess(
            f"sqlite:///{directory}/bench.db",
            free_port(),
            admin_token,
            Path(directory) / "server.log",
            controller=controller,
            options=options,
        )
        try:
            server.start()
            headers = {"Authorization": f"Bearer {admin_token}"}
            with httpx.Client(base_url=server.url, headers=headers) as admin:
                admin.put("/api/v1/flags", content=FLAGS.read_bytes()).raise_for_status()
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def local_server(
    admin_token: str, *, controller: bool = True, options: Sequence[str] = ()
) -> Iterator[str]:
    """``local_server_process``, yielding the server's URL."""
    with local_server_process(admin_token, controller=controller, options=options) as server:
        yield server.url


def sdk_key(url: str, admin_token: str) -> str:
    """A new SDK key from the server."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin_token}"}) as admin:
        response = admin.post("/api/v1/tokens", json={"name": "bench", "role": "sdk"})
        response.raise_for_status()
        return str(response.json()["secret"])
