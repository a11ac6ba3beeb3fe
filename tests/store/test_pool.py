"""PostgreSQL connections are pinged before use only after sitting idle (``store/_pool.py``):
a connection its server dropped is replaced without an error once it sat idle, and the
connections in use are not pinged at all."""

from __future__ import annotations

import time

import psycopg
import pytest
import sqlalchemy as sa

from rollwise.store import Store, _pool
from tests.store.conftest import POSTGRES_URL

# The store fixture, on PostgreSQL only (a schema of its own; skipped without a server).
pytestmark = pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)


def _pooled_backends(store: Store) -> set[int]:
    """The server process of the pool's one connection (the pool emptied first)."""
    store.engine.dispose()
    with store.engine.connect() as connection:
        return {int(connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())}


def _terminate(pids: set[int]) -> None:
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        for pid in pids:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_connection_dropped_while_idle_is_replaced_without_an_error(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server drops the pooled connection (a restart, an idle timeout); after sitting idle
    for the ping interval, the next read is answered from a new connection."""
    monkeypatch.setattr(_pool, "IDLE_BEFORE_PING", 0.05)
    before = _pooled_backends(store)
    _terminate(before)
    time.sleep(0.1)
    assert store.snapshot_version() >= 0  # not OperationalError: the connection was replaced
    with store.engine.connect() as connection:
        now = connection.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
    assert now not in before


def test_a_connection_in_use_is_not_pinged(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Within the interval, checkouts send no ping: the statements the server sees are the
    reads themselves (counted by the driver's executions)."""
    monkeypatch.setattr(_pool, "IDLE_BEFORE_PING", 60.0)
    store.snapshot_version()  # a connection in the pool, just returned
    pinged: list[object] = []
    dialect = store.engine.dialect
    monkeypatch.setattr(dialect, "do_ping", lambda connection: pinged.append(connection))
    for _ in range(5):
        store.snapshot_version()
    assert pinged == []
    monkeypatch.setattr(_pool, "IDLE_BEFORE_PING", 0.0)
    store.snapshot_version()
    assert len(pinged) == 1
