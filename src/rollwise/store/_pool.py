"""How the store's PostgreSQL connections are kept: pinged before use only after sitting idle,
and outside a transaction for reads that need none (``reading``).

SQLAlchemy's ``pool_pre_ping`` sends a ping on every checkout ("Disconnect Handling —
Pessimistic" in SQLAlchemy's pooling documentation): a round trip more for every read and
write, and the ingest path checks out a connection for each SDK batch's check and for each
group it writes (the check took seven round trips, counted in psycopg's sends and commands;
with ``reading`` and no ping it takes one). A connection that was in use a moment ago is very
likely alive; one that sat in the pool is the one a database restart or an idle timeout may
have killed. So a connection is pinged only when it comes out of the pool after
``IDLE_BEFORE_PING`` unused, the way the documentation's checkout-event recipe does it: a
failed ping raises ``InvalidatePoolError`` (a ``DisconnectionError``), and the pool replaces
the connection and every older one as they come out.

What this gives up: a connection used within the last second whose server died since fails
its first statement instead of being replaced silently. The error invalidates the whole pool
(SQLAlchemy's handling of a disconnect), so only what was in flight when the database went
away fails — as it would have anyway.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

#: Seconds a pooled connection may sit unused and still be taken without a ping.
IDLE_BEFORE_PING = 1.0

_RETURNED = "rollwise_returned"


def ping_when_idle(engine: sa.Engine) -> None:
    """Ping ``engine``'s connections on checkout when they sat unused ``IDLE_BEFORE_PING`` or
    longer (instead of ``pool_pre_ping``'s every time)."""

    def returned(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED] = time.monotonic()

    def checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_RETURNED)
        if since is not None and time.monotonic() - since < IDLE_BEFORE_PING:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # the driver's own error for a dead connection
            # The others that sat in the pool as long are likely dead too: all those older
            # than now are replaced as they come out (as pool_pre_ping does).
            raise sa.exc.InvalidatePoolError(f"ping failed: {exc}") from exc

    sa.event.listen(engine, "connect", returned)
    sa.event.listen(engine, "checkin", returned)
    sa.event.listen(engine, "checkout", checkout)


def reading(engine: sa.Engine) -> sa.Connection:
    """A connection for reads that need no transaction. On PostgreSQL it runs in autocommit,
    so that a read is one round trip: in a transaction psycopg sends a BEGIN before the first
    statement and SQLAlchemy a ROLLBACK when it is returned, each a round trip of its own,
    which cost more than the query on the ingest path (a batch check per SDK batch, a look for
    unknown rollouts per group written). Each statement then sees its own snapshot: reads that
    must agree are one statement. On SQLite a SELECT opens no transaction anyway (and switching
    a shared in-memory connection to autocommit would commit what another thread has open on
    it)."""
    connection = engine.connect()
    if connection.dialect.name == "postgresql":
        connection.execution_options(isolation_level="AUTOCOMMIT")
    return connection
