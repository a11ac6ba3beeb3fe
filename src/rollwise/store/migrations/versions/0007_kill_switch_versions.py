"""The snapshot version of each kill switch's last flip, so that every replica can send its SDK
streams a kill made through another as ``event: kill`` rather than the whole snapshot.

Existing rows get NULL: their flips are older than any stream a replica serves.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("kill_switches") as batch:
        batch.add_column(sa.Column("version", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kill_switches") as batch:
        batch.drop_column("version")
