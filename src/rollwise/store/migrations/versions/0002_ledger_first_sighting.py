"""The ledger keeps a unit's first sighting apart from its first exposure.

The stage a unit was first seen in, and whether it was exposed then, are what the sample-ratio
check needs; the stage and time of its first exposure are what a rollback report needs. Until
now a later exposure overwrote the first sighting.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger") as batch_op:
        batch_op.add_column(sa.Column("first_exposed", sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column("exposed_stage", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("exposed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE ledger SET first_exposed = exposed")
    op.execute(
        "UPDATE ledger SET exposed_stage = stage, exposed_at = first_seen WHERE exposed = true"
    )
    with op.batch_alter_table("ledger") as batch_op:
        batch_op.alter_column("first_exposed", existing_type=sa.Boolean(), nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch_op:
        batch_op.drop_column("exposed_at")
        batch_op.drop_column("exposed_stage")
        batch_op.drop_column("first_exposed")
