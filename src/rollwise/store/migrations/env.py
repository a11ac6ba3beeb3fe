"""Alembic environment: runs on the connection the store hands over (see _migrate.py)."""

from __future__ import annotations

from alembic import context

from rollwise.store._schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("rollwise migrations run through rollwise.store.migrate(engine)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
