"""A fresh store per test for the controller, on SQLite and, when reachable, on PostgreSQL."""

from __future__ import annotations

from tests.store.conftest import store, store_url

__all__ = ["store", "store_url"]
