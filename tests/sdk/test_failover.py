"""A client given several server URLs carries on with another when one is down: at startup (the
first URL refuses connections) and while running (the replica it follows is stopped). Two real
servers on loopback share one database, as replicas do."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn

from rollwise import Client
from rollwise.core import Reason
from rollwise.sdk._http import HttpTransport
from rollwise.server import create_app
from rollwise.store import Role, Store
from tests._serving import server_client

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "rw_admin_failover-test"
CONTEXT = {"tenant": "globex", "app_version": "2.5.0"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Replica:
    """The app under uvicorn in a thread, on its own store of the shared database."""

    def __init__(self, database: Path) -> None:
        self.store = Store.open(f"sqlite:///{database}")
        app = create_app(self.store, controller=False, admin_token=ADMIN)
        self.url = f"http://127.0.0.1:{_free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.store.close()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[tuple[Replica, Replica, str]]:
    """Two replicas of one database with the example flags, and an SDK key."""
    database = tmp_path / "shared.db"
    Store.open(f"sqlite:///{database}").close()  # migrated once, before both open it
    first, second = Replica(database), Replica(database)
    try:
        with server_client(first.url, ADMIN) as api:
            api.put("/api/v1/flags", content=(ROOT / "examples/checkout/flags.yaml").read_text())
            key = api.post("/api/v1/tokens", json={"name": "app", "role": Role.SDK.value})
        yield first, second, key.json()["secret"]
    finally:
        for replica in (first, second):
            if replica.thread.is_alive():
                replica.stop()


def _until(condition: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_client_starts_with_the_second_url_when_the_first_is_down(
    replicas: tuple[Replica, Replica, str],
) -> None:
    _, second, key = replicas
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    with Client([dead, second.url], key, flush_interval=0.2, startup_timeout=10.0) as client:
        assert _until(lambda: client.stats().stream_connected)
        assert client.stats().snapshot_version > 0
        assert client.resolve("new-checkout", CONTEXT).reason is not Reason.ERROR


def test_a_client_follows_another_replica_when_its_own_stops(
    replicas: tuple[Replica, Replica, str],
) -> None:
    """Following the first replica's stream; the first stops; a kill switch flipped through the
    second reaches the client, which now follows the second."""
    first, second, key = replicas
    with Client([first.url, second.url], key, flush_interval=0.2, startup_timeout=10.0) as client:
        assert _until(lambda: client.stats().stream_connected)
        transport = client._live._transport  # type: ignore[union-attr]
        assert isinstance(transport, HttpTransport) and transport.url == first.url
        first.stop()
        with server_client(second.url, ADMIN) as api:
            api.post("/api/v1/flags/new-checkout/kill").raise_for_status()
        assert _until(lambda: client.resolve("new-checkout", CONTEXT).reason is Reason.KILLED)
        assert transport.url == second.url


def test_a_list_of_urls_must_name_servers() -> None:
    for bad in ([], [""], ["http://a", 3], b"http://a"):
        with pytest.raises(TypeError):
            Client(bad, "rw_sdk_key")  # type: ignore[call-overload]
