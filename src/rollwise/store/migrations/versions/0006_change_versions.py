"""Row versions on aggregates and the ledger, so the controller reads what changed since its
last tick instead of every row of every rollout.

``seq`` is set by triggers on every write, whatever code writes (the ingestion path does not
need to know): on SQLite, one more than the largest ``seq`` of the table (writers are
serialised, so versions follow commit order); on PostgreSQL, the writing transaction's id, read
back with the snapshot's ``xmin`` as the watermark (``rollwise.store._changes``). The ledger is
versioned on insert only: a unit's first sighting (stage, first_exposed) never changes once
written. A row inserted with an explicit ``seq`` keeps it (bulk loads of data already seen).
Existing rows get 0: the controller reads everything once when it starts.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_NEXT = "(SELECT coalesce(max(seq), 0) + 1 FROM {table})"
_SQLITE_TRIGGERS = (
    "CREATE TRIGGER aggregates_seq_insert AFTER INSERT ON aggregates WHEN NEW.seq IS NULL "
    f"BEGIN UPDATE aggregates SET seq = {_NEXT.format(table='aggregates')} "
    "WHERE rowid = NEW.rowid; END",
    "CREATE TRIGGER aggregates_seq_update AFTER UPDATE OF requests, events, histogram "
    f"ON aggregates BEGIN UPDATE aggregates SET seq = {_NEXT.format(table='aggregates')} "
    "WHERE rowid = NEW.rowid; END",
    "CREATE TRIGGER ledger_seq_insert AFTER INSERT ON ledger WHEN NEW.seq IS NULL "
    f"BEGIN UPDATE ledger SET seq = {_NEXT.format(table='ledger')} WHERE rowid = NEW.rowid; END",
)
_POSTGRES_TRIGGERS = (
    "CREATE FUNCTION rollwise_change_seq() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF TG_OP = 'UPDATE' OR NEW.seq IS NULL THEN "
    "NEW.seq := pg_current_xact_id()::text::bigint; END IF; RETURN NEW; END $$",
    "CREATE TRIGGER aggregates_seq BEFORE INSERT OR UPDATE OF requests, events, histogram "
    "ON aggregates FOR EACH ROW EXECUTE FUNCTION rollwise_change_seq()",
    "CREATE TRIGGER ledger_seq BEFORE INSERT ON ledger "
    "FOR EACH ROW EXECUTE FUNCTION rollwise_change_seq()",
)


def upgrade() -> None:
    for table in ("aggregates", "ledger"):
        op.add_column(table, sa.Column("seq", sa.BigInteger(), nullable=True))
        op.execute(f"UPDATE {table} SET seq = 0")
        op.create_index(f"ix_{table}_seq", table, ["seq"])
    dialect = op.get_bind().dialect.name
    statements = {"sqlite": _SQLITE_TRIGGERS, "postgresql": _POSTGRES_TRIGGERS}.get(dialect, ())
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS aggregates_seq ON aggregates")
        op.execute("DROP TRIGGER IF EXISTS ledger_seq ON ledger")
        op.execute("DROP FUNCTION IF EXISTS rollwise_change_seq()")
    else:
        for name in ("aggregates_seq_insert", "aggregates_seq_update", "ledger_seq_insert"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    for table in ("aggregates", "ledger"):
        op.drop_index(f"ix_{table}_seq", table_name=table)
        with op.batch_alter_table(table) as batch_op:
            batch_op.drop_column("seq")
