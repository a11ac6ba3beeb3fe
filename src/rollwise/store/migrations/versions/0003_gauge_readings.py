"""Gauge readings: system-wide values (queue depth, consumer lag) for gauge guards.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gauges",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("metric", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_gauges_metric_at", "gauges", ["metric", "at"])


def downgrade() -> None:
    op.drop_index("ix_gauges_metric_at", table_name="gauges")
    op.drop_table("gauges")
