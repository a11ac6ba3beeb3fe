"""API tokens: created with a random secret shown once, listed, revoked, optionally expiring.

Stored secrets are keyed hashes (HMAC-SHA-256): a generated secret carries 256 random bits, so
a fast keyed hash is enough (a slow hash protects human-chosen secrets, and rollwise stores
none). The one human-chosen secret, ``ROLLWISE_ADMIN_TOKEN``, is never stored: it is compared
in memory, so it is honoured exactly while it is the configured one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from rollwise.store import _schema as t
from rollwise.store._audit import write_audit
from rollwise.store._errors import NotFoundError, RefusedError
from rollwise.store._records import Role, TokenRecord

#: The id of the configured bootstrap admin token (it has no row).
BOOTSTRAP_ID = "bootstrap"
_DEFAULT_KEY = b"rollwise/token/v2"


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


#: How long a live token's row is kept between reads (``TokenStore.authenticate``).
AUTH_CACHE_SECONDS = 1.0
#: At most this many rows are kept (past it, all are forgotten).
AUTH_CACHE_SIZE = 10_000


class TokenStore:
    """The token half of the store (mixed into ``Store``)."""

    engine: sa.Engine
    #: HMAC key; set from ROLLWISE_SECRET_KEY by the server when given.
    token_key: bytes = _DEFAULT_KEY
    #: The configured ROLLWISE_ADMIN_TOKEN, if any.
    bootstrap_secret: str | None = None

    def _hash(self, secret: str) -> str:
        return hmac.new(self.token_key, secret.encode(), hashlib.sha256).hexdigest()

    def create_token(
        self,
        name: str,
        role: Role,
        actor: str,
        now: datetime,
        expires_at: datetime | None = None,
    ) -> tuple[TokenRecord, str]:
        """A new token; the secret is returned once and only its keyed hash is stored.

        Raises:
            RefusedError: ``expires_at`` is not in the future.
        """
        if expires_at is not None and expires_at <= now:
            raise RefusedError(
                f"expires_at {expires_at.isoformat()} is not in the future",
                details={"field": "expires_at"},
            )
        secret = f"rw_{role.value}_{secrets.token_urlsafe(32)}"
        token_id = secrets.token_hex(8)
        with self.engine.begin() as connection:
            connection.execute(
                t.tokens.insert().values(
                    id=token_id,
                    name=name,
                    role=role.value,
                    secret_hash=self._hash(secret),
                    created_at=now,
                    expires_at=expires_at,
                )
            )
            details: dict[str, Any] = {"name": name, "role": role.value}
            if expires_at is not None:
                details["expires_at"] = expires_at.isoformat()
            write_audit(connection, now, actor, "token.create", token_id, details)
        return TokenRecord(token_id, name, role, now, None, expires_at), secret

    def ensure_token(
        self, secret: str, name: str, role: Role, actor: str, now: datetime
    ) -> TokenRecord:
        """Honour ``secret`` (ROLLWISE_ADMIN_TOKEN) as an admin token while it is configured.
        Nothing is stored: after a restart with another value, this one no longer works."""
        self.bootstrap_secret = secret
        return TokenRecord(BOOTSTRAP_ID, name, role, now)

    def kept_token(self, secret: str, now: datetime | None = None) -> TokenRecord | None:
        """The live token with this secret if it is known without reading the database (the
        configured admin secret, or a row ``authenticate`` kept); None when ``authenticate``
        must be asked. No I/O: callable on an event loop."""
        bootstrap = self._bootstrap(secret)
        if bootstrap is not None:
            return bootstrap
        row = self._kept_row(self._hash(secret))
        return None if row is None else self._live(row, now)

    def authenticate(self, secret: str, now: datetime | None = None) -> TokenRecord | None:
        """The live token with this secret, or None (unknown, revoked or expired).

        A live token's row is kept for ``AUTH_CACHE_SECONDS`` (every SDK request is
        authenticated: a thousand SDKs would otherwise read the table hundreds of times a
        second). Revoking a token forgets every kept row at once on this store; another
        replica's store forgets it within ``AUTH_CACHE_SECONDS``. Expiry is checked each time.
        """
        bootstrap = self._bootstrap(secret)
        if bootstrap is not None:
            return bootstrap
        keyed = self._hash(secret)
        row = self._kept_row(keyed)
        if row is None:
            # Rows stored before keyed hashes used plain SHA-256 of the secret.
            hashes = [keyed, hashlib.sha256(secret.encode()).hexdigest()]
            with self.engine.connect() as connection:
                row = connection.execute(
                    sa.select(t.tokens).where(t.tokens.c.secret_hash.in_(hashes))
                ).first()
            if row is not None and row.revoked_at is None:
                cache = self._auth_rows()
                if len(cache) >= AUTH_CACHE_SIZE:
                    cache.clear()
                cache[keyed] = (time.monotonic() + AUTH_CACHE_SECONDS, row)
        return self._live(row, now)

    def _bootstrap(self, secret: str) -> TokenRecord | None:
        bootstrap = self.bootstrap_secret
        if bootstrap and hmac.compare_digest(secret.encode(), bootstrap.encode()):
            return TokenRecord(BOOTSTRAP_ID, "bootstrap", Role.ADMIN, datetime.min)
        return None

    def _auth_rows(self) -> dict[str, tuple[float, Any]]:
        """Keyed hash → (kept until, on ``time.monotonic``; the token's row)."""
        return self.__dict__.setdefault("_auth_cache", {})  # type: ignore[no-any-return]

    def _kept_row(self, keyed: str) -> Any:
        kept = self._auth_rows().get(keyed)
        return kept[1] if kept is not None and kept[0] > time.monotonic() else None

    @staticmethod
    def _live(row: Any, now: datetime | None) -> TokenRecord | None:
        if row is None or row.revoked_at is not None:
            return None
        expires = _utc(row.expires_at)
        if expires is not None and now is not None and expires <= now:
            return None
        return _record(row)

    def tokens(self) -> list[TokenRecord]:
        """Every stored token (live, expired and revoked), oldest first; never a secret."""
        with self.engine.connect() as connection:
            rows = connection.execute(sa.select(t.tokens).order_by(t.tokens.c.created_at)).all()
        return [_record(row) for row in rows]

    def revoke_token(self, token_id: str, actor: str, now: datetime) -> tuple[TokenRecord, bool]:
        """Revoke a token; revoking a revoked one changes nothing and says so (False).

        Raises:
            NotFoundError: no such token (the bootstrap token is revoked by unsetting it).
        """
        if token_id == BOOTSTRAP_ID:
            raise NotFoundError(
                "the bootstrap token is not stored: unset or change ROLLWISE_ADMIN_TOKEN "
                "and restart the server to retire it"
            )
        with self.engine.begin() as connection:
            updated = connection.execute(
                t.tokens.update()
                .where((t.tokens.c.id == token_id) & t.tokens.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            changed = updated.rowcount == 1
            if changed:
                write_audit(connection, now, actor, "token.revoke", token_id)
            row = connection.execute(sa.select(t.tokens).where(t.tokens.c.id == token_id)).first()
        # Committed: no read of the row from before can be kept again after this.
        self.__dict__.get("_auth_cache", {}).clear()
        if row is None:
            raise NotFoundError(f"no token {token_id!r}")
        return _record(row), changed

    def has_tokens(self) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(t.tokens.c.id).limit(1)).first() is not None

    def has_admin_token(self, now: datetime) -> bool:
        """Whether any live admin token exists (configured or stored)."""
        if self.bootstrap_secret:
            return True
        query = sa.select(t.tokens.c.id).where(
            (t.tokens.c.role == Role.ADMIN.value)
            & t.tokens.c.revoked_at.is_(None)
            & (t.tokens.c.expires_at.is_(None) | (t.tokens.c.expires_at > now))
        )
        with self.engine.connect() as connection:
            return connection.execute(query.limit(1)).first() is not None


def _record(row: Any) -> TokenRecord:
    created = _utc(row.created_at)
    assert created is not None
    return TokenRecord(
        row.id, row.name, Role(row.role), created, _utc(row.revoked_at), _utc(row.expires_at)
    )
