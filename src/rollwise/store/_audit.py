"""The append-only audit log's one writer: every change writes its entry in its own
transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rollwise.store import _schema as t


def write_audit(
    connection: sa.Connection,
    now: datetime,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any] | None = None,
) -> None:
    connection.execute(
        t.audit.insert().values(
            at=now, actor=actor, action=action, target=target, details=details or {}
        )
    )
