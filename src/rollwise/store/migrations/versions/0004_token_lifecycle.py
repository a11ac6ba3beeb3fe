"""Token lifecycle and serialised control-plane writes.

Tokens may expire; the secret chosen in ROLLWISE_ADMIN_TOKEN is no longer stored (it is honoured
only while it is the configured one), so rows an earlier version stored for it are revoked.
A ``control_lock`` row in ``meta`` is what every control-plane write locks first.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    tokens = sa.table(
        "tokens",
        sa.column("name", sa.String),
        sa.column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.execute(
        tokens.update()
        .where((tokens.c.name == "bootstrap") & tokens.c.revoked_at.is_(None))
        .values(revoked_at=datetime.now(UTC))
    )
    meta = sa.table("meta", sa.column("key", sa.String), sa.column("value", sa.BigInteger))
    op.execute(meta.insert().values(key="control_lock", value=0))


def downgrade() -> None:
    meta = sa.table("meta", sa.column("key", sa.String))
    op.execute(meta.delete().where(meta.c.key == "control_lock"))
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("expires_at")
