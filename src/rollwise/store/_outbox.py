"""The webhook outbox: notifications written in the transaction of the decision they report
(so none is lost to a crash between the two), and the bookkeeping of their delivery."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from rollwise.store import _schema as t
from rollwise.store._control import utc

#: What is kept of a delivery error.
_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class Notification:
    id: int
    url: str
    body: bytes
    attempts: int


def enqueue(
    connection: sa.Connection, notifications: Sequence[tuple[str, bytes]], now: datetime
) -> None:
    """Write (url, body) notifications in the caller's transaction."""
    if notifications:
        connection.execute(
            t.webhook_outbox.insert(),
            [
                {
                    "url": url,
                    "body": body.decode(),
                    "created_at": now,
                    "attempts": 0,
                    "next_attempt_at": now,
                }
                for url, body in notifications
            ],
        )


class OutboxStore:
    """Delivery bookkeeping (mixed into ``Store``)."""

    engine: sa.Engine

    def due_notifications(self, url: str, now: datetime, limit: int = 50) -> list[Notification]:
        """Undelivered notifications to ``url`` whose next attempt is due, oldest first."""
        c = t.webhook_outbox.c
        query = (
            sa.select(c.id, c.url, c.body, c.attempts)
            .where(
                (c.url == url)
                & c.delivered_at.is_(None)
                & c.given_up_at.is_(None)
                & (c.next_attempt_at <= now)
            )
            .order_by(c.id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [Notification(r.id, r.url, r.body.encode(), r.attempts) for r in rows]

    def next_notification_at(self, url: str) -> datetime | None:
        """When the earliest pending notification to ``url`` is due (None: nothing pending)."""
        c = t.webhook_outbox.c
        with self.engine.connect() as connection:
            due = connection.execute(
                sa.select(sa.func.min(c.next_attempt_at)).where(
                    (c.url == url) & c.delivered_at.is_(None) & c.given_up_at.is_(None)
                )
            ).scalar()
        return utc(due) if due is not None else None

    def notification_delivered(self, notification_id: int, now: datetime) -> None:
        self._update(notification_id, delivered_at=now)

    def notification_failed(
        self, notification: Notification, error: str, now: datetime, retry_at: datetime | None
    ) -> None:
        """Count a failed attempt; ``retry_at`` None gives up on it."""
        values: dict[str, object] = {
            "attempts": notification.attempts + 1,
            "last_error": error[:_ERROR_CHARS],
        }
        if retry_at is None:
            values["given_up_at"] = now
        else:
            values["next_attempt_at"] = retry_at
        self._update(notification.id, **values)

    def notifications(self) -> list[dict[str, object]]:
        """Every notification with its delivery state (for operators and tests)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(t.webhook_outbox).order_by(t.webhook_outbox.c.id)
            ).all()
        return [dict(row._mapping) for row in rows]

    def _update(self, notification_id: int, **values: object) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                t.webhook_outbox.update()
                .where(t.webhook_outbox.c.id == notification_id)
                .values(**values)
            )
