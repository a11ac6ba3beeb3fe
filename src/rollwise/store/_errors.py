"""Errors of the store, in the one rollwise exception tree."""

from __future__ import annotations

from rollwise.core import RollwiseError


class StoreError(RollwiseError):
    """The store could not do what was asked."""


class NotFoundError(StoreError):
    """No such flag, plan, rollout or token."""


class ConflictError(StoreError):
    """The request contradicts what is stored (a second live rollout, a duplicate)."""


class StaleVersionError(ConflictError):
    """The rollout changed since it was read: the transition was not applied."""
