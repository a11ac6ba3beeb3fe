"""Errors of the store, in the one rollwise exception tree.

Each carries a short machine-readable ``code`` and ``details`` (JSON-ready): the server turns
them into its one error body, ``{"error": code, "message": str(exc), "details": details}``.
"""

from __future__ import annotations

from typing import Any

from rollwise.core import RollwiseError


class StoreError(RollwiseError):
    """The store could not do what was asked."""

    code = "store_error"
    #: The HTTP status the server answers with.
    status = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details: dict[str, Any] = details or {}


class NotFoundError(StoreError):
    """No such flag, plan, rollout or token."""

    code = "not_found"
    status = 404


class ConflictError(StoreError):
    """The request contradicts what is stored or running (a second live rollout, a flags file
    that would leave a running rollout's variant undefined, an illegal transition)."""

    code = "conflict"
    status = 409


class StaleVersionError(ConflictError):
    """The rollout changed since it was read: the transition was not applied."""

    code = "changed_meanwhile"


class RefusedError(StoreError):
    """The input is well-formed but may not be stored: a plan the linter rejects, or one that
    does not fit the flags it would run against. ``details["findings"]`` lists why."""

    code = "refused"
    status = 422
