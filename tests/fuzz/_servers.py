"""The server under fuzzing: ``rollwise server`` in a process of its own on loopback, and the
databases it runs on (a temporary SQLite file; a fresh schema of ``rollwise_fuzz``)."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

ADMIN = f"rw_admin_fuzz-{uuid.uuid4().hex}"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
FUZZ_DATABASE = "rollwise_fuzz"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """``rollwise server`` in a process of its own, on loopback, logging to a file."""

    def __init__(self, database_url: str, log: Path) -> None:
        self.database_url = database_url
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        env = {**os.environ, "ROLLWISE_ADMIN_TOKEN": ADMIN}
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "rollwise.cli",
                    "server",
                    "--db",
                    self.database_url,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--tick",
                    "1s",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: see {self.log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"the server did not become ready: see {self.log}")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@contextlib.contextmanager
def sqlite_database(directory: Path) -> Iterator[str]:
    yield f"sqlite:///{directory / 'fuzz.db'}"


@contextlib.contextmanager
def postgres_database(base: str) -> Iterator[str]:
    """A fresh schema in the ``rollwise_fuzz`` database (created if absent), dropped after."""
    import psycopg

    parts = urlsplit(base)
    admin = urlunsplit(parts._replace(path="/postgres"))
    fuzz = urlunsplit(parts._replace(path=f"/{FUZZ_DATABASE}"))
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (FUZZ_DATABASE,)
        ).fetchone()
        if exists is None:
            connection.execute(f'CREATE DATABASE "{FUZZ_DATABASE}"')
    schema = f"fuzz_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(fuzz, autocommit=True) as connection:
        connection.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in fuzz else "?"
    try:
        yield f"{fuzz}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(fuzz, autocommit=True) as connection:
            connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
