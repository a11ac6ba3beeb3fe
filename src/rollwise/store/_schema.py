"""The tables of the store (SQLAlchemy Core). Migrations in ``migrations/`` create them."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

_TIME = sa.DateTime(timezone=True)

#: Counters: the snapshot version that SDKs follow.
meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

#: Every flags file applied, whole (lossless: YAML names like ``on`` stay names).
flag_files = sa.Table(
    "flag_files",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("applied_at", _TIME, nullable=False),
    sa.Column("applied_by", sa.String(200), nullable=False),
)

#: Kill switches, per flag, outside the flags file so a kill survives a re-apply.
kill_switches = sa.Table(
    "kill_switches",
    metadata,
    sa.Column("flag", sa.String(200), primary_key=True),
    sa.Column("killed", sa.Boolean, nullable=False),
    sa.Column("changed_at", _TIME, nullable=False),
    sa.Column("changed_by", sa.String(200), nullable=False),
    # The snapshot version the last flip made (migration 0007; NULL before it).
    sa.Column("version", sa.BigInteger, nullable=True),
)

plans = sa.Table(
    "plans",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flag", sa.String(200), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.UniqueConstraint("flag", "version", name="uq_plans_flag_version"),
)

rollouts = sa.Table(
    "rollouts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("flag", sa.String(200), nullable=False),
    sa.Column("plan_id", sa.Integer, sa.ForeignKey("plans.id"), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("stage", sa.Integer, nullable=False),
    sa.Column("stage_entered_at", _TIME, nullable=False),
    sa.Column("started_at", _TIME, nullable=False),
    sa.Column("ended_at", _TIME, nullable=True),
    # Optimistic concurrency: every transition names the version it read.
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("approvals", sa.JSON, nullable=False),
)
# At most one live rollout per flag (enforced by the database, not by hope).
sa.Index(
    "uq_rollouts_live_flag",
    rollouts.c.flag,
    unique=True,
    sqlite_where=rollouts.c.status.in_(["running", "paused"]),
    postgresql_where=rollouts.c.status.in_(["running", "paused"]),
)

decisions = sa.Table(
    "decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id"), nullable=False, index=True),
    sa.Column("at", _TIME, nullable=False),
    sa.Column("stage", sa.Integer, nullable=False),
    sa.Column("move", sa.String(20), nullable=False),
    sa.Column("reasons", sa.JSON, nullable=False),
    sa.Column("evidence", sa.JSON, nullable=False),
)

#: Append-only: triggers created by the migration refuse UPDATE and DELETE.
audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", _TIME, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("action", sa.String(60), nullable=False),
    sa.Column("target", sa.String(200), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
)

#: Metric aggregates per (rollout, stage, window, side, segment, metric): the strata.
aggregates = sa.Table(
    "aggregates",
    metadata,
    sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id"), primary_key=True),
    sa.Column("stage", sa.Integer, primary_key=True),
    sa.Column("window", sa.BigInteger, primary_key=True),  # window start, minutes since epoch
    sa.Column("exposed", sa.Boolean, primary_key=True),
    sa.Column("segment", sa.String(300), primary_key=True),  # "" or "tenant=globex"
    sa.Column("metric", sa.String(200), primary_key=True),
    sa.Column("requests", sa.BigInteger, nullable=False),
    sa.Column("events", sa.BigInteger, nullable=False),
    sa.Column("histogram", sa.JSON(none_as_null=True), nullable=True),
    # Row version, set by triggers on every write (migration 0006): what changed since a tick.
    sa.Column("seq", sa.BigInteger, nullable=True),
    sa.Index("ix_aggregates_seq", "seq"),
)

#: Event batches already applied, so a retried batch is never counted twice.
batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", sa.String(100), primary_key=True),
    sa.Column("received_at", _TIME, nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
)

#: The exposure ledger, one row per unit seen by a rollout (units may be stored hashed): its
#: first sighting (stage, time, and whether it was exposed then: the sample-ratio check's input)
#: and its first exposure (stage and time: what a rollback report lists).
ledger = sa.Table(
    "ledger",
    metadata,
    sa.Column("rollout_id", sa.Integer, sa.ForeignKey("rollouts.id"), primary_key=True),
    sa.Column("unit", sa.String(64), primary_key=True),
    sa.Column("stage", sa.Integer, nullable=False),
    sa.Column("exposed", sa.Boolean, nullable=False),
    sa.Column("first_seen", _TIME, nullable=False),
    sa.Column("first_exposed", sa.Boolean, nullable=False),
    sa.Column("exposed_stage", sa.Integer, nullable=True),
    sa.Column("exposed_at", _TIME, nullable=True),
    # Row version, set by a trigger when a unit is first seen (migration 0006).
    sa.Column("seq", sa.BigInteger, nullable=True),
    sa.Index("ix_ledger_seq", "seq"),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("secret_hash", sa.String(128), nullable=False, unique=True),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("revoked_at", _TIME, nullable=True),
    sa.Column("expires_at", _TIME, nullable=True),
)

#: Readings of system-wide gauges, for gauge guards (not split by variant or rollout).
gauges = sa.Table(
    "gauges",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("metric", sa.String(200), nullable=False),
    sa.Column("at", _TIME, nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Index("ix_gauges_metric_at", "metric", "at"),
)

#: Webhook notifications, written with the decision they report; delivered from here.
webhook_outbox = sa.Table(
    "webhook_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("url", sa.String(2000), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", _TIME, nullable=False),
    sa.Column("delivered_at", _TIME, nullable=True),
    sa.Column("given_up_at", _TIME, nullable=True),
    sa.Column("last_error", sa.String(500), nullable=True),
)
sa.Index("ix_webhook_outbox_url_next", webhook_outbox.c.url, webhook_outbox.c.next_attempt_at)
