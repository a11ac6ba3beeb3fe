"""The HTTP service (FastAPI): management API, SDK API, health and metrics."""

from __future__ import annotations

from rollwise.server._app import VersionWatch, create_app

__all__ = ["VersionWatch", "create_app"]
