"""A rollwise app served by uvicorn in a thread on a free loopback port, for tests that need a
real server (real sockets, real clients)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

#: Seconds a test waits for a live server's answer (``server_client``). httpx's default of 5 s
#: failed a CI run once, on a machine running about 3x slow (an OFREP request, in a 1,279-s
#: suite): a test checks what the server answers, not how fast; speed is measured in
#: ``benchmarks/``.
TIMEOUT = 60.0


def server_client(
    url: str,
    token: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = TIMEOUT,
) -> httpx.Client:
    """A client of a live test server at ``url``: ``token`` as its bearer token, if any, and
    ``TIMEOUT`` to wait for each answer."""
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    return httpx.Client(base_url=url, headers=sent, timeout=timeout)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields its URL once it accepts connections."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the server did not start within 15 s"
    try:
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
