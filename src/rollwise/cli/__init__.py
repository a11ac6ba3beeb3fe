"""The ``rollwise`` command."""

from __future__ import annotations

from rollwise.cli._main import main

__all__ = ["main"]
